"""Audit, trace, diff and impact reports as text."""

from __future__ import annotations

from typing import Any

from fsgs_kb.engine.audit.diff import KBDiff, KBSide
from fsgs_kb.engine.explain.wording import provenance_label
from fsgs_kb.engine.kb import KnowledgeBase


def audit_text(report: dict[str, Any], markdown: bool = False) -> str:
    h1, h2, bullet = ("# ", "## ", "- ") if markdown else ("", "", "  ")
    kb = report["kb"]
    out = [f"{h1}Audit of {kb['id']} {kb['version']} (fingerprint {kb['fingerprint'][:16]})", ""]
    for rule in report["rules"]:
        signed = (
            f"approved by {rule['approved_by']} on {rule['approved_on']}" if rule["approved_by"] else "NOT SIGNED OFF"
        )
        out += [
            f"{h2}{rule['id']} v{rule['version']} [{rule['kind']}, {rule['status']}, {signed}]: {rule['title']}",
            "fires when:",
            *[f"{bullet}{line}" for line in rule["fires_when"]],
        ]
        for cite in rule["citations"]:
            out += [
                f'cites {cite["source"]} {cite["sentence"]} (quote verified verbatim): "{cite["quote"]}"',
                f'{bullet}the whole sentence: "{cite["sentence_text"]}"',
            ]
        if rule.get("qualifies"):
            out.append(f"qualifies: {', '.join(rule['qualifies'])} (fires only together with one of them)")
        if rule.get("provenance"):
            prov = rule["provenance"]
            flag = "  [NOT VERIFIED]" if prov["verified"] is False else ""
            out.append(f"caveat provenance: {prov['summary']}{flag}")
        if rule.get("qualified_by"):
            out.append(f"qualified by caveats: {', '.join(rule['qualified_by'])}")
        for param in rule["parameters"]:
            flag = "" if param["verified"] in (True, None) else "  [NOT VERIFIED]"
            out.append(f"parameter {param['name']} = {param['value']} {param['unit']}: {param['summary']}{flag}")
        for dv in rule["derived"]:
            out.append(f"relies on derived value {dv['name']}: {dv['title']}")
        out += [f"interpretation: {note}" for note in rule["interpretation"]]
        out += [f"history {h['version']} ({h['date']}): {' '.join(str(h['change']).split())}" for h in rule["history"]]
        out.append("")
    out.append(f"{h2}Source coverage")
    for sid, entry in report["coverage"].items():
        text = (
            ("encoded by " + ", ".join(entry["encoded_by"]))
            if "encoded_by" in entry
            else f"not encoded: {entry['not_encoded']}"
        )
        out.append(f"{bullet}{sid}: {text}")
    counts = report["parameters_by_provenance"]
    out += ["", f"{h2}Parameters by provenance: " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    nv = report["not_verified"]
    out.append(f"not verified against a primary document: {', '.join(nv['parameters']) or 'none'}")
    if nv.get("caveats"):
        out.append(f"caveats citing a source not verified against the primary document: {', '.join(nv['caveats'])}")
    out.append(f"rules not signed off: {', '.join(nv['rules_not_signed_off']) or 'none'}")
    if nv["source_full_text"]:
        out.append("the source's full text was not read: every rule rests on the abstract alone")
    return "\n".join(out)


def trace_text(kb: KnowledgeBase, result: dict[str, Any]) -> tuple[str, bool]:
    """The chain advice → rule → values → provenance → source sentence, and whether the result
    was made by this very knowledge base."""
    decision = result.get("decision", {})
    made_by = decision.get("kb", {})
    same = made_by.get("fingerprint") == kb.fingerprint
    lines = [
        f"Decision {decision.get('decision_id')} for patient {result.get('patient_id')}: {result.get('status')}",
        f"made by {made_by.get('id')} {made_by.get('version')} (fingerprint {str(made_by.get('fingerprint'))[:16]})",
    ]
    if same:
        lines.append(f"the knowledge base at hand is the same (fingerprint {kb.fingerprint[:16]}): the trace is exact")
    else:
        lines.append(
            f"WARNING: the knowledge base at hand is {kb.id} {kb.version} (fingerprint "
            f"{kb.fingerprint[:16]}), NOT the one that made this decision; provenance below is today's. "
            "Use 'fsgs-kb diff' to see what changed, or check out that version to reproduce it."
        )
    rules = {r["id"]: r for r in result.get("rules", [])}
    for rule_id in result.get("advice", []):
        entry = rules.get(rule_id, {})
        current = kb.model.rules.get(rule_id)
        lines += [
            "",
            f"advice: {entry.get('says', '')}",
            f"  ← rule {rule_id} v{entry.get('version')} ({entry.get('status')})"
            + (
                ""
                if current is None or current.version == entry.get("version")
                else f"; today's version is {current.version}"
            ),
        ]
        for cond in entry.get("conditions", []):
            lines.append(f"  ← {cond['text']}")
            name = cond.get("parameter")
            if name and name in kb.model.parameters:
                lines.append(f"      ← parameter {name}: {provenance_label(kb.model, name)}")
        for dv in entry.get("derived", []):
            lines.append(f"  ← derived {dv['name']} = {dv['how']}")
        for cite in entry.get("citations", []):
            source = kb.model.sources.get(cite["source"])
            sentence = source.sentences.get(cite["sentence"], "") if source else ""
            lines.append(f'  ← {cite["source"]} {cite["sentence"]}: "{" ".join(sentence.split())}"')
    if not result.get("advice"):
        lines.append("no rule fired")
    return "\n".join(lines), same


def impact_text(report: dict[str, Any], limit: int = 20) -> str:
    old, new = report["old"], report["new"]
    lines = [
        f"impact of {old['kb']} {old['version']} ({old['fingerprint'][:12]}) → {new['kb']} {new['version']} "
        f"({new['fingerprint'][:12]}) on {report['patients']:,} patients"
    ]
    if not report["rules"]:
        lines.append("no patient's outcome changes")
    for rid, buckets in report["rules"].items():
        lines.append(f"  {rid}:")
        for key, label in (
            ("newly_fire", "newly fire"),
            ("stop_firing", "stop firing"),
            ("to_undetermined", "become undetermined"),
            ("from_undetermined", "no longer undetermined"),
        ):
            ids = buckets[key]
            if ids:
                shown = ", ".join(ids[:limit]) + (f", … ({len(ids) - limit} more)" if len(ids) > limit else "")
                lines.append(f"    {label}: {len(ids)} ({shown})")
    if report["status_changes"]:
        lines.append(f"  status changes: {len(report['status_changes'])}")
    return "\n".join(lines)


def diff_text(old: KBSide, new: KBSide, diff: KBDiff) -> str:
    om, nm = old.report.load.model.manifest, new.report.load.model.manifest
    lines = [
        f"{old.label} ({om.get('id')} {om.get('version')}, {old.fingerprint[:12]}) → "
        f"{new.label} ({nm.get('id')} {nm.get('version')}, {new.fingerprint[:12]})"
    ]
    if not diff.changes:
        lines.append("no change")
    for change in diff.changes:
        lines.append(f"  {change['subject']}: {change['detail']}")
    for violation in diff.violations:
        lines.append(f"error[diff.unversioned] {violation}")
    return "\n".join(lines)
