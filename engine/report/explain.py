"""Render a result for a person: what fired and why, what is undetermined, the nearest misses.

Reads only the result dict (the output contract), so it can explain a result produced earlier
or elsewhere, e.g. a line of a batch output.
"""

from __future__ import annotations

import textwrap
from typing import Any

from fsgs_kb.engine.evaluate.evaluation import SCOPE_DERIVED
from fsgs_kb.engine.report.text import printable

WIDTH = 100
STATUS_TEXT = {
    "evaluated": "evaluated",
    "out_of_scope": "out of scope: the review covers idiopathic FSGS only",
    "scope_undetermined": "scope undetermined: cannot tell whether the review applies",
    "invalid": "invalid record: no rule was run",
    "error": "internal error: this result must not be used",
}


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), WIDTH, initial_indent=indent, subsequent_indent=" " * len(indent))


def _provenance(cond: dict[str, Any]) -> str:
    prov = cond.get("provenance")
    if not prov:
        return ""
    if prov["kind"] == "source":
        return f" [{cond['parameter']}: the review, {prov['sentence']}]"
    if prov["kind"] == "cited":
        checked = "verified" if prov["verified"] else "NOT verified against the primary document"
        return f" [{cond['parameter']}: cited, {prov['reference'][:60]}…, {checked}]"
    return f" [{cond['parameter']}: local policy, decided {prov['decided_on']}]"


def rule_lines(rule: dict[str, Any], show_says: bool) -> list[str]:
    draft = " (draft, not signed off)" if rule["status"] != "active" else ""
    lines = [f"  [{rule['kind']}] {rule['id']} v{rule['version']}{draft}: {rule['title']}"]
    for cond in rule["conditions"]:
        mark = {True: "✓", False: "✗", None: "?"}[cond["result"]]
        lines.append(f"      {mark} {cond['text']}{_provenance(cond)}")
    for dv in rule["derived"]:
        if dv["value"] is not None and dv["name"] != SCOPE_DERIVED:
            lines += _wrap(f"{dv['name']}: {dv['how']}", "        where ")
    if show_says:
        lines += _wrap(rule["says"], "      says: ")
        for cite in rule["citations"]:
            lines += _wrap(f'{cite["sentence"]}: "{cite["quote"]}"', "      source ")
        lines += _wrap(f'{rule["evidence"]["sentence"]}: "{rule["evidence"]["quote"]}"', "      evidence ")
    return lines


def _nearest_misses(rules: list[dict[str, Any]], limit: int = 3, within: float = 0.25) -> list[str]:
    """Rules that did not fire because of one numeric comparison, within 25 % of its threshold."""
    misses = []
    for rule in rules:
        failed = [c for c in rule["conditions"] if c["result"] is False]
        if rule["outcome"] == "not_fired" and len(failed) == 1 and "margin" in failed[0]:
            cond = failed[0]
            relative = abs(cond["margin"]) / (abs(cond["threshold"]) or 1)
            if relative <= within:
                misses.append((relative, f"  {rule['id']}: {cond['distance']} {cond['unit'] or ''}".rstrip()))
    return [text for _, text in sorted(misses)[:limit]]


MISSING_TEXT = {
    "no_resource": "no resource for it",
    "unit_not_convertible": "a unit the map cannot convert",
    "dose_not_computable": "a dose that cannot be computed from the instructions",
    "ambiguous": "ambiguous (the resources disagree, or cannot be told apart)",
}


def _why_empty(entry: Any) -> str:
    if isinstance(entry, dict) and "missing" in entry:
        return f" (FHIR: {MISSING_TEXT.get(entry['missing'], entry['missing'])})"
    return ""


def sources_lines(result: dict[str, Any]) -> list[str]:
    """FHIR input: where each value came from, and why each empty field is empty."""
    sources = result.get("sources")
    if not isinstance(sources, dict):
        return []
    conversion = result["decision"].get("fhir") or {}
    head = "Data from FHIR"
    if conversion:
        head += f" (evaluation date {conversion['as_of']}, map {conversion['map']['version']})"
    lines = [head + ":"]
    empty: dict[str, list[str]] = {}
    for pointer, entry in sources.items():
        if "missing" in entry:
            empty.setdefault(entry["missing"], []).append(pointer)
            continue
        when = f", {entry['effective']}" if entry.get("effective") else ""
        others = f" (+{len(entry['others'])} more)" if entry.get("others") else ""
        what = f"{entry['resourceType']}/{entry['id']}" if entry.get("id") else str(entry["resourceType"])
        lines.append(f"  {pointer} ← {what}{others} [{entry.get('code')}{when}]")
    for reason, pointers in empty.items():
        lines += _wrap(", ".join(pointers), f"  empty, {MISSING_TEXT.get(reason, reason)}: ")
    return lines


def explain_text(result: dict[str, Any]) -> str:
    result = printable(result)  # ids, keys and values from the record reach a terminal
    decision = result["decision"]
    kb = decision["kb"]
    lines = [
        f"Patient {result.get('patient_id') or '(no id)'}: {STATUS_TEXT.get(result['status'], result['status'])}",
        f"  knowledge base {kb['id']} {kb['version']} (fingerprint {kb['fingerprint'][:12]}), "
        f"decision {decision['decision_id']}",
    ]
    if result["errors"]:
        lines.append("Problems:")
        lines += [f"  {e['message']}" + (f" (hint: {e['hint']})" if e.get("hint") else "") for e in result["errors"]]
    scope = result.get("scope")
    if scope and result["status"] == "scope_undetermined":
        lines.append(f"Scope: {scope['reason']}")
    fired = [r for r in result["rules"] if r["id"] in result["advice"]]
    if fired:
        lines.append("Fired:")
        for rule in fired:
            lines += rule_lines(rule, show_says=True)
    undetermined = [r for r in result["rules"] if r["id"] in result["undetermined"]]
    if undetermined:
        lines.append("Undetermined (the record lacks data that would decide these):")
        why = result.get("sources") or {}
        for rule in undetermined:
            needs = [p + _why_empty(why.get(p)) for p in rule["missing"]]
            lines.append(f"  {rule['id']}: needs {', '.join(needs)}")
    if result.get("no_recommendation"):
        lines.append("No recommendation: the review says nothing for this patient.")
    misses = _nearest_misses(result["rules"])
    if misses and result["status"] == "evaluated":
        lines.append("Nearest misses:")
        lines += misses
    if result["advice"] and any(r["kind"] == "advice" for r in fired):
        lines += _wrap(
            "Evidence note: the review says the randomized trials of this drug in this disease are very limited (S3).",
            "",
        )
    if result.get("origin"):
        lines.append(f"Input: {result['origin']}")
    lines += sources_lines(result)
    return "\n".join(lines)
