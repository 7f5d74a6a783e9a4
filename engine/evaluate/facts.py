"""The facts durable-rules is given for one record, built straight from the compiled evaluator's
values and possible cells: per level, one dict per ruleset, holding only the keys that ruleset's
patterns test, under the short names its renamed patterns use (engine/compile/durable.py).

`Evaluation.flat_fact` is the definition: every field, list item, numeric derived value and
possible cell under its engine name (~90 keys); the wrapper then projects it onto each ruleset's
tested keys and renames them (`DurableRulesets.fact_texts`). Building that whole fact to keep
two thirds of it cost ~20 µs a record. Here the projection is decided at load: for each tested
key, which part of the record gives it and when it is present, as straight-line code. The texts
asserted are byte for byte those of `fact_texts(level, flat_fact(...))` (tests/test_compiled.py).
"""

from __future__ import annotations

from typing import Any

from fsgs_kb.engine.compile.durable import DurableRulesets
from fsgs_kb.engine.compile.rulesets import derived_key, number
from fsgs_kb.engine.evaluate.codegen import compiled_code
from fsgs_kb.engine.evaluate.evaluation import Evaluation

# How a fact key gets its value, by engine name: ("field", path) the recorded value, ("count",
# path) a list's length, ("has", path, item) a list item, ("derived", name) a numeric derived
# value, ("low" | "high", var index) a number's lowest or highest possible value, ("cell", var
# index, cell) an enum/boolean/list variable's possible cell, ("outcome", key) a rule's outcome
# ("T" | "F" | "U") decided at an earlier level.
Source = tuple[Any, ...]
SCALAR = "(int(v) if type(v) is bool else v)"  # rulesets.scalar(v) written out: no call per key


def fact_sources(evaluation: Evaluation, tested: set[str]) -> dict[str, Source]:
    """Where each key `Evaluation.flat_fact` (and `_decide`, for outcomes) can write comes from."""
    sources: dict[str, Source] = {}
    for path, key, is_list in evaluation.fact_fields:
        if is_list:
            sources[key + "__n"] = ("count", path)
            prefix = key + "__has__"
            for name in tested:
                if name.startswith(prefix):
                    sources[name] = ("has", path, name[len(prefix) :])
        else:
            sources[key] = ("field", path)
    for name in evaluation.compiled.fact_derived:
        sources[derived_key(name)] = ("derived", name)
    for index, var in enumerate(evaluation.exact.vars):
        if var.kind == "number":
            sources[var.low_key] = ("low", index)
            sources[var.high_key] = ("high", index)
        else:
            for cell in range(len(var.cells)):
                sources[var.possible_key(cell)] = ("cell", index, cell)
    for _, rules in evaluation.verdict_names:
        for _, _, _, key in rules:
            sources[key] = ("outcome", key)
    return sources


def fact_function(evaluation: Evaluation, durable: DurableRulesets, level: int) -> tuple[Any, str] | None:
    """(function, its source) giving a level's facts, one dict per ruleset, from (values, derived,
    state, outcomes); None when a ruleset is given whole facts (no projection to build)."""
    pairs_of = [pairs for pairs in durable.keys[level] if pairs is not None]
    if len(pairs_of) != len(durable.keys[level]):
        return None
    tested = {key for pairs in pairs_of for key, _ in pairs}
    sources = fact_sources(evaluation, tested)
    constants: dict[str, Any] = {}
    lines = ["def facts(values, derived, state, outcomes):"]

    def const(value: Any) -> str:
        name = f"K{len(constants)}"
        constants[name] = value
        return name

    names = []
    for chunk, pairs in enumerate(pairs_of):
        d = f"d{chunk}"
        names.append(d)
        lines.append(f"    {d} = {{'sid': '0', 'id': 0, 'k': 1}}")
        written = [(key, short, sources[key]) for key, short in pairs if key in sources]  # else never in the fact
        at = 0
        while at < len(written):
            source = written[at][2]
            if source[0] == "cell":  # a run of one variable's possible cells: one update, remembered
                end = at
                while end < len(written) and written[end][2][0] == "cell" and written[end][2][1] == source[1]:
                    end += 1
                if end - at > 1:
                    keys = tuple((s[2], short) for _, short, s in written[at:end])
                    memo, index = const({}), source[1]
                    lines.append(f"    x = {memo}.get(state[{index}])")
                    lines.append(f"    if x is None: x = _cells({memo}, state[{index}], {const(keys)})")
                    lines.append(f"    {d}.update(x)")
                    at = end
                    continue
            lines += _assign(evaluation, source, f"{d}[{written[at][1]!r}]", const)
            at += 1
    lines.append(f"    return [{', '.join(names)}]")
    code = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = {**constants, "_cells": _cells}
    exec(compiled_code(code, f"facts level {level}"), namespace)  # noqa: S102
    return namespace["facts"], code


CELLS_LIMIT = 4096  # possible-cell sets remembered per variable (few occur: a recorded value has one)


def _cells(
    memo: dict[tuple[int, ...], dict[str, int]], cells: tuple[int, ...], keys: tuple[tuple[int, str], ...]
) -> dict[str, int]:
    """The fact keys (in order) a variable's possible cells set, as the lines `_assign` writes
    for each cell set them; remembered for the next record with the same cells."""
    found = {short: 1 for cell, short in keys if cell in cells}
    if len(memo) < CELLS_LIMIT:
        memo[cells] = found
    return found


def _assign(evaluation: Evaluation, source: Source, target: str, const: Any) -> list[str]:
    """The lines that set `target` as Evaluation.flat_fact sets that key, and only when it does."""
    kind = source[0]
    if kind == "field":
        return [f"    v = values[{source[1]!r}]", f"    if v is not None: {target} = {SCALAR}"]
    if kind == "count":
        return [f"    v = values[{source[1]!r}]", f"    if v is not None: {target} = len(v)"]
    if kind == "has":
        item = const(source[2])  # flat_fact names an item by its text (f"{item}")
        return [
            f"    v = values[{source[1]!r}]",
            f"    if v is not None and {item} in [f'{{i}}' for i in v]: {target} = 1",
        ]
    if kind == "derived":
        return [f"    v = derived[{source[1]!r}].value", f"    if v is not None: {target} = {SCALAR}"]
    if kind == "outcome":
        return [f"    v = outcomes.get({source[1]!r})", f"    if v is not None: {target} = v"]
    var = evaluation.exact.vars[source[1]]
    if kind == "cell":
        return [f"    if {source[2]} in state[{source[1]}]: {target} = 1"]
    known = f"values.get({var.name!r})" if var.source == "field" else f"derived[{var.name!r}].value"
    samples = const(tuple(number(cell.sample()) for cell in var.cells))
    end = 0 if kind == "low" else -1
    return [
        f"    v = {known}",
        f"    {target} = {SCALAR} if v is not None else {samples}[state[{source[1]}][{end}]]",
    ]
