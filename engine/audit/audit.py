"""Audit: where every piece of advice comes from, and the trace of one past decision.

Reads only the knowledge base and (for trace) a result; flags everything that was not checked
against a primary document, so an auditor sees at once what rests on memory or summaries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fsgs_kb.engine.explain.wording import plain_lines, provenance_label, shaping_parameters
from fsgs_kb.engine.fhir.checkmap import load_checked_map, map_path
from fsgs_kb.engine.fhir.requirements import code_audit
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.load.conditions import expression_refs, walk
from fsgs_kb.engine.model import ParamRef, Rule, rule_order


def _parameter_entry(kb: KnowledgeBase, name: str) -> dict[str, Any]:
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


def _rule_parameters(kb: KnowledgeBase, rule: Rule) -> list[str]:
    names = [leaf.operand.name for leaf in walk(rule.when) if isinstance(leaf.operand, ParamRef)]
    for dname in kb.evaluation.rule_derived[rule.id]:
        spec = kb.model.derived[dname]
        conds = ([spec.condition] if spec.condition else []) + [w for w, _ in spec.cases]
        names += [leaf.operand.name for c in conds for leaf in walk(c) if isinstance(leaf.operand, ParamRef)]
        exprs = ([spec.value] if spec.value else []) + [e for _, e in spec.cases]
        names += [r.name for e in exprs for r in expression_refs(e) if r.source == "param"]
    names += shaping_parameters(kb.model, rule)
    return list(dict.fromkeys(names))


def rule_audit(kb: KnowledgeBase, rule: Rule) -> dict[str, Any]:
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
        "derived": [{"name": n, "title": kb.model.derived[n].title} for n in kb.evaluation.rule_derived[rule.id]],
        "interpretation": [" ".join(n.split()) for n in rule.interpretation],
        "history": list(rule.history),
        "qualifies": list(rule.qualifies),
        "provenance": caveat_provenance_entry(kb, rule) if rule.provenance_kind else None,
        "qualified_by": sorted(c.id for c in kb.model.rules.values() if rule.id in c.qualifies),
    }


def caveat_provenance_entry(kb: KnowledgeBase, rule: Rule) -> dict[str, Any]:
    """Where a caveat comes from, with whether it was verified (a source quote is checked verbatim)."""
    data = rule.provenance
    kind = rule.provenance_kind
    if kind == "source":
        text = " ".join(kb.model.sources[data["source"]].sentences[data["sentence"]].split())
        summary = f'from the review, {data["sentence"]} (quote verified verbatim): "{" ".join(data["quote"].split())}"'
        return {"kind": kind, "verified": True, "details": data, "summary": summary, "sentence_text": text}
    if kind == "cited":
        reference = " ".join(data["reference"].split())
        flag = " (verified against the primary document)" if data["verified"] else ""
        summary = f"cited: {reference}: {' '.join(data['says'].split())}{flag}"
        return {"kind": kind, "verified": bool(data["verified"]), "details": data, "summary": summary}
    return {"kind": kind, "verified": None, "details": data, "summary": f"local policy, decided {data['decided_on']}"}


def audit_report(kb: KnowledgeBase, rule_id: str | None = None) -> dict[str, Any]:
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
    report: dict[str, Any] = {
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
            "caveats": sorted(
                r.id
                for r in kb.model.rules.values()
                if r.provenance_kind == "cited" and not r.provenance.get("verified")
            ),
            "rules_not_signed_off": sorted(r.id for r in kb.model.rules.values() if r.status != "active"),
            "source_full_text": not src.record.get("full_text_read", False),
        },
    }
    if rule_id is None:  # the FHIR map's codes, each with where it was verified (or why not)
        fhir_map = code_audit(load_checked_map(map_path(Path(kb.model.root))))
        report["fhir_map"] = fhir_map
        report["not_verified"]["fhir_codes"] = [
            f"{c['system']}|{c['code']}" for c in fhir_map["codes"] if not c["verified"]
        ]
    return report
