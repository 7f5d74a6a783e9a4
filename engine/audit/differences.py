"""What differs between a recorded result and the same input re-evaluated, at any detail level.

Replay tells three things apart that a byte comparison cannot: a decision that comes out
differently (some rule's outcome or the status changed: `outcome_changes`), one whose outcomes
are all the same but whose record differs (a rule's text or version, a threshold shown, the
knowledge base's version and fingerprint: `differences`), and one reproduced byte for byte.
"""

from __future__ import annotations

from typing import Any

from fsgs_kb.engine.evaluate.detail import rule_outcomes

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
    decision fields that differ (the knowledge base's identity is not one of them)."""
    entries = _entries(old), _entries(new)
    rules = []
    for rid in [r for r in entries[0] if r in entries[1]]:
        a, b = entries[0][rid], entries[1][rid]
        fields = sorted(k for k in set(a) | set(b) if k != "outcome" and a.get(k) != b.get(k))
        if fields:
            item: dict[str, Any] = {"rule": rid, "fields": fields}
            if "version" in fields:
                item["version"] = {"old": a.get("version"), "new": b.get("version")}
            rules.append(item)
    keys = dict.fromkeys([*old, *new])
    fields = [k for k in keys if k not in NOT_COMPARED and old.get(k) != new.get(k)]
    decisions = old.get("decision"), new.get("decision")
    if isinstance(decisions[0], dict) and isinstance(decisions[1], dict):
        inner = dict.fromkeys([*decisions[0], *decisions[1]])
        fields += [
            f"decision.{k}" for k in inner if k not in DECISION_IDENTITY and decisions[0].get(k) != decisions[1].get(k)
        ]
    return {"rules": rules, "fields": fields}


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
