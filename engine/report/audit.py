"""Audit, trace, diff and impact reports as text."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fsgs_kb.engine.audit.diff import MAP_SUBJECT, KBDiff, KBSide
from fsgs_kb.engine.audit.replay import carried_note, replay_counts
from fsgs_kb.engine.audit.trace import Trace
from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.evaluate.detail import detail_of
from fsgs_kb.engine.explain.wording import provenance_label
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.load.templating import quantity
from fsgs_kb.engine.report.fhir_map import map_audit_lines
from fsgs_kb.engine.report.mdtext import md_text
from fsgs_kb.engine.report.text import escape_control, patient_label, printable
from fsgs_kb.engine.report.validation import format_error


def _strings(value: Any, escape: Callable[[str], str]) -> Any:
    """A copy of a JSON value with `escape` applied to every string in it (not to keys)."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, dict):
        return {k: _strings(v, escape) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings(v, escape) for v in value]
    return value


def _md_indented(text: str) -> str:
    """`md_text`, keeping the leading spaces that nest a condition under its group."""
    return text[: len(text) - len(text.lstrip(" "))] + md_text(text)


def _nested(line: str) -> str:
    """A condition line (indented two spaces a level) as a nested Markdown list item."""
    return f"{'  ' * ((len(line) - len(line.lstrip(' '))) // 2)}- {line.lstrip(' ')}"


def audit_text(report: dict[str, Any], markdown: bool = False) -> str:
    """The audit for a terminal, or (`markdown`) as Markdown: every text of the knowledge base in it
    is escaped once, here (control characters for the terminal; HTML and links for Markdown)."""
    report = _strings(report, _md_indented) if markdown else printable(report)
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
            *[_nested(line) if markdown else f"{bullet}{line}" for line in rule["fires_when"]],
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
            value = quantity(param["value"], param["unit"])
            out.append(f"parameter {param['name']} = {value}: {param['summary']}{flag}")
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
    if "fhir_map" in report:
        out += ["", f"{h2}FHIR map codes", *map_audit_lines(report["fhir_map"])]
    return "\n".join(out)


def _recorded_condition(cond: dict[str, Any]) -> str:
    """A condition as a standard result records it (no text): its input, value and truth."""
    name = cond.get("field") or cond.get("derived") or "?"
    unit = f" {cond['unit']}" if cond.get("unit") else ""
    value = "unknown" if cond.get("actual") is None else f"{json.dumps(cond.get('actual'))}{unit}"
    return f"{name} = {value}: {json.dumps(cond.get('result'))}"


def trace_text(kb: KnowledgeBase, found: Trace) -> str:
    """The chain advice → rule → values → provenance → source sentence, and the verdict."""
    if found.malformed:
        lines = ["NOT a valid fsgs-kb result; nothing in it can be traced:"]
        return "\n".join(lines + ["  " + format_error(problem) for problem in found.malformed])
    result = printable(found.result)
    decision = result["decision"]
    made_by = decision["kb"]
    lines = [
        f"Decision {decision.get('decision_id')} for patient {patient_label(found.result.get('patient_id'))}: "
        f"{result.get('status')}",
        f"made by {made_by.get('id')} {made_by.get('version')} (fingerprint {str(made_by.get('fingerprint'))[:16]})",
    ]
    minimal = "rules" not in result
    if not found.same_kb:
        lines.append(
            f"WARNING: the knowledge base at hand is {kb.id} {kb.version} (fingerprint "
            f"{kb.fingerprint[:16]}), NOT the one that made this decision; provenance below is today's. "
            "Use 'fsgs-kb diff' to see what changed, or check out that version to reproduce it."
        )
    elif found.mismatches:
        lines.append(f"MISMATCH: this result does not agree with the knowledge base {kb.id} {kb.version}:")
        lines += [f"  - {escape_control(m)}" for m in found.mismatches]
    elif found.exact:
        lines.append(
            f"re-derived from its input with the same knowledge base ({kb.fingerprint[:16]}): the trace is exact"
        )
    elif found.rederived:  # from FHIR input: identical but for what it carries
        lines.append(
            f"re-derived from its input with the same knowledge base ({kb.fingerprint[:16]}): identical; "
            f"not exact, as {carried_note(found.carried)}"
        )
    else:
        checked = (
            "advice texts, status and rule lists check out (a minimal result records no conditions)"
            if minimal
            else "texts, thresholds, condition arithmetic, outcomes, status and lists check out"
        )
        refused = any(str(e.get("code", "")).startswith("input.") for e in result.get("errors", []))
        why = (  # a record refused at input (not JSON data, beyond the limits) is never stored in a result
            "its record was refused at input, and a result never stores such a record (give the patients "
            "file with --input to re-derive it from the record's text)"
            if refused
            else "the result does not carry its input (evaluate with --include-input, or give the patients "
            "file with --input)"
        )
        carried = f"; {carried_note(found.carried)}" if found.carried else ""
        lines.append(
            f"consistent with the same knowledge base ({kb.fingerprint[:16]}): {checked}; not re-derived, as {why}"
            + carried
        )
    rules = {r["id"]: r for r in result.get("rules", [])}
    level = detail_of(result)
    for rule_id in result.get("advice", []):
        entry = rules.get(rule_id, {})
        current = kb.model.rules.get(rule_id)
        if minimal and current is not None and found.same_kb:  # the knowledge base that made it says the rest
            entry = {"version": current.version, "status": current.status, **kb.evaluation.static_part(rule_id)}
            entry["says"] = result.get("says", {}).get(rule_id, "")
        says = entry.get("says") or result.get("says", {}).get(rule_id)
        if entry.get("version") is None:  # a standard or minimal result of another knowledge base
            version = f"(version not recorded at {level} detail; the knowledge base that made it holds it)"
            today = "" if current is None else f"; today's is v{current.version}"
        else:
            version = f"v{entry.get('version')} ({entry.get('status')})"
            today = (
                "" if current is None or current.version == entry.get("version") else f"; today's is {current.version}"
            )
        lines += [
            "",
            f"advice: {says}" if says else f"advice: {rule_id} (its text is not recorded at {level} detail)",
            f"  ← rule {rule_id} {version}{today}",
        ]
        if minimal:
            lines.append("  ← (conditions not recorded at minimal detail)")
        for cond in entry.get("conditions", []):
            lines.append(f"  ← {cond.get('text') or _recorded_condition(cond)}")
            name = cond.get("parameter")
            if name and name in kb.model.parameters:
                lines.append(f"      ← parameter {name}: {provenance_label(kb.model, name)}")
        for dv in entry.get("derived", []):
            lines.append(f"  ← derived {dv.get('name')} = {dv.get('how')}")
        for cite in entry.get("citations", []):
            source = kb.model.sources.get(cite.get("source"))
            sentence = source.sentences.get(cite.get("sentence"), "") if source else ""
            lines.append(f'  ← {cite.get("source")} {cite.get("sentence")}: "{" ".join(sentence.split())}"')
    if not result.get("advice"):
        lines.append("no rule fired")
    return "\n".join(lines)


def replay_text(kb: KnowledgeBase, reports: list[dict[str, Any]]) -> str:
    """One line per decision that did not come back identical (those with the same outcomes
    under another knowledge base grouped by that knowledge base), then the counts."""
    lines = []
    same: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for report in printable(reports):
        if report["verdict"] == "unreadable":
            where = report.get("record") or report.get("patient_id") or "?"
            line = f" (line {report['line']})" if report.get("line") is not None else ""
            lines.append(f"unreadable: record {where}{line}: {report['problem']}")
        elif report["verdict"] == "same_outcomes":
            old = report["kb"]["old"]
            same.setdefault((old["id"], old["version"], str(old["fingerprint"])), []).append(report)
        elif report["verdict"] != "identical":
            what = "; ".join(f"{c['rule']} {c['old']} → {c['new']}" for c in report.get("changes", []))
            if report["verdict"] == "changed" and not what:
                what = "the same outcomes; " + differs_text(report.get("differs", {}))
            made_by = f", made by {_kb_label(report['kb']['old'])}" if "kb" in report else ""
            record = f"record {report['record']} " if report.get("record") is not None else ""  # evaluate's: none
            lines.append(
                f"{report['verdict']}: {record}patient {patient_label(report.get('patient_id'))} "
                f"(decision {report['decision_id']}{made_by}){': ' + what if what else ''}"
            )
    for (kb_id, version, fingerprint), group in same.items():
        lines.append(
            f"same outcomes, other KB version: {len(group):,} decisions made by "
            f"{_kb_label({'id': kb_id, 'version': version, 'fingerprint': fingerprint})} have the same status "
            f"and every rule the same outcome under {kb.version} ({kb.fingerprint[:12]})"
        )
        lines += [f"  {line}" for line in _same_outcome_details(group)]
    counts = replay_counts(reports)
    total = len(reports)
    share = f"{100 * counts['identical'] / total:.1f} %" if total else "n/a"
    lines.append(
        f"{total:,} decisions replayed with {kb.id} {kb.version} ({kb.fingerprint[:12]}): "
        f"{counts['identical']:,} identical ({share}), "
        + (f"{counts['same_outcomes']:,} same outcomes, other KB version, " if counts["same_outcomes"] else "")
        + f"{counts['changed']:,} changed, {counts['input_missing']:,} input missing"
        + (f", {counts['unreadable']:,} unreadable" if counts["unreadable"] else "")
    )
    carried = [r["carried"] for r in reports if r.get("carried")]
    if carried:
        parts = list(dict.fromkeys(name for names in carried for name in names))
        lines.append(f"{len(carried):,} of them from FHIR input: {carried_note(parts)}")
    return "\n".join(lines)


def _kb_label(identity: dict[str, Any]) -> str:
    return f"{identity.get('id')} {identity.get('version')} ({str(identity.get('fingerprint'))[:12]})"


def _same_outcome_details(group: list[dict[str, Any]]) -> list[str]:
    """What differs in a group of decisions with the same outcomes, counted over the group."""
    rules: dict[str, int] = {}
    fields: dict[str, int] = {}
    for report in group:
        differs = report.get("differs", {})
        for item in differs.get("rules", []):
            change = _rule_change(item)
            rules[change] = rules.get(change, 0) + 1
        for field in differs.get("fields", []):
            fields[field] = fields.get(field, 0) + 1
    if not rules and not fields:
        levels = {report.get("detail", "full") for report in group}
        if levels == {"full"}:
            return ["no rule entry differs: only the knowledge base's version and fingerprint changed"]
        return [
            f"no recorded rule entry differs ({'/'.join(sorted(levels - {'full'}))} results record no rule versions"
            " and not every text: fsgs-kb diff OLD NEW says what else changed between the knowledge bases)"
        ]
    out = [f"rule {what} (not its outcome) in {n:,} of them" for what, n in sorted(rules.items())]
    return out + [f"{field} differs in {n:,} of them" for field, n in fields.items()]


def _rule_change(item: dict[str, Any]) -> str:
    version = item.get("version")
    bump = f" v{version['old']} → v{version['new']}" if version else ""
    return f"{item['rule']}{bump}: its {', '.join(item['fields'])} differ"


def differs_text(differs: dict[str, Any]) -> str:
    """What differs in a `changed` decision whose outcomes are all the same (also the decision log's replay)."""
    parts = [f"rule {_rule_change(item)}" for item in differs.get("rules", [])] + list(differs.get("fields", []))
    return "differs in " + "; ".join(parts) if parts else "differs in no field but the knowledge base's identity"


def impact_text(report: dict[str, Any], limit: int = 20) -> str:
    report = printable(report)
    old, new = report["old"], report["new"]
    invalid = report["invalid"]
    lines = [
        f"impact of {old['kb']} {old['version']} ({old['fingerprint'][:12]}) → {new['kb']} {new['version']} "
        f"({new['fingerprint'][:12]}) on {report['patients']:,} input records"
    ]
    if invalid:
        where = ", ".join(f"line {e['line']}" for e in invalid[:limit]) + (", …" if len(invalid) > limit else "")
        count = f"{len(invalid):,} input records are invalid"
        lines.append(f"{count} (not valid patient records) and were not compared ({where})")
        reasons = list(dict.fromkeys(e["problem"] for e in invalid if e.get("problem")))
        lines += [f"  {escape_control(reason)}" for reason in reasons[:3]]
    if not report["rules"]:
        valid = report["patients"] - len(invalid)
        lines.append(f"no outcome changes for the {valid:,} valid patients" if valid else "no valid patient to compare")
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


def _version_place(side: KBSide, violation: str) -> tuple[str, int | None, int | None]:
    """Where to raise the version a violation is about: the rule's `version:` line, or kb.yaml's."""
    model = side.report.load.model
    fmap = side.fhir_map
    if fmap is not None and violation.startswith(MAP_SUBJECT + " "):
        return (fmap.file, *fmap.positions.get("/map_version", (None, None)))
    subject = violation.split("'", 1)[0].split(" ", 1)[0]
    rule = model.rules.get(subject)
    files = side.report.load.docs
    if rule is not None and rule.file in files:
        return (rule.file, *files[rule.file].where("/version"))
    manifest = next((f for f in files if f.endswith("kb.yaml")), None)
    if manifest is not None and ("kb.yaml" in violation or "knowledge base" in violation):
        return (manifest, *files[manifest].where("/version"))
    return (side.label, None, None)


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
    hint = "bump the version and add a history (rule) or changelog (kb.yaml) entry"
    map_hint = "FHIR results record the map by map_version and sha256; it is versioned on its own, not by kb.yaml"
    lines += [
        format_error(
            KBError(
                "diff.unversioned",
                v,
                *_version_place(new, v),
                hint=map_hint if v.startswith(MAP_SUBJECT + " ") else hint,
            )
        )
        for v in diff.violations
    ]
    return "\n".join(lines)
