"""The knowledge base in a clinician's words: a condition as sentences, a threshold with its
provenance. Shared by the handbook, the audit report and the explanation, so that each says a
rule the same way."""

from __future__ import annotations

from fsgs_kb.engine.evaluate.kleene import fmt
from fsgs_kb.engine.load.conditions import walk
from fsgs_kb.engine.model import AllOf, AnyOf, Compare, Condition, KnowledgeBaseModel, Not, ParamRef, Rule

OP_WORDS = {
    "eq": "is",
    "ne": "is not",
    "lt": "is below",
    "le": "is at most",
    "gt": "is above",
    "ge": "is at least",
    "in": "is one of",
    "includes_any": "includes any of",
    "present": "is recorded",
    "absent": "is not recorded",
}


def provenance_label(model: KnowledgeBaseModel, name: str) -> str:
    param = model.parameters[name]
    data = param.provenance
    if param.provenance_kind == "source":
        return f"from the review, {data['sentence']}"
    if param.provenance_kind == "cited":
        reference = " ".join(data["reference"].split())
        short = reference if len(reference) < 60 else reference[:57] + "…"
        return f"cited: {short}{'' if data['verified'] else ', not verified against the primary document'}"
    return f"local policy, decided {data['decided_on']}"


def _subject(model: KnowledgeBaseModel, leaf: Compare) -> str:
    if leaf.source == "derived":
        title = model.derived[leaf.name].title
        return "the " + title[0].lower() + title[1:]
    return "the record's " + leaf.name.replace(".", " ").replace("_", " ")


def _threshold(model: KnowledgeBaseModel, leaf: Compare) -> str:
    if isinstance(leaf.operand, ParamRef):
        param = model.parameters[leaf.operand.name]
        unit = "" if param.unit == "none" else f" {param.unit}"
        value = ", ".join(map(str, param.value)) if isinstance(param.value, list) else fmt(param.value)
        return f"{value or '(none)'}{unit} ({provenance_label(model, leaf.operand.name)}; parameter {param.name})"
    return fmt(leaf.operand)


def sentence_for(model: KnowledgeBaseModel, leaf: Compare) -> str:
    """One comparison in plain English."""
    derived = model.derived.get(leaf.name) if leaf.source == "derived" else None
    if derived is not None and derived.condition is not None:
        claim = derived.title[0].lower() + derived.title[1:]
        return claim if (leaf.operand is True) == (leaf.op == "eq") else f"it is not the case that {claim}"
    if leaf.op in ("present", "absent"):
        return f"{_subject(model, leaf)} {OP_WORDS[leaf.op]}"
    return f"{_subject(model, leaf)} {OP_WORDS[leaf.op]} {_threshold(model, leaf)}"


def plain_lines(model: KnowledgeBaseModel, cond: Condition, depth: int = 0) -> list[tuple[int, str]]:
    """(indent, text) lines of a condition in plain English."""
    if isinstance(cond, Compare):
        return [(depth, sentence_for(model, cond))]
    if isinstance(cond, Not):
        return [(depth, "not:")] + plain_lines(model, cond.item, depth + 1)
    head = "all of:" if isinstance(cond, AllOf) else "any of:"
    assert isinstance(cond, (AllOf, AnyOf))
    return [(depth, head)] + [line for item in cond.items for line in plain_lines(model, item, depth + 1)]


def derived_closure(model: KnowledgeBaseModel, rule: Rule) -> list[str]:
    """The derived values a rule reads, directly or through other derived values."""
    todo = [leaf.name for leaf in walk(rule.when) if leaf.source == "derived"]
    seen: list[str] = []
    while todo:
        name = todo.pop(0)
        if name in seen or name not in model.derived:
            continue
        seen.append(name)
        spec = model.derived[name]
        conds = ([spec.condition] if spec.condition else []) + [w for w, _ in spec.cases]
        todo += [leaf.name for c in conds for leaf in walk(c) if leaf.source == "derived"]
    return seen


def shaping_parameters(model: KnowledgeBaseModel, rule: Rule) -> list[str]:
    """Local choices declared with `shapes` on a field or derived value the rule reads (the
    weight a dose per kg uses, what counts as the course's duration, ...)."""
    fields = {leaf.name for leaf in walk(rule.when) if leaf.source == "field"}
    derived = set(derived_closure(model, rule))
    return [
        p.name
        for p in model.parameters.values()
        if any(
            (kind == "field" and name in fields) or (kind == "derived" and name in derived) for kind, name in p.shapes
        )
    ]
