"""Audit: where every piece of advice comes from, and the trace of one past decision.

Reads only the knowledge base and (for trace) a result; flags everything that was not checked
against a primary document, so an auditor sees at once what rests on memory or summaries.
"""

from __future__ import annotations

from typing import Any

from engine.conditions import expression_refs, walk
from engine.handbook import plain_lines, provenance_label
from engine.model import ParamRef, Rule, rule_order


def _parameter_entry(kb: Any, name: str) -> dict[str, Any]:
    param = kb.model.parameters[name]
    data = param.provenance
    verified = {"source": True, "cited": bool(data.get("verified")), "local": None}[param.provenance_kind]
    return {
        "name": name,
        "value": param.value,
        "unit": param.unit,
        "boundary": param.boundary,
        "provenance": param.provenance_kind,
        "verified": verified,
        "details": data,
        "summary": provenance_label(kb.model, name),
    }


def _rule_parameters(kb: Any, rule: Rule) -> list[str]:
    names = [leaf.operand.name for leaf in walk(rule.when) if isinstance(leaf.operand, ParamRef)]
    for dname in kb._evaluation.rule_derived[rule.id]:
        spec = kb.model.derived[dname]
        conds = ([spec.condition] if spec.condition else []) + [w for w, _ in spec.cases]
        names += [leaf.operand.name for c in conds for leaf in walk(c) if isinstance(leaf.operand, ParamRef)]
        exprs = ([spec.value] if spec.value else []) + [e for _, e in spec.cases]
        names += [r.name for e in exprs for r in expression_refs(e) if r.source == "param"]
    return list(dict.fromkeys(names))


def rule_audit(kb: Any, rule: Rule) -> dict[str, Any]:
    source = kb.model.sources
    return {
        "id": rule.id,
        "version": rule.version,
        "status": rule.status,
        "kind": rule.kind,
        "title": rule.title,
        "approved_by": rule.approved_by,
        "approved_on": rule.approved_on,
        "fires_when": [f"{'  ' * i}{text}" for i, text in plain_lines(kb.model, rule.when)],
        "citations": [
            {
                "source": q.source,
                "sentence": q.sentence,
                "quote": " ".join(q.quote.split()),
                "sentence_text": " ".join(source[q.source].sentences[q.sentence].split()),
                "verified_verbatim": True,
            }
            for q in rule.citations
        ],
        "parameters": [_parameter_entry(kb, n) for n in _rule_parameters(kb, rule)],
        "derived": [{"name": n, "title": kb.model.derived[n].title} for n in kb._evaluation.rule_derived[rule.id]],
        "interpretation": [" ".join(n.split()) for n in rule.interpretation],
        "history": list(rule.history),
    }


def audit_report(kb: Any, rule_id: str | None = None) -> dict[str, Any]:
    rules = sorted(kb.model.rules.values(), key=rule_order)
    if rule_id is not None:
        rules = [r for r in rules if r.id == rule_id]
    counts: dict[str, int] = {}
    unverified = []
    for param in kb.model.parameters.values():
        counts[param.provenance_kind] = counts.get(param.provenance_kind, 0) + 1
        if param.provenance_kind == "cited" and not param.provenance.get("verified"):
            unverified.append(param.name)
    src = kb.model.source
    encoders: dict[str, list[str]] = {}
    for rule in kb.model.rules.values():
        for q in rule.citations:
            encoders.setdefault(q.sentence, []).append(rule.id)
    coverage = {
        sid: (
            {"encoded_by": sorted(encoders[sid])}
            if sid in encoders
            else {"not_encoded": " ".join(src.not_encoded.get(sid, "no reason given").split())}
        )
        for sid in src.sentences
    }
    return {
        "kb": {"id": kb.id, "version": kb.version, "fingerprint": kb.fingerprint},
        "source": {
            "id": src.id,
            "doi": src.record.get("doi"),
            "pmid": src.record.get("pmid"),
            "full_text_read": src.record.get("full_text_read", False),
        },
        "rules": [rule_audit(kb, r) for r in rules],
        "coverage": coverage,
        "parameters_by_provenance": dict(sorted(counts.items())),
        "not_verified": {
            "parameters": unverified,
            "rules_not_signed_off": sorted(r.id for r in kb.model.rules.values() if r.status != "active"),
            "source_full_text": not src.record.get("full_text_read", False),
        },
    }


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
    out.append(f"rules not signed off: {', '.join(nv['rules_not_signed_off']) or 'none'}")
    if nv["source_full_text"]:
        out.append("the source's full text was not read: every rule rests on the abstract alone")
    return "\n".join(out)


def trace_text(kb: Any, result: dict[str, Any]) -> tuple[str, bool]:
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
