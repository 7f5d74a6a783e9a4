"""Replay past decisions with the knowledge base at hand, and measure the impact of a change.

Replay matches each recorded decision to its input by `input_sha256` (or uses the input stored
in the decision record by --include-input) and says, per record: identical (byte for byte, by
the same knowledge base), same outcomes (made by another knowledge base: the status and every
rule's outcome are the same, and what else differs — rule texts, versions — is listed), changed
(which rules, old → new outcome) or input missing. Impact evaluates one cohort under two
knowledge bases and lists, per rule, the patients whose outcome changes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from fsgs_kb.engine.audit.differences import differences, outcome_changes
from fsgs_kb.engine.audit.shape import carried_problems, shape_problems
from fsgs_kb.engine.errors import KBError, KBErrors, pointer_parts
from fsgs_kb.engine.evaluate.detail import DETAILS, detail_of, rule_outcomes
from fsgs_kb.engine.evaluate.masking import REMOVED
from fsgs_kb.engine.evaluate.output import dumps
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.load.fingerprint import decision_id, input_sha256
from fsgs_kb.engine.read.records import Record, record_value

BATCH_ONLY = ("record", "line")
# FHIR input only: the conversion's account (where each value came from, what was set aside, how
# the Bundle was converted). Replay re-evaluates the converted record, so these are carried, not
# re-derived; to redo the conversion, evaluate the Bundle again with --as-of decision.fhir.as_of.
FHIR_ONLY = ("origin", "sources", "set_aside")


def input_hash(record: Record) -> str:
    """The input_sha256 a result records for this input: of the canonical record when it is one,
    else of its raw bytes (as `KnowledgeBase.failed_result` does)."""
    value, problem = record_value(record)
    if problem is None:
        return input_sha256(value)
    return record.digest or hashlib.sha256(record.raw).hexdigest()


class Inputs(dict[str, Record]):
    """The input records by input hash (the first of each hash), and every one by its record
    number with its hash: a result's `record` must name the input record it was made from; and
    the input read whole as one document (`whole`: what evaluate reads), for results without one."""

    def __init__(self) -> None:
        super().__init__()
        self.by_number: dict[int, tuple[str, Record]] = {}
        self.whole: tuple[str, Record] | None = None

    def add_whole(self, record: Record | None) -> None:
        if record is not None:
            self.whole = (input_hash(record), record)
            self.setdefault(self.whole[0], record)


def find_input(index: dict[str, Record], sha: str, number: Any) -> Record | None:
    """The input record a result with input hash `sha` was made from: the record it names by number
    (batch) or, naming none, the whole input (evaluate), when that one has the hash; else the first
    record with the hash. Two records may share a hash yet not a result: the same unreadable line
    twice is refused naming its own line, and one document over the limit says "the input", where
    the same bytes as a line say "line 1"; each result is compared with the input it was made from."""
    if isinstance(index, Inputs):
        found = index.by_number.get(number) if type(number) is int else index.whole
        if found is not None and found[0] == sha:
            return found[1]
    return index.get(sha)


def index_inputs(records: Iterable[Record]) -> Inputs:
    index = Inputs()
    for record in records:
        sha = input_hash(record)
        index.setdefault(sha, record)
        index.by_number[record.number] = (sha, record)
    return index


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k not in BATCH_ONLY + FHIR_ONLY}
    decision = out.get("decision")
    if isinstance(decision, dict) and "fhir" in decision:
        out["decision"] = {k: v for k, v in decision.items() if k != "fhir"}
    return out


_MALFORMED = (TypeError, KeyError, ValueError, AttributeError, IndexError)


def replay_one(kb: KnowledgeBase, old: dict[str, Any], index: dict[str, Record]) -> dict[str, Any]:
    """Re-evaluate one recorded decision at its own detail level and compare byte for byte. A
    record that is not the shape of a result (schema/result.schema.json: e.g. edited by hand) is
    `unreadable`, with the JSON pointer of each problem. The shape check (~35 ms for a full
    result) runs only for a record that cannot be replayed or replays `changed`: an identical one
    is byte for byte a result this knowledge base writes but for the fields replay carries (its
    place in the batch, the FHIR conversion's account), whose shape alone is checked
    (`carried_problems`, microseconds), and one with the same outcomes under another knowledge
    base was read rule by rule, so a batch of good records (also all of them after a release)
    replays at full speed."""
    try:
        report = _replay_one(kb, old, index)
    except _MALFORMED:
        problems = shape_problems(old)
        if problems:
            return unreadable(old, problems)
        raise
    if report["verdict"] in ("changed", "unreadable"):  # the schema's account first, when it has one
        problems = shape_problems(old)
        if problems:
            return unreadable(old, problems)
    elif report["verdict"] in ("identical", "same_outcomes"):
        problems = carried_problems(old)
        if problems:
            return unreadable(old, problems)
    carried = carried_fhir(old)
    if carried and report["verdict"] != "unreadable":
        report["carried"] = carried  # said, so that "identical" never covers what was not compared
    return report


def carried_fhir(result: dict[str, Any]) -> list[str]:
    """The parts of the FHIR conversion's account a result holds: replay carries them as
    recorded (their shape checked), it does not re-derive them."""
    names = [key for key in FHIR_ONLY if key in result]
    decision = result.get("decision")
    if isinstance(decision, dict) and "fhir" in decision:
        names.append("decision.fhir")
    return names


def carried_note(parts: list[str]) -> str:
    """What replay and trace say of a FHIR conversion's account they carried."""
    return (
        f"the conversion's account ({', '.join(parts)}) is carried as recorded, not re-derived "
        "(evaluate the input again with --as-of its decision.fhir.as_of to redo it)"
    )


def _replay_one(kb: KnowledgeBase, old: dict[str, Any], index: dict[str, Record]) -> dict[str, Any]:
    decision = old["decision"]
    ident = {
        "decision_id": decision.get("decision_id"),
        "patient_id": old.get("patient_id"),
        "record": old.get("record"),
    }
    detail = detail_of(old)
    if detail not in DETAILS:  # not a result any version of fsgs-kb writes: nothing to compare it with
        return {**ident, "verdict": "unreadable", "problem": f"unknown detail level {detail!r}"}
    stored = decision.get("input")
    if stored is not None:
        masked = tuple(decision.get("masked", []))
        false_claims = mask_problems(stored, masked)
        if false_claims:
            return unreadable(old, false_claims)
        new = kb.evaluate(stored, include_input=True, mask=masked, detail=detail)
        if masked:  # identity fields were computed on the masked input: compare the decision itself
            keep = [k for k in {**old, **new} if k not in (*BATCH_ONLY, *FHIR_ONLY, "patient_id", "decision")]
            same = dumps({k: old.get(k) for k in keep}) == dumps({k: new.get(k) for k in keep})
            # the patient id is the record's id as stored: its masked token when /id is masked
            pid = stored.get("id") if "/id" in masked and isinstance(stored, dict) else new.get("patient_id")
            same = same and old.get("patient_id") == pid
            same = same and _same_masked_decision(decision, new["decision"])
        else:
            same = dumps(_strip(old)) == dumps(new)
    else:
        source = find_input(index, str(decision.get("input_sha256", "")), old.get("record"))
        if source is None:
            return {**ident, "verdict": "input_missing"}
        new = kb.evaluate_record(source, detail=detail)
        same = dumps(_strip(old)) == dumps(new)
    made_by = decision.get("kb") if isinstance(decision.get("kb"), dict) else {}
    same_kb = made_by.get("fingerprint") == kb.fingerprint
    if same and same_kb:
        return {**ident, "verdict": "identical"}
    report: dict[str, Any] = {**ident, "verdict": "changed", "detail": detail, "changes": outcome_changes(old, new)}
    if not same_kb:
        report["kb"] = {
            "old": {key: made_by.get(key) for key in ("id", "version", "fingerprint")},
            "new": {"id": kb.id, "version": kb.version, "fingerprint": kb.fingerprint},
        }
        if not report["changes"]:  # decides the same: only the knowledge base (and maybe texts) differ
            report["verdict"] = "same_outcomes"
    return {**report, "differs": differences(old, new)}


_TOKEN = re.compile(r"hmac-sha256:[0-9a-f]{64}")


def mask_problems(stored: Any, masked: tuple[str, ...]) -> list[KBError]:
    """Each pointer a result says it masked must name, in the stored input, a value that holds the
    mask marker (`[masked]`, or the keyed token `hmac-sha256:…`) or no value: a clear identifier
    under a claim of masking is not a result fsgs-kb writes. `decision.masked` lists the pointers
    the run was asked to mask, and a record that lacks one (`--mask /weight_kg` on a record without
    a weight) had nothing there to mask, so an absent value is no false claim."""
    problems = []
    for i, pointer in enumerate(masked):
        node: Any = stored
        for part in pointer_parts(pointer) if isinstance(pointer, str) else []:
            node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
        if not isinstance(pointer, str):
            problem = f"decision.masked names {pointer}, which is no JSON pointer"
        elif node is _ABSENT:
            continue
        elif not (node == REMOVED or (isinstance(node, str) and _TOKEN.fullmatch(node))):
            problem = f"decision.masked names {pointer}, but the stored input holds it in clear, not masked"
        else:
            continue
        problems.append(KBError("trace.malformed", problem, pointer=f"/decision/masked/{i}"))
    return problems


_ABSENT = object()


def _same_masked_decision(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """A masked result's decision record: its input hash is of the masked input it stores (so
    that no hash of the clear identifier is kept), and the masked input must give it again; everything else must be what
    this evaluation writes, and the decision id the one that hash and the knowledge base give (a
    forged engine version, knowledge base, decision id or stored input is not `identical`)."""
    sha = old.get("input_sha256")
    made_by = old.get("kb")
    fingerprint = made_by.get("fingerprint") if isinstance(made_by, dict) else None
    if not isinstance(sha, str) or old.get("decision_id") != decision_id(str(fingerprint), sha):
        return False
    if sha != input_sha256(old.get("input")):
        return False
    # fhir: how a FHIR record was converted (as _strip); input: what was re-evaluated, its masked
    # values keyed by a site secret (HMAC) that a replay without the key writes as [masked]
    rest = ("input_sha256", "decision_id", "fhir", "input")
    return dumps({k: v for k, v in old.items() if k not in rest}) == dumps(
        {k: v for k, v in new.items() if k not in rest}
    )


def unreadable(old: Any, problems: list[KBError]) -> dict[str, Any]:
    """The verdict on a record that is not a result: each problem with its JSON pointer."""
    decision = old.get("decision") if isinstance(old, dict) else None
    ident = {
        "decision_id": decision.get("decision_id") if isinstance(decision, dict) else None,
        "patient_id": old.get("patient_id") if isinstance(old, dict) else None,
    }
    ident = {key: value for key, value in ident.items() if isinstance(value, str)}
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return {
        **ident,
        "verdict": "unreadable",
        "problem": problems[0].message + more,
        "problems": [{"pointer": p.pointer, "message": p.message} for p in problems],
    }


def replay(kb: KnowledgeBase, results: Iterable[Record], index: dict[str, Record]) -> Iterator[dict[str, Any]]:
    """One verdict per result record; a record that is not a result (not JSON, no decision
    record, or not the shape of a result) is `unreadable`, located by its place in the file
    (record, line), and the replay goes on. So is a result out of its place (`Places`): a
    record number not above the one before it (a duplicated, reordered or renumbered line), or,
    with the inputs at hand (`Inputs`), one that names an input record it was not made from."""
    places = Places(index if isinstance(index, Inputs) else None)
    for record in results:
        old, problem = record_value(record)
        if problem is None and not is_result(old):
            problem = KBError("replay.not_a_result", "not a fsgs-kb result (no decision record)")
        if problem is not None:
            yield {"record": record.number, "line": record.line, "verdict": "unreadable", "problem": problem.message}
            continue
        report = replay_one(kb, old, index)
        if report["verdict"] != "unreadable":
            misplaced = places.problem(old)
            if misplaced is not None:
                report = unreadable(old, [misplaced])
        if report["verdict"] == "unreadable":  # its own record field cannot be trusted: where it is in the file
            report = {**report, "record": record.number, "line": record.line}
        yield report


class Places:
    """The place each result of a results file claims: batch numbers its results by input
    record, once each, in increasing order (`record`, with the input `line`), so a number not
    above the one before it, or a result without one among numbered results, is a duplicated,
    reordered or edited line. With the inputs (`Inputs`), a result's record number must name
    an input record at that line whose input hash is the result's (unless masked: a masked
    result's hash is of its masked input)."""

    def __init__(self, inputs: Inputs | None) -> None:
        self.inputs = inputs
        self.last: int | None = None
        self.numbered: bool | None = None

    def problem(self, result: dict[str, Any]) -> KBError | None:
        number = result.get("record")
        if self.numbered is None:
            self.numbered = number is not None
        if number is None:
            if self.numbered:
                return _misplaced("has no record number, where the results before it are numbered")
            return None
        if not self.numbered:
            return _misplaced(f"claims record {number}, where the results before it have no record number")
        if type(number) is not int:  # carried_problems reports it
            return _misplaced(f"claims record {number!r}, not a record number")
        last, self.last = self.last, number if self.last is None else max(self.last, number)
        if last is not None and number <= last:
            again = "again" if number == last else f"after record {last}"
            return _misplaced(
                f"claims record {number} {again}: batch writes each record once, in increasing order "
                "(a duplicated, reordered or renumbered line)"
            )
        return self._claim(result, number)

    def _claim(self, result: dict[str, Any], number: int) -> KBError | None:
        """The input record a result names must be the one it was made from. A result whose input
        the file does not hold at all is no claim to check: replay says `input_missing` (or
        replays the input the result stores), as issue 5's matching by input hash has it; one
        whose input the file holds elsewhere names the wrong record (a copied, renumbered or
        swapped result), and where that input is is said."""
        if self.inputs is None:
            return None
        decision = result["decision"]
        claimed = decision.get("input_sha256")
        masked = bool(decision.get("masked"))  # its hash is of the masked input: the file cannot hold it
        matched = None if masked else self.inputs.get(str(claimed))
        if matched is None and not masked:
            return None
        its_input = f"; its input is record {matched.number} (line {matched.line})" if matched is not None else ""
        found = self.inputs.by_number.get(number)
        if found is None:
            return _misplaced(f"claims record {number}, which the input file does not have{its_input}")
        sha, source = found
        line = result.get("line")
        if line is not None and line != source.line:
            return _misplaced(
                f"claims record {number} at line {line}, which the input file has at line {source.line}{its_input}"
            )
        if not masked and claimed != sha:
            return _misplaced(
                f"claims record {number}, but that input record's hash is {sha[:12]}…, not {str(claimed)[:12]}…: "
                f"it was made from another record{its_input}"
            )
        return None


def _misplaced(message: str) -> KBError:
    return KBError("replay.misplaced", f"/record: this result {message}", pointer="/record")


def replay_counts(reports: list[dict[str, Any]]) -> dict[str, int]:
    verdicts = ("identical", "same_outcomes", "changed", "input_missing", "unreadable")
    return {verdict: sum(r["verdict"] == verdict for r in reports) for verdict in verdicts}


def _pid(result: dict[str, Any], number: int) -> str:
    return str(result.get("patient_id") or f"line {number}")


def impact(old_kb: KnowledgeBase, new_kb: KnowledgeBase, patients: Iterable[Record]) -> dict[str, Any]:
    """Per rule, the patients who newly fire, stop firing, become or stop being undetermined;
    input records that are not valid patients are listed, never silently skipped. A line may also
    be a stored result (of evaluate or batch, any detail level) that holds its input: that input
    is the patient; a result without it is listed as unusable, with the reason."""
    per_rule: dict[str, dict[str, list[str]]] = {}
    status_changes: list[dict[str, Any]] = []
    unreadable: list[dict[str, Any]] = []
    total = 0
    for given in patients:
        total += 1
        record, problem = _patient_record(given)
        if problem is not None:
            unreadable.append({"line": given.line, "problem": problem})
            continue
        old, new = old_kb.evaluate_record(record, detail="standard"), new_kb.evaluate_record(record, detail="standard")
        if old["status"] == new["status"] == "invalid":
            unreadable.append({"line": record.line, "problem": new["errors"][0]["message"] if new["errors"] else ""})
            continue
        pid = _pid(new, record.line)
        if old["status"] != new["status"]:
            status_changes.append({"patient": pid, "old": old["status"], "new": new["status"]})
        before, after = rule_outcomes(old), rule_outcomes(new)
        for rid in sorted(set(before) | set(after)):
            a, b = before.get(rid), after.get(rid)
            if a == b:
                continue
            buckets = per_rule.setdefault(
                rid, {"newly_fire": [], "stop_firing": [], "to_undetermined": [], "from_undetermined": []}
            )
            if b == "fired":
                buckets["newly_fire"].append(pid)
            if a == "fired":
                buckets["stop_firing"].append(pid)
            if b == "undetermined":
                buckets["to_undetermined"].append(pid)
            if a == "undetermined":
                buckets["from_undetermined"].append(pid)
    return {
        "old": {"kb": old_kb.id, "version": old_kb.version, "fingerprint": old_kb.fingerprint},
        "new": {"kb": new_kb.id, "version": new_kb.version, "fingerprint": new_kb.fingerprint},
        "patients": total,
        "invalid": unreadable,
        "rules": dict(sorted(per_rule.items())),
        "status_changes": status_changes,
    }


def _patient_record(record: Record) -> tuple[Record, str | None]:
    """The patient a line stands for: itself, or the input a stored result holds."""
    value, problem = record_value(record)
    if problem is not None or not is_result(value):
        return record, None
    decision = value["decision"]
    stored = decision.get("input") if isinstance(decision, dict) else None
    if not isinstance(stored, dict):
        return record, "a stored result without its input (evaluate or batch with --include-input keeps it)"
    return replace(record, raw=b"", data=stored), None


def is_result(value: Any) -> bool:
    """Does this document stand for a stored result (of evaluate or batch) rather than a patient?

    A patient record has no `decision` field (the schema refuses it), so a document with one is a
    result, well-formed or not: explain, replay and impact then check its shape and refuse a
    malformed one with its JSON pointer (`/decision: 'x' is not of type 'object'`), as trace does,
    instead of reading it as a patient record with unknown fields."""
    return isinstance(value, dict) and "decision" in value


def stored_decision(
    kb: KnowledgeBase, old: dict[str, Any], file: str | None = None, line: int | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the patient, the full result) behind a stored result at any detail level, re-derived from
    the input it holds and checked to reproduce it byte for byte (as `replay` checks). KBErrors
    when that cannot be done honestly: made by another knowledge base, no input stored, or the
    input does not give this result, or it is not the shape of a result (`explain.malformed`, each
    problem with its JSON pointer); each error names `file` and `line`."""
    check_stored(kb, old, file, line)
    return rederived(kb, old, file, line)


def check_stored(kb: KnowledgeBase, old: Any, file: str | None = None, line: int | None = None) -> None:
    """KBErrors unless `old` has the shape of a result (`explain.malformed`) made by this
    knowledge base (`explain.other_kb`): what explaining any stored result needs first."""
    problems = shape_problems(old)
    if problems:
        raise KBErrors(
            [
                replace(
                    problem,
                    code="explain.malformed",
                    message=f"not a well-formed fsgs-kb result: {problem.message}",
                    file=file,
                    line=line,
                    hint="fsgs-kb trace checks a stored result; evaluate the patient again for a result to explain",
                )
                for problem in problems
            ]
        )
    decision = old["decision"]
    made_by = decision.get("kb") if isinstance(decision.get("kb"), dict) else {}
    if made_by.get("fingerprint") != kb.fingerprint:
        raise KBErrors(
            [
                KBError(
                    "explain.other_kb",
                    f"this result was made by knowledge base {made_by.get('id')} {made_by.get('version')} "
                    f"(fingerprint {str(made_by.get('fingerprint'))[:12]}), not {kb.id} {kb.version} "
                    f"({kb.fingerprint[:12]})",
                    hint="explain it with the knowledge base that made it (--rules DIR)",
                    file=file,
                    line=line,
                )
            ]
        )


def rederived(
    kb: KnowledgeBase, old: dict[str, Any], file: str | None = None, line: int | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`stored_decision` once `check_stored` passed: the input it holds, evaluated again and
    checked to give this result byte for byte."""
    decision = old["decision"]
    patient = decision.get("input")
    if not isinstance(patient, dict):
        raise KBErrors(
            [
                KBError(
                    "explain.no_input",
                    "this result does not hold the patient record it was made from, which explaining it needs",
                    hint="evaluate or batch with --include-input keeps it; or explain the patient record itself",
                    file=file,
                    line=line,
                )
            ]
        )
    verdict = replay_one(kb, old, {})
    if verdict["verdict"] != "identical":
        changed = ", ".join(f"{c['rule']} {c['old']} → {c['new']}" for c in verdict.get("changes", [])) or "its content"
        raise KBErrors(
            [
                KBError(
                    "explain.not_reproduced",
                    f"evaluating the record this result holds does not give this result ({changed})",
                    hint="fsgs-kb trace and fsgs-kb replay say what differs",
                    file=file,
                    line=line,
                )
            ]
        )
    full = kb.evaluate(patient, include_input=True, mask=tuple(decision.get("masked", [])))
    return patient, full
