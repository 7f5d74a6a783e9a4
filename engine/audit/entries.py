"""A result's rule entries, rebuilt from the values it records, and every difference named.

A result records each input many times over: a field in every condition that reads it (and a
caveat's shown values, and as the unit of a value whose unit the record gives), a derived value
in the derived entries of every rule relying on it (once, in `derived`, at standard detail) and
in every condition on it. An edited result could keep each rule entry consistent with itself — a
condition's actual 4.9 with its truth false and the rule not fired — while the derived values and
another rule's condition recorded 5.1 for the same input; checked entry by entry, it passed.

So the checker takes one value per input: a derived value as its derived entries record it, a
field as its first record in the result. Every rule entry is then rebuilt from those values with
the knowledge base, as the evaluator writes it — each condition (threshold, actual, unit, truth,
text, missing inputs, distance, provenance), the derived entries, a caveat's shown values, the
caveats noted beside advice, the rule's texts — and compared with what the result records; a
second record of an input that differs from the first is named with both. A condition's truth is
also recomputed from its own recorded value, so the arithmetic of each is checked on its own.

What cannot be rebuilt without the input is taken as recorded, and checked only where the
evaluator's rules allow it: an outcome the exact semantics decided where Kleene logic leaves it
unknown (then `decided_without` says what it was decided without, and only then), the missing
inputs of an undetermined rule (a decided rule has none), a caveat's unchecked inputs (only when
its applicability could not be decided).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fsgs_kb.engine.evaluate.evaluation import OUTCOME, Evaluation
from fsgs_kb.engine.evaluate.kleene import DerivedValue, Memo, Truth, compare, kleene_all, kleene_any
from fsgs_kb.engine.load.conditions import walk
from fsgs_kb.engine.model import AllOf, AnyOf, Compare, Condition, Not, Rule

CAVEAT_ONLY = ("qualifies", "provenance", "shown", "unchecked")
STATIC_NAMES = {"says": "advice text (says)", "evidence": "evidence note"}
# a forged value the knowledge base's arithmetic cannot take (a list compared with a number)
_UNCOMPARABLE = (TypeError, ValueError, ArithmeticError)


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values, types included: 1, 1.0 and true are three values, not one (Python's
    == says they are one); a tuple of the knowledge base is the list a result writes."""
    if a is b:
        return True
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(same, a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(value, b[key]) for key, value in a.items())
    return bool(a == b)


def _text(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class RecordedValues:
    """One value per input, each from its first record in the result, and where that was."""

    fields: dict[str, Any] = field(default_factory=dict)
    derived: dict[str, DerivedValue] = field(default_factory=dict)
    where: dict[tuple[str, str], str] = field(default_factory=dict)
    memo: Memo = field(default_factory=dict)  # comparisons made once per result, as the evaluator does

    def note_field(self, name: str, value: Any, where: str) -> None:
        if ("field", name) not in self.where:
            self.fields[name] = value
            self.where["field", name] = where

    def note_derived(self, value: DerivedValue, where: str) -> None:
        if ("derived", value.name) not in self.where:
            self.derived[value.name] = value
            self.where["derived", value.name] = where

    def value(self, source: str, name: str) -> Any:
        if source == "field":
            return self.fields.get(name)
        known = self.derived.get(name)
        return None if known is None else known.value


def recorded_values(evaluation: Evaluation, entries: list[dict[str, Any]], standard: bool) -> RecordedValues:
    """The one value of each input the rule entries record (see the module's docstring): derived
    values from the derived entries first (at standard detail, the result's `derived`), then from
    the conditions on them; fields from the conditions, the units of values whose unit the record
    gives, and the caveats' shown values, in the entries' order."""
    model = evaluation.model
    out = RecordedValues()
    rules = [(model.rules[e["id"]], e) for e in entries if isinstance(e.get("id"), str) and e["id"] in model.rules]
    for rule, entry in rules:
        where = "the result's derived values" if standard else f"rule {rule.id}'s derived values"
        for dv in entry.get("derived", []):
            spec = model.derived.get(dv.get("name"))
            if spec is not None:
                missing = tuple(dv.get("missing", []))
                out.note_derived(DerivedValue(spec.name, dv.get("value"), spec.unit, missing, dv.get("how", "")), where)
    for rule, entry in rules:
        for leaf, cond in zip(walk(rule.when), entry.get("conditions", []), strict=False):
            if cond.get(leaf.source) != leaf.name or cond.get("pointer") != leaf.pointer:
                continue  # not this comparison: reported as such, it records nothing about its input
            where = f"rule {rule.id} condition {leaf.pointer}"
            actual = cond.get("actual")
            if leaf.source == "derived":
                missing = tuple(cond.get("missing", [])) if actual is None else ()
                spec = model.derived[leaf.name]
                out.note_derived(DerivedValue(leaf.name, actual, spec.unit, missing, ""), where)
                continue
            out.note_field(leaf.name, actual, where)
            unit_from = evaluation.evaluator.leaf_plan(leaf).unit_from
            if unit_from is not None:  # the record's unit of this value: the value of its unit field
                out.note_field(unit_from, cond.get("unit"), f"the unit of {where}")
        for (kind, name), shown in zip(rule.shows, entry.get("shown", []), strict=False):
            if kind != "field" or shown.get("field") != name:
                continue
            out.note_field(name, shown.get("value"), f"rule {rule.id}'s shown values")
            info = evaluation.evaluator.fields.get(name)
            if info is not None and info.unit_from:
                unit_field = name.rsplit(".", 1)[0] + "." + info.unit_from
                out.note_field(unit_field, shown.get("unit"), f"rule {rule.id}'s shown values")
    for name, spec in model.derived.items():  # read nowhere in the result: unknown
        out.derived.setdefault(name, DerivedValue(name, None, spec.unit, (), ""))
    return out


def entry_mismatches(evaluation: Evaluation, entries: list[dict[str, Any]], standard: bool = False) -> list[str]:
    """Every difference between the rule entries of a full result (a standard one expanded) and
    the entries the knowledge base writes for the values they record, one line each."""
    values = recorded_values(evaluation, entries, standard)
    outcomes = {e.get("id"): e.get("outcome") for e in entries}
    out: list[str] = []
    for entry in entries:
        rule = evaluation.model.rules.get(entry.get("id", ""))
        if rule is None:
            out.append(f"rule {entry.get('id')}: no such rule in this knowledge base")
        else:
            out += _EntryCheck(evaluation, rule, entry, values, outcomes).mismatches()
    return out


class _EntryCheck:
    """One rule entry against its rebuilt self."""

    def __init__(
        self,
        evaluation: Evaluation,
        rule: Rule,
        entry: dict[str, Any],
        values: RecordedValues,
        outcomes: dict[Any, Any],
    ) -> None:
        self.evaluation = evaluation
        self.rule = rule
        self.entry = entry
        self.values = values
        self.outcomes = outcomes
        self.out: list[str] = []

    def say(self, message: str) -> None:
        self.out.append(f"rule {self.rule.id}: {message}")

    def mismatches(self) -> list[str]:
        self._static()
        decided = self._conditions()
        self._derived()
        self._outcome(decided)
        if self.rule.kind == "caveat":
            self._caveat(decided)
        self._caveat_notes()
        return self.out

    # ---- what the rule says whatever the patient ------------------------------------------------------
    def _static(self) -> None:
        rule, static = self.rule, self.evaluation.static[self.rule.id]
        expected = {
            "version": rule.version,
            "status": rule.status,
            "kind": rule.kind,
            "title": rule.title,
            "says": static["says"],
            "citations": static["citations"],
            "evidence": static["evidence"],
        }
        if rule.kind == "caveat":
            expected["qualifies"] = list(rule.qualifies)
            expected["provenance"] = static["provenance"]
        for key, value in expected.items():
            if not same(self.entry.get(key), value):
                self.say(f"its {STATIC_NAMES.get(key, key)} differs from the knowledge base's")

    # ---- conditions ---------------------------------------------------------------------------------
    def _conditions(self) -> Truth:
        """Check each recorded condition; the rule's truth from the recorded values (Kleene
        logic), or from the recorded truths when the values cannot be compared at all."""
        leaves = walk(self.rule.when)
        recorded = self.entry.get("conditions", [])
        if len(recorded) != len(leaves):
            self.say(f"{len(recorded)} conditions recorded, the rule has {len(leaves)}")
        pointers = {leaf.pointer for leaf in leaves}
        truths: dict[str, Truth] = {}
        for i, cond in enumerate(recorded):
            if i >= len(leaves) or cond.get("pointer") != leaves[i].pointer:
                pointer = cond.get("pointer")
                self.say(
                    f"condition {pointer} is out of its place in the rule"
                    if pointer in pointers
                    else f"condition {pointer} is not in the rule"
                )
                continue
            truths[leaves[i].pointer] = cond.get("result")
            self._condition(leaves[i], cond)
        values, evaluator = self.values, self.evaluation.evaluator
        try:
            return evaluator.condition(self.rule.when, values.fields, values.derived, values.memo).result
        except _UNCOMPARABLE:  # a forged value of the wrong type (named above): the recorded truths decide
            return _kleene(self.rule.when, "/when", truths)

    def _condition(self, leaf: Compare, cond: dict[str, Any]) -> None:
        """One condition: its value is the one the result records for its input, its truth the
        comparison of that value with the knowledge base's threshold, and every other part (text,
        unit, missing inputs, distance, provenance) what the knowledge base writes for them."""
        pointer, name = leaf.pointer, leaf.name
        other = "derived" if leaf.source == "field" else "field"
        if cond.get(leaf.source) != name or other in cond:
            self.say(f"condition {pointer} is on {leaf.source} {name}, the result says otherwise")
            return
        plan = self.evaluation.evaluator.leaf_plan(leaf)
        actual, recorded = cond.get("actual"), cond.get("result")
        first = self.values.value(leaf.source, name)
        if not same(actual, first):
            where = self.values.where.get((leaf.source, name), "elsewhere")
            self.say(f"condition {pointer} records {name} = {_text(actual)}, but {name} = {_text(first)} in {where}")
        truth = _truth(leaf.op, actual, plan.threshold)
        if not same(recorded, truth):
            self.say(f"condition {pointer} is {_text(recorded)} for value {_text(actual)}, which gives {_text(truth)}")
        if not same(cond.get("threshold"), plan.threshold):
            self.say(f"condition {pointer} records threshold {cond.get('threshold')!r}")
            return  # the text of another threshold differs too
        if plan.derived:
            unit, missing = plan.unit, list(self.values.derived[name].missing)
        else:
            unit = str(self.values.fields.get(plan.unit_from) or "") if plan.unit_from else plan.unit
            missing = [plan.missing_pointer]
        try:
            expected = {"pointer": pointer, **plan.explain(actual, unit, recorded, missing)}
        except _UNCOMPARABLE:  # no distance to a value of the wrong type: its truth is named above
            return
        if same(cond, expected):
            return
        keys = [key for key in dict.fromkeys([*expected, *cond]) if not same(cond.get(key), expected.get(key))]
        described = "; ".join(
            f"{key} {_text(expected[key])}, found {_text(cond[key])}"
            if key in expected and key in cond
            else f"{key} {_text(expected[key])}, found none"
            if key in expected
            else f"no {key}, found {_text(cond[key])}"
            for key in keys
        )
        self.say(
            f"condition {pointer} is not what the knowledge base writes for {name} = {_text(actual)} "
            f"({_text(recorded)}): expected {described}"
        )

    # ---- derived entries ----------------------------------------------------------------------------
    def _derived(self) -> None:
        names = self.evaluation.rule_derived[self.rule.id]
        recorded = self.entry.get("derived", [])
        listed = [dv.get("name") for dv in recorded]
        if listed != names:
            self.say(f"its derived values are {_text(listed)}, the rule relies on {_text(names)}")
            return
        for name, dv in zip(names, recorded, strict=True):
            first = self.values.derived.get(name)
            if first is None:
                continue
            expected = self.evaluation.derived_entry(first)
            if same(dv, expected):
                continue
            if not same(dv.get("value"), first.value) or not same(dv.get("missing"), list(first.missing)):
                where = self.values.where.get(("derived", name), "elsewhere")
                self.say(
                    f"its derived value {name} is {_text(dv.get('value'))} (missing {_text(dv.get('missing'))}), "
                    f"but {_text(first.value)} (missing {_text(list(first.missing))}) in {where}"
                )
            else:
                keys = [k for k in dict.fromkeys([*expected, *dv]) if not same(dv.get(k), expected.get(k))]
                self.say(f"its derived value {name} differs in {', '.join(keys)} from what the result records of it")

    # ---- outcome ------------------------------------------------------------------------------------
    def _outcome(self, decided: Truth) -> None:
        """Kleene logic decides it when it can; what the evaluator writes beside a decided one."""
        entry, rule = self.entry, self.rule
        outcome = entry.get("outcome")
        if rule.kind == "caveat":
            if outcome not in ("fired", "not_fired"):
                self.say(f"outcome {outcome}: a caveat fires or does not (beside the advice it qualifies)")
            return
        if decided is not None and outcome != OUTCOME[decided]:
            self.say(f"outcome {outcome} contradicts its conditions ({OUTCOME[decided]})")
        if outcome != "undetermined" and entry.get("missing") != []:
            self.say(f"outcome {outcome} with missing inputs {_text(entry.get('missing'))}: a decided rule lacks none")
        if decided is not None and "decided_without" in entry:
            self.say("decided_without is recorded, but its conditions decide it with the values recorded")
        if outcome == "undetermined" and "decided_without" in entry:
            self.say("decided_without is recorded for an undetermined rule")

    def _caveat(self, decided: Truth) -> None:
        """A caveat fires only beside advice it qualifies that fired (clinical-notes §7), shows
        the values the knowledge base names, and has unchecked inputs only when undecided."""
        entry, rule = self.entry, self.rule
        qualified = [q for q in rule.qualifies if self.outcomes.get(q) == "fired"]
        outcome = entry.get("outcome")
        if decided is True and outcome != ("fired" if qualified else "not_fired"):
            none = "and none of the advice it qualifies fired"
            beside = f"beside {', '.join(qualified)}, which fired" if qualified else none
            self.say(f"outcome {outcome} contradicts its conditions (met) {beside}")
        elif decided is False and outcome != "not_fired":
            self.say(f"outcome {outcome} contradicts its conditions (not_fired)")
        elif outcome == "fired" and not qualified:
            self.say("outcome fired contradicts its conditions: none of the advice it qualifies fired")
        if entry.get("missing") != []:
            self.say(f"missing inputs {_text(entry.get('missing'))}: a caveat records none")
        if "decided_without" in entry:
            self.say("decided_without is recorded: a caveat records none")
        if "unchecked" in entry and (decided is not None or not qualified):
            self.say("unchecked inputs are recorded, but its applicability was decided or not needed")
        shown = self.evaluation.shown(rule, self.values.fields, self.values.derived)
        if not same(entry.get("shown"), shown):
            for i, (expected, found) in enumerate(zip(shown, entry.get("shown", []), strict=False)):
                if not same(expected, found):
                    name = expected.get("field") or expected.get("derived")
                    self.say(
                        f"its shown value {i} is {_text(found)}, where the result records {name} as "
                        f"{_text(expected.get('value'))} ({_text(expected.get('unit'))})"
                    )
                    break
            else:
                self.say(f"it shows {len(entry.get('shown', []))} values, the knowledge base names {len(shown)}")

    def _caveat_notes(self) -> None:
        """The caveats noted beside fired advice: each fired caveat that qualifies it. What only a
        caveat records (what it qualifies, its provenance, shown values, unchecked inputs) is on no
        other rule's entry, and no caveat is noted beside a caveat."""
        if self.rule.kind == "caveat":
            if "caveats" in self.entry:
                self.say("caveats are noted beside a caveat")
            return
        for key in CAVEAT_ONLY:
            if key in self.entry:
                self.say(f"it records {key}, which only a caveat's entry has")
        fired = self.entry.get("outcome") == "fired"
        expected = [
            caveat.id
            for caveat in self.evaluation.caveats
            if fired and self.outcomes.get(caveat.id) == "fired" and self.rule.id in caveat.qualifies
        ]
        notes = self.entry.get("caveats")
        if notes is None:
            if expected:
                self.say(f"no caveats noted beside it, where {', '.join(expected)} fired and qualify it")
            return
        ids = [note.get("id") if isinstance(note, dict) else note for note in notes]
        if ids != expected or not expected:
            self.say(f"the caveats noted beside it are {_text(ids)}, the fired caveats qualifying it {_text(expected)}")
            return
        for note in notes:
            if not isinstance(note, dict):
                self.say(f"the note of caveat {note} beside it differs from the knowledge base's")
                continue
            caveat = self.evaluation.model.rules[note["id"]]
            static = self.evaluation.static[caveat.id]
            wanted = {"id": caveat.id, "title": caveat.title, "says": static["says"]}
            wanted["provenance"] = static["provenance"]
            if not same(note, wanted):
                self.say(f"the note of caveat {caveat.id} beside it differs from the knowledge base's")


def _truth(op: str, actual: Any, threshold: Any) -> Truth:
    """A comparison's truth for a recorded value, as the evaluator decides it (None if unknown)."""
    if op in ("present", "absent"):
        return (actual is not None) == (op == "present")
    if actual is None:
        return None
    try:
        return compare(op, actual, threshold)
    except _UNCOMPARABLE:
        return None


def _kleene(cond: Condition, pointer: str, truths: dict[str, Truth]) -> Truth:
    """The rule's truth from the recorded leaf truths (None where Kleene logic cannot tell)."""
    if isinstance(cond, Compare):
        return truths.get(pointer)
    if isinstance(cond, Not):
        inner = _kleene(cond.item, pointer + "/not", truths)
        return None if inner is None else not inner
    assert isinstance(cond, AllOf | AnyOf)
    key = "all" if isinstance(cond, AllOf) else "any"
    parts = [_kleene(item, f"{pointer}/{key}/{i}", truths) for i, item in enumerate(cond.items)]
    return kleene_all(parts) if isinstance(cond, AllOf) else kleene_any(parts)
