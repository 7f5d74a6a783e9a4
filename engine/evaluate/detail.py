"""Results at the detail the reader needs: full, standard or minimal, and back from standard.

- **full** is the self-contained record (schema/result.schema.json without `detail`): every rule
  with its conditions' thresholds, provenance and wording, its derived values, advice text and
  quotes. A reader needs nothing else.
- **standard** (`"detail": "standard"`) drops what the knowledge base already holds — advice
  text, quotes, provenance, each condition's operator, threshold, unit and wording — and keeps
  what only the patient decides: per rule the outcome, the missing inputs and each condition's
  actual value and truth; each derived value once (value, how it was computed, what is missing).
  With the knowledge base of its fingerprint (`decision.kb.fingerprint`), `expand` rebuilds the
  full record byte for byte: trace, explain and replay work on it.
- **minimal** (`"detail": "minimal"`) is what a pipeline acts on: status, the fired advice and
  caveats with their text (`says`), the undetermined rules with what is missing (`missing`),
  errors and the decision record. Its conditions are gone, so only
  re-evaluating its input (`--include-input`, or the patients file) rebuilds the full record.

All levels share the top-level summary (`patient_id`, `status`, `advice`, `caveats`, `drafts`,
`undetermined`, `no_recommendation`, `scope`, `errors`, `decision`), so a pipeline reading those
works at any level.
"""

from __future__ import annotations

import json
from typing import Any

from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.evaluate.evaluation import Evaluation
from fsgs_kb.engine.evaluate.kleene import DerivedValue
from fsgs_kb.engine.load.conditions import walk

DETAILS = ("full", "standard", "minimal")
SUMMARY = ("patient_id", "status", "advice", "caveats", "drafts", "undetermined", "no_recommendation", "scope")
PER_PATIENT = ("decided_without", "caveats", "shown", "unchecked")  # rule-entry fields the KB cannot rebuild


def check_detail(detail: str) -> None:
    """Raise ValueError for a detail level that does not exist."""
    if detail not in DETAILS:
        raise ValueError(f"detail {detail!r} is not one of {', '.join(DETAILS)}")


def detail_of(result: dict[str, Any]) -> str:
    """The detail level of a result (a result without `detail` is full, as results always were)."""
    detail = result.get("detail", "full")
    return detail if isinstance(detail, str) else "full"


# ---- full → standard / minimal ----------------------------------------------------------------------
def reduce(evaluation: Evaluation, result: dict[str, Any], detail: str) -> dict[str, Any]:
    """The result at `detail`, made from the full result (which it does not change)."""
    if detail == "full":
        return result
    out: dict[str, Any] = {"detail": detail}
    out.update((key, result[key]) for key in SUMMARY)
    if detail == "standard":
        out["rules"] = [_standard_rule(evaluation, entry) for entry in result["rules"]]
        out["derived"] = _derived_once(evaluation, result["rules"])
    else:
        check_detail(detail)
        fired = set(result["advice"]) | set(result["caveats"])
        out["says"] = {e["id"]: e["says"] for e in result["rules"] if e["id"] in fired}
        undetermined = set(result["undetermined"])
        out["missing"] = {e["id"]: e["missing"] for e in result["rules"] if e["id"] in undetermined}
    out["errors"] = result["errors"]
    out["decision"] = result["decision"]
    return out


def _standard_rule(evaluation: Evaluation, entry: dict[str, Any]) -> dict[str, Any]:
    rule = evaluation.model.rules[entry["id"]]
    conditions = []
    for leaf, cond in zip(walk(rule.when), entry["conditions"], strict=True):
        kept: dict[str, Any] = {leaf.source: leaf.name, "actual": cond["actual"], "result": cond["result"]}
        if evaluation.evaluator.leaf_plan(leaf).unit_from:  # the unit is the record's, not the KB's
            kept["unit"] = cond["unit"]
        conditions.append(kept)
    out: dict[str, Any] = {"id": entry["id"], "outcome": entry["outcome"], "missing": entry["missing"]}
    if "decided_without" in entry:
        out["decided_without"] = entry["decided_without"]
    out["conditions"] = conditions
    if "caveats" in entry:
        out["caveats"] = [caveat["id"] for caveat in entry["caveats"]]
    for key in ("shown", "unchecked"):
        if key in entry:
            out[key] = entry[key]
    return out


def _derived_once(evaluation: Evaluation, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for entry in entries:
        for dv in entry["derived"]:
            seen.setdefault(dv["name"], dv)
    return [
        {"name": name, "value": seen[name]["value"], "how": seen[name]["how"], "missing": seen[name]["missing"]}
        for name in evaluation.model.derived_order
        if name in seen
    ]


# ---- standard → full -------------------------------------------------------------------------------
class CannotExpand(Exception):
    """A result that cannot be rebuilt in full with this knowledge base; `.problem` says why."""

    def __init__(self, problem: KBError) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _refuse(message: str) -> CannotExpand:
    return CannotExpand(KBError("result.expand", message))


def expand(evaluation: Evaluation, result: dict[str, Any]) -> dict[str, Any]:
    """The full result a standard one stands for, rebuilt from the knowledge base that made it.

    A full result comes back as it is. CannotExpand for a minimal result (its conditions are
    not recorded), a result of another knowledge base (by fingerprint), or a standard result
    whose rule entries do not fit this knowledge base's rules."""
    detail = detail_of(result)
    if detail == "full":
        return result
    if detail == "minimal":
        raise _refuse("a minimal result does not record its conditions: re-evaluate its input for the full record")
    if detail != "standard":
        raise _refuse(f"unknown detail {detail!r}")
    made_by = result.get("decision", {}).get("kb", {}).get("fingerprint")
    if made_by != evaluation.kb_record["fingerprint"]:
        raise _refuse(f"made by knowledge base {str(made_by)[:12]}, not this one: it cannot be expanded with it")
    derived = {d["name"]: d for d in result.get("derived", [])}
    out: dict[str, Any] = {}
    for key, value in result.items():
        if key == "detail" or key == "derived":
            continue
        out[key] = [_full_rule(evaluation, entry, derived) for entry in value] if key == "rules" else value
    return out


def _full_rule(evaluation: Evaluation, entry: dict[str, Any], derived: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rule = evaluation.model.rules.get(entry.get("id", ""))
    if rule is None:
        raise _refuse(f"rule {entry.get('id')!r} is not in this knowledge base")
    leaves = walk(rule.when)
    recorded = entry.get("conditions", [])
    if len(recorded) != len(leaves):
        raise _refuse(f"rule {rule.id}: {len(recorded)} conditions recorded, the rule has {len(leaves)}")
    conditions = []
    for leaf, cond in zip(leaves, recorded, strict=True):
        if cond.get(leaf.source) != leaf.name:
            raise _refuse(f"rule {rule.id}: condition {leaf.pointer} is on {leaf.name}, the result says otherwise")
        plan = evaluation.evaluator.leaf_plan(leaf)
        actual = cond.get("actual")
        unit = (cond.get("unit") or "") if plan.unit_from else plan.unit
        if leaf.op in ("present", "absent") or actual is not None:
            missing: list[str] = []
        elif leaf.source == "derived":
            missing = list(derived.get(leaf.name, {}).get("missing", []))
        else:
            missing = [plan.missing_pointer]
        try:
            explained = plan.explain(actual, unit, cond.get("result"), missing)
        except (TypeError, ValueError, ArithmeticError):  # an edited value: no distance to a list or a text
            raise _refuse(
                f"rule {rule.id}: condition {leaf.pointer} records {leaf.name} = {json.dumps(actual)}, which "
                f"cannot be compared with its threshold {json.dumps(plan.threshold)}"
            ) from None
        conditions.append({"pointer": leaf.pointer, **explained})
    entries = []
    for name in evaluation.rule_derived[rule.id]:
        dv = derived.get(name)
        if dv is None:
            raise _refuse(f"rule {rule.id} relies on derived value {name}, which the result does not record")
        spec = evaluation.model.derived[name]
        value = DerivedValue(name, dv.get("value"), spec.unit, tuple(dv.get("missing", [])), dv.get("how", ""))
        entries.append(evaluation.derived_entry(value))
    out: dict[str, Any] = {
        "id": rule.id,
        "version": rule.version,
        "status": rule.status,
        "kind": rule.kind,
        "title": rule.title,
        "outcome": entry.get("outcome"),
        "missing": list(entry.get("missing", [])),
        "conditions": conditions,
        "derived": entries,
    }
    if "decided_without" in entry:
        out["decided_without"] = list(entry["decided_without"])
    out.update(evaluation.static_part(rule.id))
    if rule.kind == "caveat":  # as Evaluation._evaluate adds them
        out["qualifies"] = list(rule.qualifies)
        out["provenance"] = dict(evaluation.static[rule.id]["provenance"])
        out["shown"] = entry.get("shown", [])
        if "unchecked" in entry:
            out["unchecked"] = list(entry["unchecked"])
    if "caveats" in entry:
        out["caveats"] = [_caveat_note(evaluation, caveat) for caveat in entry["caveats"]]
    return out


def _caveat_note(evaluation: Evaluation, caveat_id: Any) -> dict[str, Any]:
    rule = evaluation.model.rules.get(caveat_id) if isinstance(caveat_id, str) else None
    if rule is None or rule.kind != "caveat":
        raise _refuse(f"{caveat_id!r} is not a caveat of this knowledge base")
    static = evaluation.static[rule.id]
    return {"id": rule.id, "title": rule.title, "says": static["says"], "provenance": dict(static["provenance"])}


# ---- outcomes, at any level --------------------------------------------------------------------------
def rule_outcomes(result: dict[str, Any]) -> dict[str, str]:
    """Each rule's outcome as far as the result records it: every rule at full and standard; at
    minimal the fired (advice) and undetermined ones only."""
    if "rules" in result:
        return {r["id"]: r["outcome"] for r in result["rules"]}
    outcomes = {rid: "fired" for rid in [*result.get("advice", []), *result.get("caveats", [])]}
    outcomes.update({rid: "undetermined" for rid in result.get("undetermined", [])})
    return outcomes
