"""What differs between a recorded result and the same input re-evaluated, at any detail level.

Replay tells three things apart that a byte comparison cannot: a decision that comes out
differently (some rule's outcome or the status changed: `outcome_changes`), one whose outcomes
are all the same but whose record differs (a rule's text or version, a threshold shown, the
knowledge base's version and fingerprint: `differences`), and one reproduced byte for byte.
"""

from __future__ import annotations

from typing import Any

from fsgs_kb.engine.evaluate.detail import rule_outcomes
from fsgs_kb.engine.evaluate.output import dumps

# Top-level fields compared elsewhere (status and rule entries, per rule; a minimal result's
# texts and needs, per rule) or not at all (the batch's record and line numbers); in the decision
# record, the knowledge base's identity, which replay reports on its own.
NOT_COMPARED = ("record", "line", "status", "rules", "decision", "says", "missing")
DECISION_IDENTITY = ("decision_id", "kb")


def outcome_changes(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """The status (as rule "(status)") and every rule whose outcome differs, old → new; a rule
    one side does not record is "absent" there."""
    before, after = rule_outcomes(old), rule_outcomes(new)
    changes: list[dict[str, Any]] = [
        {"rule": rid, "old": before.get(rid, "absent"), "new": after.get(rid, "absent")}
        for rid in sorted(set(before) | set(after))
        if before.get(rid) != after.get(rid)
    ]
    if old.get("status") != new.get("status"):
        changes.insert(0, {"rule": "(status)", "old": old.get("status"), "new": new.get("status")})
    return changes


def differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Beyond outcomes: `rules`, each rule whose recorded entry differs (the fields, and its
    version old → new where the result records it); `fields`, the other top-level fields and
    decision fields that differ (the knowledge base's identity only when both name the same
    fingerprint: then a decision id or version that differs was edited).

    Values are compared as replay compares results, in their JSON text: `1.0` is not `1`, `true`
    is not `1`, and an object whose keys come in another order is not the one written (Python's
    `==` says all three are equal, and a `changed` result was then said to differ "in no field").
    Fields that are all the same but in another order are named as such ("the order of ...")."""
    entries = _entries(old), _entries(new)
    rules = []
    for rid in [r for r in entries[0] if r in entries[1]]:
        a, b = entries[0][rid], entries[1][rid]
        fields = sorted(k for k in set(a) | set(b) if k != "outcome" and _differ(a.get(k), b.get(k)))
        if fields:
            item: dict[str, Any] = {"rule": rid, "fields": fields}
            if "version" in fields:
                item["version"] = {"old": a.get("version"), "new": b.get("version")}
            rules.append(item)
    keys = dict.fromkeys([*old, *new])
    fields = [k for k in keys if k not in NOT_COMPARED and _differ(old.get(k), new.get(k))]
    if _reordered(old, new, ()):
        fields.append("the order of the fields")
    if [r for r in entries[0] if r in entries[1]] != [r for r in entries[1] if r in entries[0]]:
        fields.append("the order of the rule entries")
    before, after = old.get("decision"), new.get("decision")
    if isinstance(before, dict) and isinstance(after, dict):
        skip = () if _fingerprint(before) == _fingerprint(after) else DECISION_IDENTITY
        inner = dict.fromkeys([*before, *after])
        fields += [f"decision.{k}" for k in inner if k not in skip and _differ(before.get(k), after.get(k))]
        if _reordered(before, after, skip):
            fields.append("the order of the decision's fields")
    return {"rules": rules, "fields": fields}


def _differ(a: Any, b: Any) -> bool:
    return a != b or dumps(a) != dumps(b)


def _reordered(old: dict[str, Any], new: dict[str, Any], skip: tuple[str, ...]) -> bool:
    """The keys both have, in another order (each side's other keys are named as fields that differ)."""
    return [k for k in old if k in new and k not in skip] != [k for k in new if k in old and k not in skip]


def _fingerprint(decision: dict[str, Any]) -> Any:
    kb = decision.get("kb")
    return kb.get("fingerprint") if isinstance(kb, dict) else None


def _entries(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each rule's recorded entry: the rule entries (full, standard), else what a minimal result
    records per rule (its text for a fired rule, what is missing for an undetermined one)."""
    if isinstance(result.get("rules"), list):
        return {e["id"]: e for e in result["rules"] if isinstance(e, dict) and isinstance(e.get("id"), str)}
    out: dict[str, dict[str, Any]] = {}
    for field in ("says", "missing"):
        recorded = result.get(field)
        for rid, value in recorded.items() if isinstance(recorded, dict) else []:
            out.setdefault(rid, {})[field] = value
    return out
