"""Trace a past result back to the knowledge base, and refuse to call a forged one exact.

A result file is evidence an auditor may be handed by anyone. Nothing in it is taken on trust:
its shape is checked against the result schema; every rule entry is compared with the rule of
that id (version, kind, title, advice text, citations); every condition's recorded truth is
recomputed from its recorded value and threshold, the threshold compared with the knowledge
base's, and the rule's outcome re-derived from those truths where Kleene logic decides it; the
top-level fields are checked to be exactly what the rule outcomes and the knowledge base make of
them (engine/audit/consistency.py), at every detail level. When the input is at hand (recorded with
--include-input, or found by its hash in a patients file) the whole result is re-evaluated and
compared. Only a result made by this knowledge base with no mismatch, re-derived from its
input, is *exact*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fsgs_kb.engine.audit.consistency import mismatch, summary_mismatches
from fsgs_kb.engine.audit.replay import check_stored, rederived, replay_one
from fsgs_kb.engine.audit.shape import shape_problems
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.evaluate.detail import CannotExpand, detail_of
from fsgs_kb.engine.evaluate.kleene import compare, kleene_all, kleene_any
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.model import AllOf, AnyOf, Compare, Condition, Not, ParamRef, Rule
from fsgs_kb.engine.read.records import Record

OUTCOME = {True: "fired", False: "not_fired", None: "undetermined"}


@dataclass(kw_only=True)
class Trace:
    result: dict[str, Any]
    same_kb: bool
    rederived: bool = False
    mismatches: list[str] = field(default_factory=list)
    malformed: list[KBError] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return self.same_kb and not self.mismatches and not self.malformed

    @property
    def exact(self) -> bool:
        return self.consistent and self.rederived


def trace(kb: KnowledgeBase, result: Any, inputs: dict[str, Record] | None = None) -> Trace:
    """Check a result of any detail level against the knowledge base at hand. A standard result
    is first rebuilt in full from the knowledge base (its fingerprint must match); a minimal one
    is checked as far as it goes (advice texts, lists) and re-derived when its input is at hand."""
    malformed = shape_problems(result)
    if malformed:
        return Trace(result=result if isinstance(result, dict) else {}, same_kb=False, malformed=malformed)
    made_by = result["decision"]["kb"]
    found = Trace(result=result, same_kb=made_by.get("fingerprint") == kb.fingerprint)
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
        full = found.result
        entries = {entry["id"]: entry for entry in full["rules"]}
        for entry in full["rules"]:
            rule = kb.model.rules.get(entry["id"])
            if rule is None:
                found.mismatches.append(f"rule {entry['id']}: no such rule in this knowledge base")
            else:
                found.mismatches += _rule_mismatches(kb, rule, entry, entries)
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


def _rule_mismatches(
    kb: KnowledgeBase, rule: Rule, entry: dict[str, Any], entries: dict[str, dict[str, Any]]
) -> list[str]:
    out = []
    static = kb.evaluation.static[rule.id]
    expected = {
        "version": rule.version,
        "status": rule.status,
        "kind": rule.kind,
        "title": rule.title,
        "says": static["says"],
        "citations": static["citations"],
        "evidence": static["evidence"],
    }
    names = {"says": "advice text (says)", "evidence": "evidence note"}
    for key, value in expected.items():
        if key in entry and entry[key] != value:
            out.append(f"rule {rule.id}: its {names.get(key, key)} differs from the knowledge base's")
    leaves = dict(_leaves(rule.when, "/when"))
    truths: dict[str, bool | None] = {}
    for condition in entry.get("conditions", []):
        pointer = condition.get("pointer")
        leaf = leaves.get(pointer)
        if leaf is None:
            out.append(f"rule {rule.id}: condition {pointer} is not in the rule")
            continue
        threshold = kb.evaluator.threshold(leaf.operand)
        if condition.get("threshold") != threshold and not isinstance(leaf.operand, ParamRef | type(None)):
            out.append(f"rule {rule.id}: condition {pointer} records threshold {condition.get('threshold')!r}")
        actual = condition.get("actual")
        try:
            truth = None if actual is None else compare(leaf.op, actual, condition.get("threshold"))
        except (TypeError, ValueError):
            truth = None
        recorded = condition.get("result")
        if actual is not None and truth != recorded and leaf.op not in ("present", "absent"):
            out.append(f"rule {rule.id}: condition {pointer} is {recorded} for value {actual!r}, which gives {truth}")
        truths[pointer] = recorded
    decided = _kleene(rule.when, "/when", truths)
    if rule.kind == "caveat" and decided is True:
        # a caveat fires only beside advice it qualifies that fired (clinical-notes §7)
        qualified = [q for q in rule.qualifies if entries.get(q, {}).get("outcome") == "fired"]
        if entry.get("outcome") != ("fired" if qualified else "not_fired"):
            beside = (
                f"beside {', '.join(qualified)}, which fired"
                if qualified
                else "and none of the advice it qualifies fired"
            )
            out.append(f"rule {rule.id}: outcome {entry.get('outcome')} contradicts its conditions (met) {beside}")
    elif decided is not None and entry.get("outcome") != OUTCOME[decided]:
        out.append(f"rule {rule.id}: outcome {entry.get('outcome')} contradicts its conditions ({OUTCOME[decided]})")
    return out


def _leaves(cond: Condition, pointer: str) -> list[tuple[str, Compare]]:
    if isinstance(cond, Compare):
        return [(pointer, cond)]
    if isinstance(cond, Not):
        return _leaves(cond.item, pointer + "/not")
    key = "all" if isinstance(cond, AllOf) else "any"
    assert isinstance(cond, AllOf | AnyOf)
    return [leaf for i, item in enumerate(cond.items) for leaf in _leaves(item, f"{pointer}/{key}/{i}")]


def _kleene(cond: Condition, pointer: str, truths: dict[str, bool | None]) -> bool | None:
    """The rule's truth from the recorded leaf truths (None where Kleene logic cannot tell)."""
    if isinstance(cond, Compare):
        return truths.get(pointer)
    if isinstance(cond, Not):
        inner = _kleene(cond.item, pointer + "/not", truths)
        return None if inner is None else not inner
    assert isinstance(cond, AllOf | AnyOf)
    key = "all" if isinstance(cond, AllOf) else "any"
    parts = [_kleene(item, f"{pointer}/{key}/{i}", truths) for i, item in enumerate(cond.items)]
    return kleene_all(parts) if isinstance(cond, AllOf) else kleene_any(parts)


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
