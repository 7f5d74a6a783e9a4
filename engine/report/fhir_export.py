"""The knowledge base as FHIR R4 knowledge artifacts, for CQL-based decision-support systems.

One collection Bundle: a PlanDefinition per rule (type eca-rule; url, version and status from the
rule; the advice text; the review's DOI and PMID with the verbatim quote as related artifacts;
triggers patient-view and order-sign; the condition in plain English under the rule's id; the
input data requirements with the codes of the FHIR map) and one Library holding the parameters
(each threshold with its value, unit and provenance) and the data requirements of the whole
knowledge base. The condition is not CQL: the rules are data evaluated by fsgs-kb, so the export
states each condition in words a CQL author can implement, never code that only looks executable.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from fsgs_kb.engine.explain.wording import plain_lines, provenance_label
from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.fhir.requirements import data_requirements, map_fields_for
from fsgs_kb.engine.load.conditions import expression_refs, walk
from fsgs_kb.engine.model import KnowledgeBaseModel, Quote, Rule, rule_order

PLAN_TYPE = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
LIBRARY_TYPE = "http://terminology.hl7.org/CodeSystem/library-type"
TRIGGERS = ("patient-view", "order-sign")
STATUS = {"draft": "draft", "active": "active", "retired": "retired"}


def _name(text: str) -> str:
    """A computable name (FHIR: starts with a capital, letters, digits and _ only)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text).upper()
    return name if name[:1].isalpha() else "X" + name


def _fhir_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9\-.]", "-", text).lower()[:64]


def rule_fields(model: KnowledgeBaseModel, rule: Rule) -> list[str]:
    """Patient fields (dotted) a rule reads, directly or through derived values, in reading order."""
    fields: list[str] = []
    derived: list[str] = []

    def visit(cond: Any) -> None:
        for leaf in walk(cond):
            (fields if leaf.source == "field" else derived).append(leaf.name)

    visit(rule.when)
    seen: set[str] = set()
    while derived:
        name = derived.pop(0)
        if name in seen:
            continue
        seen.add(name)
        spec = model.derived[name]
        for cond in ([spec.condition] if spec.condition else []) + [w for w, _ in spec.cases]:
            visit(cond)
        for ref in (
            r for e in ([spec.value] if spec.value else []) + [e for _, e in spec.cases] for r in expression_refs(e)
        ):
            if ref.source in ("field", "derived"):
                (fields if ref.source == "field" else derived).append(ref.name)
    return list(dict.fromkeys(fields))


def _citation(model: KnowledgeBaseModel, quote: Quote, label: str) -> dict[str, Any]:
    src = model.sources[quote.source].record
    bib = (
        f"{src.get('authors', '')}. {src['title']}. {src.get('journal_abbreviation', src.get('journal', ''))} "
        f"{src['year']};{src['volume']}({src['issue']}):{src['pages']}. doi:{src['doi']}. PMID {src['pmid']}."
    )
    return {
        "type": "citation",
        "label": f"{label} {quote.sentence}".strip(),
        "display": f'"{" ".join(quote.quote.split())}"',
        "citation": f'{bib} {quote.sentence}: "{" ".join(quote.quote.split())}"',
        "url": f"https://doi.org/{src['doi']}",
    }


def _plain(model: KnowledgeBaseModel, rule: Rule) -> str:
    return "\n".join("  " * depth + text for depth, text in plain_lines(model, rule.when))


def plan_definition(model: KnowledgeBaseModel, fmap: FhirMap, rule: Rule, base: str, library: str) -> dict[str, Any]:
    """One rule as an eca-rule PlanDefinition."""
    paths = [p for f in rule_fields(model, rule) for p in map_fields_for(fmap, f)]
    inputs = data_requirements(fmap, list(dict.fromkeys(paths)))
    notes = [" ".join(n.split()) for n in rule.interpretation]
    return {
        "resourceType": "PlanDefinition",
        "id": _fhir_id(rule.id),
        "url": f"{base}/PlanDefinition/{rule.id}",
        "identifier": [{"system": f"{base}/rule-id", "value": rule.id}],
        "version": rule.version,
        "name": _name(rule.id),
        "title": rule.title,
        "type": {"coding": [{"system": PLAN_TYPE, "code": "eca-rule", "display": "ECA Rule"}]},
        "status": STATUS[rule.status],
        "experimental": rule.status != "active",
        "description": " ".join(rule.says.split()),
        **({"usage": " ".join(notes)} if notes else {}),
        **({"approvalDate": rule.approved_on} if rule.approved_on else {}),
        "relatedArtifact": [_citation(model, q, "source") for q in rule.citations]
        + [_citation(model, rule.evidence, "evidence")],
        "library": [library],
        "action": [
            {
                "title": rule.title,
                "description": " ".join(rule.says.split()),
                "textEquivalent": _plain(model, rule),
                "code": [{"coding": [{"system": f"{base}/rule-kind", "code": rule.kind}]}],
                "trigger": [{"type": "named-event", "name": name} for name in TRIGGERS],
                "condition": [
                    {
                        "kind": "applicability",
                        "expression": {
                            "name": rule.id,
                            "language": "text/plain",
                            "description": f"{rule.id}: when the rule fires, in plain English (not executable CQL)",
                            "expression": _plain(model, rule),
                        },
                    }
                ],
                **({"input": inputs} if inputs else {}),
            }
        ],
    }


def _parameter(model: KnowledgeBaseModel, name: str) -> dict[str, Any]:
    param = model.parameters[name]
    many = isinstance(param.value, list)
    kind = (
        "boolean" if isinstance(param.value, bool) else "string" if many or isinstance(param.value, str) else "Quantity"
    )
    value = ", ".join(map(str, param.value)) if many else str(param.value)
    unit = "" if param.unit in ("none", "") else f" {param.unit}"
    return {
        "name": name,
        "use": "in",
        "min": 1,
        "max": "*" if many else "1",
        "type": kind,
        "documentation": f"{' '.join(param.title.split())}: {value}{unit} ({provenance_label(model, name)})",
    }


def library(model: KnowledgeBaseModel, fmap: FhirMap, base: str) -> dict[str, Any]:
    """The knowledge base's parameters and data requirements as a module-definition Library."""
    manifest = model.manifest
    all_active = all(r.status == "active" for r in model.rules.values())
    return {
        "resourceType": "Library",
        "id": _fhir_id(manifest["id"]),
        "url": f"{base}/Library/{manifest['id']}",
        "version": manifest["version"],
        "name": _name(manifest["id"]),
        "title": manifest["title"],
        "status": "active" if all_active else "draft",
        "experimental": not all_active,
        "type": {"coding": [{"system": LIBRARY_TYPE, "code": "module-definition"}]},
        "date": manifest["released"],
        "description": (
            f"Parameters and data requirements of the fsgs-kb knowledge base {manifest['id']} {manifest['version']}; "
            f"data requirements from the FHIR map {fmap.version} (sha256 {fmap.sha256[:12]})."
        ),
        "parameter": [_parameter(model, name) for name in sorted(model.parameters)],
        "dataRequirement": data_requirements(fmap),
    }


def fhir_bundle(model: KnowledgeBaseModel, fmap: FhirMap, base: str | None = None) -> dict[str, Any]:
    """The collection Bundle: the Library, then one PlanDefinition per rule (by kind, then id)."""
    base = base or f"urn:fsgs-kb:{model.manifest['id']}"
    lib = library(model, fmap, base)
    canonical = f"{lib['url']}|{lib['version']}"
    resources = [lib] + [
        plan_definition(model, fmap, r, base, canonical) for r in sorted(model.rules.values(), key=rule_order)
    ]
    return {
        "resourceType": "Bundle",
        "id": _fhir_id(f"{model.manifest['id']}-{model.manifest['version']}"),
        "type": "collection",
        "entry": [
            {"fullUrl": uuid.uuid5(uuid.NAMESPACE_URL, f"{r['url']}|{r['version']}").urn, "resource": r}
            for r in resources
        ],
    }
