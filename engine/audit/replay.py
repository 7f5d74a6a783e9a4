"""Replay past decisions with the knowledge base at hand, and measure the impact of a change.

Replay matches each recorded decision to its input by `input_sha256` (or uses the input stored
in the decision record by --include-input) and says, per record: identical (byte for byte),
changed (which rules, old → new outcome) or input missing. Impact evaluates one cohort under two
knowledge bases and lists, per rule, the patients whose outcome changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from fsgs_kb.engine.evaluate.output import dumps
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.load.fingerprint import canonical_json, sha256_text

BATCH_ONLY = ("record", "line")


def input_hash(text: str) -> str:
    """The input_sha256 a result records for this input line."""
    try:
        return sha256_text(canonical_json(json.loads(text)))
    except ValueError:
        return sha256_text(text)


def index_inputs(lines: Iterable[str]) -> dict[str, str]:
    index: dict[str, str] = {}
    for raw in lines:
        text = raw.rstrip("\r\n")
        if text.strip():
            index.setdefault(input_hash(text), text)
    return index


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in BATCH_ONLY}


def _outcomes(result: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["outcome"] for r in result.get("rules", [])}


def replay_one(kb: KnowledgeBase, old: dict[str, Any], index: dict[str, str]) -> dict[str, Any]:
    decision = old.get("decision", {})
    ident = {
        "decision_id": decision.get("decision_id"),
        "patient_id": old.get("patient_id"),
        "record": old.get("record"),
    }
    stored = decision.get("input")
    if stored is not None:
        masked = tuple(decision.get("masked", []))
        new = kb.evaluate(stored, include_input=True, mask=masked)
        if masked:  # identity fields were computed on the masked input: compare the decision itself
            keep = ("status", "advice", "drafts", "undetermined", "no_recommendation", "scope", "rules", "errors")
            same = dumps({k: old.get(k) for k in keep}) == dumps({k: new.get(k) for k in keep})
        else:
            same = dumps(_strip(old)) == dumps(new)
    else:
        text = index.get(decision.get("input_sha256", ""))
        if text is None:
            return {**ident, "verdict": "input_missing"}
        try:
            record = json.loads(text)
        except ValueError:
            return {**ident, "verdict": "identical" if old.get("status") == "invalid" else "changed", "changes": []}
        new = kb.evaluate(record)
        same = dumps(_strip(old)) == dumps(new)
    if same:
        return {**ident, "verdict": "identical"}
    before, after = _outcomes(old), _outcomes(new)
    changes: list[dict[str, Any]] = [
        {"rule": rid, "old": before.get(rid, "absent"), "new": after.get(rid, "absent")}
        for rid in sorted(set(before) | set(after))
        if before.get(rid) != after.get(rid)
    ]
    if old.get("status") != new.get("status"):
        changes.insert(0, {"rule": "(status)", "old": old.get("status"), "new": new.get("status")})
    return {**ident, "verdict": "changed", "changes": changes}


def replay(kb: KnowledgeBase, results: Iterable[str], index: dict[str, str]) -> Iterator[dict[str, Any]]:
    for line in results:
        if line.strip():
            yield replay_one(kb, json.loads(line), index)


def _pid(result: dict[str, Any], number: int) -> str:
    return str(result.get("patient_id") or f"line {number}")


def impact(old_kb: KnowledgeBase, new_kb: KnowledgeBase, patients: Iterable[str]) -> dict[str, Any]:
    """Per rule, the patients who newly fire, stop firing, become or stop being undetermined."""
    per_rule: dict[str, dict[str, list[str]]] = {}
    status_changes: list[dict[str, Any]] = []
    total = 0
    for number, raw in enumerate(patients, start=1):
        text = raw.strip()
        if not text:
            continue
        total += 1
        try:
            record = json.loads(text)
        except ValueError:
            continue
        old, new = old_kb.evaluate(record), new_kb.evaluate(record)
        pid = _pid(new, number)
        if old["status"] != new["status"]:
            status_changes.append({"patient": pid, "old": old["status"], "new": new["status"]})
        before, after = _outcomes(old), _outcomes(new)
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
        "rules": dict(sorted(per_rule.items())),
        "status_changes": status_changes,
    }
