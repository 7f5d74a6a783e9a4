"""Trace a past result back to the knowledge base, and refuse to call a forged one exact.

A result file is evidence an auditor may be handed by anyone. Nothing in it is taken on trust:
its shape is checked against the result schema; every rule entry is rebuilt with the knowledge
base from the one value the result records for each input and compared with the recorded one
(engine/audit/entries.py: texts, thresholds, each condition's value, truth and wording, the
outcome where Kleene logic decides it); the top-level fields are checked to be exactly what the
rule outcomes and the knowledge base make of them (engine/audit/consistency.py), at every detail
level. When the input is at hand (recorded with --include-input, or found by its hash in a
patients file) the whole result is re-evaluated and compared. Only a result made by this
knowledge base with no mismatch, re-derived from its input, is *exact*; one from FHIR input is
re-derived but for the conversion's account, which it carries (as replay says).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fsgs_kb.engine.audit.consistency import mismatch, summary_mismatches
from fsgs_kb.engine.audit.entries import entry_mismatches, same
from fsgs_kb.engine.audit.replay import carried_fhir, check_stored, rederived, replay_one
from fsgs_kb.engine.audit.shape import shape_problems
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.evaluate.detail import CannotExpand, detail_of, reduce
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.read.records import Record


@dataclass(kw_only=True)
class Trace:
    result: dict[str, Any]
    same_kb: bool
    rederived: bool = False
    carried: list[str] = field(default_factory=list)  # the FHIR conversion's account, not re-derived
    mismatches: list[str] = field(default_factory=list)
    malformed: list[KBError] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return self.same_kb and not self.mismatches and not self.malformed

    @property
    def exact(self) -> bool:
        """Re-derived whole: a result that carries a FHIR conversion's account is not (replay
        carries it as recorded, see `carried_fhir`), however identical the rest."""
        return self.consistent and self.rederived and not self.carried


def trace(kb: KnowledgeBase, result: Any, inputs: dict[str, Record] | None = None) -> Trace:
    """Check a result of any detail level against the knowledge base at hand. A standard result
    is first rebuilt in full from the knowledge base (its fingerprint must match); a minimal one
    is checked as far as it goes (advice texts, lists) and re-derived when its input is at hand."""
    malformed = shape_problems(result)
    if malformed:
        return Trace(result=result if isinstance(result, dict) else {}, same_kb=False, malformed=malformed)
    made_by = result["decision"]["kb"]
    found = Trace(result=result, same_kb=made_by.get("fingerprint") == kb.fingerprint, carried=carried_fhir(result))
    if not found.same_kb:
        return found  # another knowledge base: its rules cannot be checked against these
    detail = detail_of(result)
    if detail == "standard":
        try:
            found.result = kb.expand(result)
        except CannotExpand as exc:
            found.mismatches.append(exc.problem.message)
            return found
    if detail == "minimal":
        found.mismatches += _minimal_mismatches(kb, result)
    else:
        found.mismatches += entry_mismatches(kb.evaluation, found.result["rules"], standard=detail == "standard")
        if detail == "standard":
            found.mismatches += _standard_mismatches(kb, result, found.result)
    found.mismatches += summary_mismatches(kb, found.result)
    stored = result["decision"].get("input")
    if stored is not None or (inputs and result["decision"].get("input_sha256") in inputs):
        verdict = replay_one(kb, result, inputs or {})
        found.rederived = verdict["verdict"] == "identical"
        if verdict["verdict"] == "unreadable":  # e.g. a claim of masking the stored input belies
            found.mismatches += [p["message"] for p in verdict.get("problems", [])] or [verdict["problem"]]
        for change in verdict.get("changes", []):
            found.mismatches.append(
                f"re-evaluated from the input, {change['rule']} is {change['new']}, not {change['old']}"
            )
        if verdict["verdict"] == "changed" and not verdict.get("changes"):
            differs = verdict.get("differs", {})
            where = [f"rule {d['rule']} ({', '.join(d['fields'])})" for d in differs.get("rules", [])]
            where += differs.get("fields", [])
            found.mismatches.append(
                "re-evaluated from the input, the outcomes are the same but the result differs"
                + (f" in {'; '.join(where)}" if where else " (in a field other than outcomes)")
            )
    return found


def _standard_mismatches(kb: KnowledgeBase, result: dict[str, Any], full: dict[str, Any]) -> list[str]:
    """A standard result is what its full record reduces to: what expanding it passed over (a
    derived value listed twice or that no rule relies on, out of order) is named here."""
    again = reduce(kb.evaluation, full, "standard")
    out = []
    for key in ("rules", "derived"):  # expanding copies every other field as it is
        if same(again.get(key), result.get(key)):
            continue
        if key == "derived":
            names = [dv.get("name") for dv in result.get("derived", [])]
            expected = [dv["name"] for dv in again["derived"]]
            why = "each derived value its rules rely on, once, in the knowledge base's order"
            out.append(mismatch("derived", expected, names, why) if names != expected else f"derived: {why}")
        elif key == "rules":
            pairs = zip(again["rules"], result.get("rules", []), strict=False)
            differ = [new["id"] for new, old in pairs if not same(new, old)]
            out.append(f"rules: the entries of {', '.join(differ)} are not what a standard result records of them")
    return out


def _minimal_mismatches(kb: KnowledgeBase, result: dict[str, Any]) -> list[str]:
    """A minimal result records no conditions: check its rule ids, advice texts and lists."""
    named = [*result["advice"], *result["caveats"], *result["undetermined"], *result["says"], *result["missing"]]
    unknown = [rid for rid in dict.fromkeys(named) if rid not in kb.model.rules]
    out = [f"rule {rid}: no such rule in this knowledge base" for rid in unknown]
    for rid, text in result["says"].items():
        if rid in kb.model.rules and text != kb.evaluation.static[rid]["says"]:
            out.append(f"rule {rid}: says differs from the knowledge base's")
    for name, listed, keyed in (
        ("says", result["advice"] + result["caveats"], result["says"]),
        ("missing", result["undetermined"], result["missing"]),
    ):
        if sorted(listed) != sorted(keyed):
            why = "one text per rule in advice and caveats" if name == "says" else "one entry per undetermined rule"
            out.append(mismatch(name, sorted(listed), sorted(keyed), why + ", by rule id"))
    return out


def explained_result(
    kb: KnowledgeBase, stored: dict[str, Any], file: str | None = None, line: int | None = None
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the patient or None, the full result) of a stored result `explain` is given. With its
    input, re-derived and checked byte for byte (`rederived`); without it (batch's default
    output), traced instead: made by this knowledge base, every rule entry and the summary
    consistent with it (a standard result rebuilt in full from it), and then explained from what
    it recorded. A minimal result records no condition values: there is nothing to explain why
    with, and it is refused saying so. KBErrors naming `file` and `line` otherwise."""
    check_stored(kb, stored, file, line)
    if isinstance(stored["decision"].get("input"), dict):
        return rederived(kb, stored, file, line)
    found = trace(kb, stored)
    if found.mismatches:
        shown = "; ".join(found.mismatches[:3]) + (
            f"; … ({len(found.mismatches) - 3} more)" if len(found.mismatches) > 3 else ""
        )
        raise KBErrors(
            [
                KBError(
                    "explain.inconsistent",
                    f"this result does not agree with the knowledge base that made it: {shown}",
                    hint="fsgs-kb trace names every mismatch; evaluate the patient again for a result to explain",
                    file=file,
                    line=line,
                )
            ]
        )
    if detail_of(stored) == "minimal":
        raise KBErrors(
            [
                KBError(
                    "explain.minimal_no_input",
                    "a minimal result records no condition values and not its input: nothing to explain why with",
                    hint="explain the patient record, a result at --detail standard or full, or one kept with "
                    "--include-input",
                    file=file,
                    line=line,
                )
            ]
        )
    return None, found.result
