"""A rule's condition for one patient as a clinician reads it: nested groups, each with its own
truth, and each comparison as a sentence of fact with units and where its threshold comes from.

`daily cyclosporine dose per kg of body weight 5.1 mg/kg/day is above 5 mg/kg/day (the review,
S5)`; a derived value such as "blood pressure above target" is opened up into its own
definition, so an `any` of two `all`s reads as one, not as a flat list. Values come from the
evaluator (the same Kleene evaluation that explains every result), names from the patient
schema's titles and the knowledge base's own titles.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fsgs_kb.engine.evaluate.kleene import DerivedValue, Evaluator, Memo, kleene_all, kleene_any
from fsgs_kb.engine.explain.wording import provenance_label
from fsgs_kb.engine.load.fields import FieldInfo
from fsgs_kb.engine.load.templating import quantity, words
from fsgs_kb.engine.model import (
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Const,
    Derived,
    KnowledgeBaseModel,
    Not,
    ParamRef,
    Ref,
)

SCOPE = "in_scope"


def lower_first(text: str) -> str:
    """ "Total daily dose" → "total daily dose", but "FSGS that…" stays as it is."""
    text = " ".join(text.split())
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


def short_reference(reference: str, year: Any = None) -> str:
    """A cited reference by its first sentence, shortened at a word: `Cattran DC et al. 1999`,
    `KDIGO 2021 Clinical Practice Guideline for the…`."""
    head = " ".join(reference.split()).split(". ", 1)[0]
    if head.endswith("et al"):
        head += "."
    if len(head) > 48:
        head = head[:48].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return f"{head} {year}" if year and str(year) not in head else head


def provenance_short(model: KnowledgeBaseModel, name: str) -> str:
    """`the review, S5` · `cited: KDIGO 2021…, not verified` · `local policy, decided 2026-11-25`."""
    param = model.parameters[name]
    data = param.provenance
    if param.provenance_kind == "source":
        return f"the review, {data['sentence']}"
    if param.provenance_kind == "cited":
        checked = "" if data.get("verified") else ", not verified"
        return f"cited: {short_reference(data['reference'], data.get('year'))}{checked}"
    return f"local policy, decided {data['decided_on']}"


def parameter_text(model: KnowledgeBaseModel, name: str) -> str:
    """A parameter's value as a clinician writes it: 5 mg/kg/day; lists as words."""
    param = model.parameters[name]
    return quantity(param.value, param.unit)


class ConditionWords:
    """Sentences and trees of conditions for one knowledge base."""

    def __init__(
        self,
        model: KnowledgeBaseModel,
        evaluator: Evaluator,
        settled: dict[str, list[str]] | None = None,
        unknown: frozenset[str] = frozenset(),
    ) -> None:
        self.model = model
        self.evaluator = evaluator
        self.fields: dict[str, FieldInfo] = evaluator.fields
        # boolean derived values Kleene's tables leave unknown that the exact semantics decided,
        # with the inputs they were decided without (Evaluation.exact_derived)
        self.settled = settled or {}
        # fields the record holds as 'unknown' (read as absent, but written by someone)
        self.unknown = unknown

    # ---- names --------------------------------------------------------------------------------
    def subject(self, leaf: Compare) -> str:
        if leaf.source == "derived":
            return lower_first(self.model.derived[leaf.name].title)
        info = self.fields.get(leaf.name)
        return info.title if info is not None and info.title else leaf.name.replace(".", " ").replace("_", " ")

    def threshold(self, leaf: Compare, unit: str | None) -> str:
        if isinstance(leaf.operand, ParamRef):
            param = self.model.parameters[leaf.operand.name]
            return quantity(param.value, param.unit if param.unit != "none" else unit)
        return quantity(leaf.operand, unit)

    def absent(self, leaf: Compare) -> str:
        """A value the condition has none of: a derived value is unknown; a field is not recorded,
        or recorded as unknown (the record says so; both are read as unknown)."""
        if leaf.source == "derived":
            return "unknown"
        return "recorded as unknown" if leaf.name in self.unknown else "not recorded"

    def source_note(self, leaf: Compare) -> str:
        if isinstance(leaf.operand, ParamRef):
            return f" ({provenance_short(self.model, leaf.operand.name)})"
        return ""

    # ---- one comparison -----------------------------------------------------------------------
    def sentence(self, leaf: Compare, entry: dict[str, Any]) -> str:
        """What is the case for this patient, stated as a fact (the mark beside it says whether
        that is what the rule needs)."""
        derived = self.model.derived.get(leaf.name) if leaf.source == "derived" else None
        actual, met = entry.get("actual"), entry.get("result")
        unit = entry.get("unit")
        subject = self.subject(leaf)
        if derived is not None and derived.is_boolean:
            claim = lower_first(derived.title)
            if actual is None:
                return f"unknown whether {claim}"
            return claim if actual is True else f"it is not the case that {claim}"
        if leaf.op in ("present", "absent"):
            if actual is None:
                return f"{subject}: {self.absent(leaf)}"
            return f"{subject}: recorded, {quantity(actual, unit)}"
        note = self.source_note(leaf)
        source = note[2:-1]
        threshold = self.threshold(leaf, unit)
        wanted = leaf_list(self, leaf)
        need = {
            "eq": threshold,
            "ne": f"anything but {threshold}",
            "in": words(wanted) if wanted else "one of an empty list",
            "includes_any": f"any of {words(wanted)}" if wanted else "any of an empty list (none can match)",
        }.get(leaf.op) or f"{_NUMERIC[leaf.op][0]} {threshold}"
        needs = f" (the rule needs {need}{'; ' + source if source else ''})"
        if actual is None:
            return f"{subject}: {self.absent(leaf)}{needs}"
        value = quantity(actual, unit)
        if leaf.op in _NUMERIC:
            yes, no = _NUMERIC[leaf.op]
            return f"{subject} is {value}, {yes if met else no} {threshold}{note}"
        if leaf.op == "eq" and met:
            return f"{subject} is {value}{note}"
        if leaf.op == "includes_any":
            have = [v for v in (actual or []) if v in wanted]
            if met:
                return f"{subject} include {words(have, 'and')}{needs}"
            return f"{subject}: {words(actual, 'and') if actual else 'none recorded'}{needs}"
        return f"{subject} is {value}{needs}"

    # ---- trees --------------------------------------------------------------------------------
    def tree(
        self,
        cond: Condition,
        values: dict[str, Any],
        known: dict[str, DerivedValue],
        memo: Memo,
        open_derived: bool = True,
    ) -> dict[str, Any]:
        """A condition for this patient: {kind, met, text | items, …}, derived values opened up
        into their definitions (the scope only when it is not met: it is said once elsewhere)."""
        outcome = self.evaluator.condition(cond, values, known, memo)
        if isinstance(cond, Compare):
            node = self._leaf_node(cond, outcome.leaves[0], outcome.result)
            if cond.source == "derived" and open_derived:
                self._open(node, self.model.derived[cond.name], values, known, memo)
            return node
        if isinstance(cond, Not):
            return {"kind": "not", "met": outcome.result, "items": [self.tree(cond.item, values, known, memo)]}
        kind = "all" if isinstance(cond, AllOf) else "any"
        assert isinstance(cond, (AllOf, AnyOf))
        items = [self.tree(item, values, known, memo, open_derived) for item in cond.items]
        return {"kind": kind, "met": outcome.result, "items": items}

    def _leaf_node(self, cond: Compare, entry: dict[str, Any], met: bool | None) -> dict[str, Any]:
        """One comparison of a tree: its sentence, its value and threshold, where it is recorded,
        the local choices it rests on (the scope's only when it is not met: said once, in the header)."""
        node: dict[str, Any] = {
            "kind": "condition",
            "met": met,
            "text": self.sentence(cond, entry),
            cond.source: cond.name,
            "pointer": entry.get("pointer"),
        }
        for key in ("actual", "unit", "threshold", "parameter", "provenance", "missing"):
            if entry.get(key) is not None:
                node["value" if key == "actual" else key] = entry[key]
        if cond.source == "field":
            info = self.fields.get(cond.name)
            if info is not None:
                node["record_pointer"] = info.pointer
        choices = self.local_choices(cond.source, cond.name)
        if choices and not (cond.name == SCOPE and met is True):
            node["choices"] = choices
        return node

    def stored_tree(
        self, cond: Condition, entries: Iterator[dict[str, Any]], derived: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        """A condition as `tree` gives it, from what a stored result recorded rather than from
        the record: each comparison's entry (its actual value and truth, in `walk` order) and each
        derived value's recorded `how` (its inputs are not in the result, so it is not opened
        up). For a result kept without its input (`explain RESULT.json`)."""
        if isinstance(cond, Compare):
            entry = next(entries)
            node = self._leaf_node(cond, entry, entry.get("result"))
            recorded = derived.get(cond.name) if cond.source == "derived" else None
            if recorded is not None and recorded.get("how") and not (cond.name == SCOPE and node["met"] is True):
                node["how"] = f"as the result records it: {recorded['how']}"
            return node
        if isinstance(cond, Not):
            inner = self.stored_tree(cond.item, entries, derived)
            met = None if inner["met"] is None else not inner["met"]
            return {"kind": "not", "met": met, "items": [inner]}
        items = [self.stored_tree(item, entries, derived) for item in cond.items]
        truths = [item["met"] for item in items]
        if isinstance(cond, AllOf):
            return {"kind": "all", "met": kleene_all(truths), "items": items}
        return {"kind": "any", "met": kleene_any(truths), "items": items}

    def local_choices(self, source: str, name: str) -> list[str]:
        """The choices a value rests on that the review does not make (clinical-notes §7: shown next
        to that value): `the body weight the dose per kilogram is computed with: actual body weight
        (local policy, decided 2026-11-26)`."""
        out = []
        for note in self.evaluator.policy.get((source, name), []):
            value, unit = note["value"], note.get("unit")
            if isinstance(value, (list, tuple)):
                shown = ", ".join("true" if v is True else "false" if v is False else str(v) for v in value) or "none"
            elif isinstance(value, bool):
                shown = "true" if value else "false"
            else:
                shown = quantity(value, unit) if unit and unit != "none" else str(value)
            label = (
                provenance_label(self.model, note["parameter"]) if note["parameter"] in self.model.parameters else ""
            )
            title = lower_first(" ".join(str(note["title"]).split()))
            out.append(f"{title}: {shown.replace('_', ' ')}" + (f" ({label})" if label else ""))
        return out

    def _open(
        self, node: dict[str, Any], spec: Derived, values: dict[str, Any], known: dict[str, DerivedValue], memo: Memo
    ) -> None:
        """Attach how a derived value came about: its definition, or its arithmetic."""
        if spec.condition is not None:
            if spec.name != SCOPE or node["met"] is not True:
                node["definition"] = self.tree(spec.condition, values, known, memo)
                decided = known[spec.name].value if spec.name in known else None
                if spec.name in self.settled and node["definition"]["met"] is None and decided is not None:
                    # every value of the missing inputs gives the same answer: said, as a rule's is
                    node["definition"] = {**node["definition"], "met": decided, "exact": True}
                    node["decided_without"] = list(self.settled[spec.name])
            return
        how = self.how(spec, values, known, memo)
        if how:
            node["how"] = how

    def how(self, spec: Derived, values: dict[str, Any], known: dict[str, DerivedValue], memo: Memo) -> str:
        """`= 357 mg/day ÷ 70 kg`, or the case that chose a category (`because age is 45 years, at
        least 18 years`)."""
        dv = known.get(spec.name)
        if dv is None or dv.value is None:
            return ""
        expr, reason = spec.value, ""
        for when, chosen in spec.cases:
            outcome = self.evaluator.condition(when, values, known, memo)
            if outcome.result is True:
                expr = chosen
                leaves = [
                    self.sentence(leaf, entry)
                    for leaf, entry in zip(_leaves(when), outcome.leaves, strict=False)
                    if not (leaf.source == "field" and self.fields[leaf.name].path.endswith(".unit"))
                ]
                reason = "; ".join(leaves)  # the case that chose the value (a unit test is left out)
                break
        because = f"because {reason}" if reason else ""
        if expr is None or isinstance(expr, Const):
            return because
        value, text, _ = self.evaluator.expression(expr, values, known)
        if isinstance(expr, Ref) or value is None:
            return because
        return f"= {text}"


_NUMERIC = {
    "gt": ("above", "not above"),
    "ge": ("at least", "below"),
    "lt": ("below", "not below"),
    "le": ("at most", "above"),
}


def leaf_list(words_: ConditionWords, leaf: Compare) -> list[Any]:
    if isinstance(leaf.operand, ParamRef):
        value = words_.model.parameters[leaf.operand.name].value
        return list(value) if isinstance(value, (list, tuple)) else [value]
    return list(leaf.operand) if isinstance(leaf.operand, (list, tuple)) else [leaf.operand]


def _leaves(cond: Condition) -> list[Compare]:
    if isinstance(cond, Compare):
        return [cond]
    if isinstance(cond, Not):
        return _leaves(cond.item)
    return [leaf for item in cond.items for leaf in _leaves(item)]


def requirement(model: KnowledgeBaseModel, fields: dict[str, FieldInfo], leaf: Compare) -> str:
    """What a comparison asks of any patient, in clinical words (no patient values): `daily
    cyclosporine dose per kg … is above 5 mg/kg/day (the review, S5)`."""
    unit: str | None
    if leaf.source == "derived":
        derived = model.derived[leaf.name]
        if derived.is_boolean:
            claim = lower_first(derived.title)
            return claim if (leaf.operand is True) == (leaf.op == "eq") else f"it is not the case that {claim}"
        subject, unit = lower_first(derived.title), derived.unit
    else:
        info = fields.get(leaf.name)
        subject = info.title if info is not None and info.title else leaf.name.replace("_", " ")
        unit = info.unit if info is not None else None
    if leaf.op == "present":
        return f"{subject} is recorded"
    if leaf.op == "absent":
        return f"{subject} is not recorded"
    if isinstance(leaf.operand, ParamRef):
        param = model.parameters[leaf.operand.name]
        value = param.value
        threshold = quantity(value, param.unit if param.unit != "none" else unit)
        note = f" ({provenance_short(model, leaf.operand.name)})"
    else:
        value, threshold, note = leaf.operand, quantity(leaf.operand, unit), ""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    phrase = {
        "eq": f"is {threshold}",
        "ne": f"is anything but {threshold}",
        "in": f"is {words(values)}" if values else "is one of an empty list (never)",
        "includes_any": f"include any of {words(values)}" if values else "include any of an empty list (never)",
    }.get(leaf.op) or f"is {_NUMERIC[leaf.op][0]} {threshold}"
    return f"{subject} {phrase}{note}"


def requirement_lines(
    model: KnowledgeBaseModel, fields: dict[str, FieldInfo], cond: Condition, depth: int = 0
) -> list[tuple[int, str]]:
    """(depth, text) lines of a condition for a reader: `all of:` / `any of:` / `not:` groups,
    each comparison in clinical words."""
    if isinstance(cond, Compare):
        return [(depth, requirement(model, fields, cond))]
    if isinstance(cond, Not):
        return [(depth, "not:")] + requirement_lines(model, fields, cond.item, depth + 1)
    head = "all of:" if isinstance(cond, AllOf) else "any of:"
    assert isinstance(cond, (AllOf, AnyOf))
    return [(depth, head)] + [line for item in cond.items for line in requirement_lines(model, fields, item, depth + 1)]
