"""Compile the knowledge base to durable-rules rulesets (their JSON ruleset form).

Exact three-valued logic in a two-valued engine (clinical-notes §4.1). Each condition, in its
exact form (engine.compile.exact_form: derived values inlined, every comparison an atom over a
variable's cells), compiles to two patterns, `ID|T` (true for every completion of the missing
inputs) and `ID|F` (false for every completion); a rule whose T pattern fires is `fired`, F
`not_fired`, neither `undetermined`. So the engine, not Python, decides all three outcomes.

The engine is told where each variable may lie, recorded or not:
- a number as its lowest and highest possible value, `lo__VAR` and `hi__VAR` (both the value
  itself when it is recorded; for a missing one a value inside its lowest and highest possible
  cell, e.g. a missing systolic above a recorded diastolic of 96);
- an enum, boolean or list as one fact per possible cell, `p__VAR__CELL` (one when recorded).
A comparison is then definitely true when no possible value falsifies it, one conjunction:
    T(x >= 120) = lo__x >= 120          F(x >= 120) = hi__x < 120
    T(status = current) = no p__status__never and no p__status__stopped
Conditions whose parts share no variable compose like Kleene's tables (exact for independent
parts): T(all) = and T(items), F(all) = or F(items), and dually for any. A variable that occurs
in several comparisons of one condition (age in "adult and SBP >= 120, or child and percentile
>= 90") is split on: for each group g of its cells on which those comparisons agree,
    T(C) = and_g (no cell of g possible  or  T(C with the variable in g))
which is exactly "true whatever the missing value is".

Facts are flat: durable-rules 2.0.28 crashed on nested objects and lists (durable-rules-notes).
Presence tests read the recorded value's own key (`a__b`, `L__n` for a list); numeric derived
values are computed exactly in Python. Every rule and boolean derived value is decided at level
0; caveats, which need the outcome of the advice they qualify, at level 1 (`r__RULE` = "T" |
"F" | "U" facts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from fsgs_kb.engine.compile.exact_form import (
    Atom,
    Cell,
    ExactForm,
    Fixed,
    Form,
    Node,
    Presence,
    Var,
    atoms,
    simplify,
)
from fsgs_kb.engine.load.fields import catalogue
from fsgs_kb.engine.model import KnowledgeBaseModel

ALPHA_BUDGET = 60  # alpha-stack entries one fact may need; the core stops at 64 (error 303)
MAX_GROUPS = 15  # $and/$or groups in one pattern: each takes 2 of the core's 31 expression slots (error 113)
TRUE: dict[str, Any] = {"k": 1}  # every fact carries k = 1
FALSE: dict[str, Any] = {"k": 0}
NEGATE = {"eq": "ne", "ne": "eq", "lt": "ge", "le": "gt", "gt": "le", "ge": "lt"}
DURABLE_OP = {"ne": "$neq", "lt": "$lt", "le": "$lte", "gt": "$gt", "ge": "$gte"}


def field_key(path: str) -> str:
    return path.replace(".", "__")


def derived_key(name: str) -> str:
    return f"d__{name}"


def boolean_key(name: str) -> str:
    return f"b__{name}"


def scalar(value: Any) -> Any:
    """Booleans as 1/0: durable-rules compares numbers and strings most reliably."""
    return int(value) if isinstance(value, bool) else value


def _and(items: list[dict[str, Any]]) -> dict[str, Any]:
    flat: list[dict[str, Any]] = []
    for item in items:
        if item == FALSE:
            return FALSE
        if item == TRUE:
            continue
        parts = item["$and"] if set(item) == {"$and"} else [item]
        flat.extend(p for p in parts if p not in flat)
    return flat[0] if len(flat) == 1 else ({"$and": flat} if flat else TRUE)


def _or(items: list[dict[str, Any]]) -> dict[str, Any]:
    flat: list[dict[str, Any]] = []
    for item in items:
        if item == TRUE:
            return TRUE
        if item == FALSE:
            continue
        parts = item["$or"] if set(item) == {"$or"} else [item]
        flat.extend(p for p in parts if p not in flat)
    return flat[0] if len(flat) == 1 else ({"$or": flat} if flat else FALSE)


@dataclass(frozen=True)
class CompiledKB:
    """The rulesets, level by level, and what each level decides."""

    levels: tuple[tuple[dict[str, Any], ...], ...]  # per level, rulesets small enough for the core
    level_derived: tuple[tuple[str, ...], ...]
    level_rules: tuple[tuple[str, ...], ...]
    boolean_derived: tuple[str, ...]
    fact_fields: tuple[str, ...]
    fact_derived: tuple[str, ...]
    exact: ExactForm = field(compare=False, repr=False)

    def as_json(self) -> dict[str, Any]:
        """The inspectable form printed by `fsgs-kb compile`."""
        return {
            "fact_keys": {
                "fields": {p: field_key(p) for p in self.fact_fields},
                "derived": {n: derived_key(n) for n in self.fact_derived},
                "possible_cells": {
                    var.id: {var.possible_key(i): _cell_text(var, cell) for i, cell in enumerate(var.cells)}
                    for var in self.exact.vars
                    if var.kind != "number"
                },
                "possible_range": {
                    var.id: {"lowest": var.low_key, "highest": var.high_key}
                    for var in self.exact.vars
                    if var.kind == "number"
                },
                "rule_outcomes": {rid: rule_key(rid) for rids in self.level_rules[:-1] for rid in rids}
                if len(self.level_rules) > 1
                else {},
            },
            "levels": [
                {"decides": {"derived": list(d), "rules": list(r)}, "rulesets": list(chunks)}
                for d, r, chunks in zip(self.level_derived, self.level_rules, self.levels, strict=True)
            ],
        }


def rule_key(rule_id: str) -> str:
    return "r__" + rule_id.replace("-", "_")


def number(value: Fraction) -> int | float:
    """A cell boundary as the JSON number durable-rules compares with."""
    return int(value) if value.denominator == 1 else float(value)


def _cell_text(var: Var, cell: Cell) -> str:
    if var.kind == "list":
        assert cell.classes is not None
        return "includes " + (
            " and ".join("any of " + "/".join(var.classes[i]) for i in sorted(cell.classes))
            or "none of the listed items"
        )
    if var.kind != "number":
        return f"= {cell.value}"
    if cell.lo is not None and cell.lo == cell.hi:
        return f"= {number(cell.lo)}"
    low = "" if cell.lo is None else f"{number(cell.lo)} {'<=' if cell.lo_closed else '<'} "
    high = "" if cell.hi is None else f" {'<=' if cell.hi_closed else '<'} {number(cell.hi)}"
    return f"{low}x{high}"


class Compiler:
    def __init__(self, model: KnowledgeBaseModel) -> None:
        self.model = model
        self.fields = catalogue()
        self.exact = ExactForm(model)

    # ---- patterns of the exact form ------------------------------------------------------------
    def patterns(self, form: Form) -> tuple[dict[str, Any], dict[str, Any]]:
        """(definitely true, definitely false) patterns of a form."""
        if isinstance(form, Fixed):
            return (TRUE, FALSE) if form.value else (FALSE, TRUE)
        if isinstance(form, Presence):
            key = self._presence_key(form.source, form.name)
            yes, no = {"$ex": {key: 1}}, {"$nex": {key: 1}}
            return (yes, no) if form.present else (no, yes)
        if isinstance(form, Atom):
            return self._atom(form)
        assert isinstance(form, Node) and form.op in ("and", "or")
        groups = _components(form.items)
        if len(groups) > 1:  # parts that share no variable compose like Kleene's tables
            parts = [self.patterns(g[0] if len(g) == 1 else Node(form.op, tuple(g))) for g in groups]
            ts, fs = [p[0] for p in parts], [p[1] for p in parts]
            return (_and(ts), _or(fs)) if form.op == "and" else (_or(ts), _and(fs))
        items = groups[0]
        if len(items) == 1:
            return self.patterns(items[0])
        counts: dict[int, int] = {}  # in how many of the parts each variable occurs
        for item in items:
            for v in {a.var for a in atoms(item)}:
                counts[v] = counts.get(v, 0) + 1
        shared = [v for v, n in counts.items() if n > 1]
        return self._split(form, max(shared, key=lambda v: (counts[v], -v)))

    def _atom(self, atom: Atom) -> tuple[dict[str, Any], dict[str, Any]]:
        var = self.exact.vars[atom.var]
        yes = [i for i, t in enumerate(atom.truth) if t]
        no = [i for i, t in enumerate(atom.truth) if not t]
        return self._within(var, yes), self._within(var, no)

    def _split(self, form: Form, v: int) -> tuple[dict[str, Any], dict[str, Any]]:
        var = self.exact.vars[v]
        groups: dict[tuple[bool, ...], list[int]] = {}
        for cell in range(len(var.cells)):
            signature = tuple(a.truth[cell] for a in atoms(form) if a.var == v)
            groups.setdefault(signature, []).append(cell)
        ts, fs = [], []
        for cells in groups.values():
            t, f = self.patterns(simplify(restrict(form, v, cells[0])))
            avoid = self._avoids(var, cells)
            ts.append(_or([avoid, t]))
            fs.append(_or([avoid, f]))
        return _and(ts), _and(fs)

    def _within(self, var: Var, cells: list[int]) -> dict[str, Any]:
        """Every possible value of the variable lies in these cells."""
        if not cells:
            return FALSE
        others = [i for i in range(len(var.cells)) if i not in cells]
        if var.kind != "number":
            return _and([{"$nex": {var.possible_key(i): 1}} for i in others])
        return _or([self._between(var, first, last) for first, last in _runs(cells)])

    def _avoids(self, var: Var, cells: list[int]) -> dict[str, Any]:
        """No possible value of the variable lies in these cells."""
        if var.kind != "number":
            return _and([{"$nex": {var.possible_key(i): 1}} for i in cells])
        out = []
        for first, last in _runs(cells):
            below = self._highest_below(var, first)  # every possible value below the run
            above = self._lowest_above(var, last)  # or every one above it
            out.append(_or([below, above]))
        return _and(out)

    def _between(self, var: Var, first: int, last: int) -> dict[str, Any]:
        """The lowest possible value is in cell `first` or above, the highest in `last` or below."""
        low, high = var.cells[first], var.cells[last]
        parts: list[dict[str, Any]] = []
        if first > 0 and low.lo is not None:
            parts.append({("$gte" if low.lo_closed else "$gt"): {var.low_key: number(low.lo)}})
        if last < len(var.cells) - 1 and high.hi is not None:
            parts.append({("$lte" if high.hi_closed else "$lt"): {var.high_key: number(high.hi)}})
        return _and(parts)

    @staticmethod
    def _highest_below(var: Var, first: int) -> dict[str, Any]:
        cell = var.cells[first]
        if first == 0 or cell.lo is None:
            return FALSE
        return {("$lt" if cell.lo_closed else "$lte"): {var.high_key: number(cell.lo)}}

    @staticmethod
    def _lowest_above(var: Var, last: int) -> dict[str, Any]:
        cell = var.cells[last]
        if last == len(var.cells) - 1 or cell.hi is None:
            return FALSE
        return {("$gt" if cell.hi_closed else "$gte"): {var.low_key: number(cell.hi)}}

    def _presence_key(self, source: str, name: str) -> str:
        if source == "derived":
            return derived_key(name)
        info = self.fields[name]
        return field_key(name) + ("__n" if info.type == "array" else "")

    # ---- levels -------------------------------------------------------------------------------
    def compile(self) -> CompiledKB:
        booleans = tuple(n for n in self.model.derived_order if self.model.derived[n].is_boolean)
        ruleset: dict[str, Any] = {}
        for name in booleans:
            self._add(ruleset, f"derived:{name}", self.exact.derived[name])
        rules = sorted(self.model.rules.values(), key=lambda r: r.id)
        rids = tuple(r.id for r in rules if r.kind != "caveat")
        for rid in rids:
            self._add(ruleset, rid, self.exact.rules[rid])
        levels, level_derived, level_rules = [split_for_alpha_budget(ruleset)], [booleans], [rids]
        caveats = tuple(r.id for r in rules if r.kind == "caveat")
        if caveats:  # a caveat fires only with an advice it qualifies: decided once the advice is
            second: dict[str, Any] = {}
            for rule in (self.model.rules[c] for c in caveats):
                t, _ = self.patterns(self.exact.rules[rule.id])
                qualified = _or([{rule_key(q): "T"} for q in rule.qualifies])
                second[f"{rule.id}|T"] = {"all": [{"m": _guarded(_and([t, qualified]))}]}
                second[f"{rule.id}|F"] = {"all": [{"m": _guarded(FALSE)}]}  # never: not fired is not T
            levels.append(split_for_alpha_budget(second))
            level_derived.append(())
            level_rules.append(caveats)
        variables = self.exact.vars
        return CompiledKB(
            tuple(levels),
            tuple(level_derived),
            tuple(level_rules),
            booleans,
            self._fact_fields(),
            tuple(v.name for v in variables if v.source == "derived"),
            self.exact,
        )

    def _add(self, ruleset: dict[str, Any], name: str, form: Form) -> None:
        t, f = self.patterns(form)
        ruleset[f"{name}|T"] = {"all": [{"m": _guarded(t)}]}
        ruleset[f"{name}|F"] = {"all": [{"m": _guarded(f)}]}

    def _fact_fields(self) -> tuple[str, ...]:
        names = {v.name for v in self.exact.vars if v.source == "field"}
        forms = [*self.exact.rules.values(), *self.exact.derived.values()]
        names |= {p.name for f in forms for p in _presences(f) if p.source == "field"}
        return tuple(sorted(names))


def _components(items: tuple[Form, ...]) -> list[list[Form]]:
    """The parts of an all/any grouped so that parts sharing a variable are in one group."""
    groups: list[tuple[set[int], list[Form]]] = []
    for item in items:
        variables = {a.var for a in atoms(item)}
        joined = [g for g in groups if g[0] & variables]
        merged_vars = set(variables).union(*(g[0] for g in joined))
        merged_items = [i for g in joined for i in g[1]] + [item]
        groups = [g for g in groups if not (g[0] & variables)] + [(merged_vars, merged_items)]
    order = {id(item): n for n, item in enumerate(items)}
    return sorted((sorted(g[1], key=lambda i: order[id(i)]) for g in groups), key=lambda g: order[id(g[0])])


def restrict(form: Form, var: int, cell: int) -> Form:
    """The form with the variable fixed in one cell."""
    if isinstance(form, Atom):
        return Fixed(form.truth[cell]) if form.var == var else form
    if isinstance(form, Node):
        return Node(form.op, tuple(restrict(item, var, cell) for item in form.items))
    return form


def _presences(form: Form) -> list[Presence]:
    if isinstance(form, Presence):
        return [form]
    if isinstance(form, Node):
        return [p for item in form.items for p in _presences(item)]
    return []


def _runs(cells: list[int]) -> list[tuple[int, int]]:
    """Adjacent cells merged into (first, last) runs."""
    runs: list[tuple[int, int]] = []
    ordered = sorted(cells)
    start = prev = ordered[0]
    for i in ordered[1:]:
        if i != prev + 1:
            runs.append((start, prev))
            start = i
        prev = i
    runs.append((start, prev))
    return runs


def _guarded(pattern: dict[str, Any]) -> dict[str, Any]:
    """Match only our patient facts. Under Host, durable-rules also matches patterns against the
    session's state document, and a pattern of absences ($nex) matches it, so an action that
    updates the state would fire the rule again, forever."""
    if pattern in (TRUE, FALSE):
        return pattern
    return {"$and": [TRUE, *pattern["$and"]]} if "$and" in pattern else {"$and": [TRUE, pattern]}


class AlphaNetwork:
    """The alpha network durable-rules 2.0.28 builds for a ruleset's patterns (rete.c,
    createAlpha), modelled to bound its alpha stack (events.c, handleAlpha: 64 entries, error 303).

    Every pattern hangs under one shared root; a test is shared when its parent already has an
    identical one (findAlpha); an $and is a chain; each branch of an $or starts at the $or's
    parent and links to a fresh forward node, under which the rest of the pattern continues.
    For one fact the core walks this network depth first with an explicit stack: a node popped
    pushes its matching children. Counting every child as matching, the stack never holds more
    than 1 + the largest sum of (children - 1) along a path from the root (`stack_bound`).
    """

    def __init__(self) -> None:
        self.children: list[list[int]] = [[]]  # node 0 is the root
        self.tests: dict[tuple[int, tuple[str, str, Any]], int] = {}

    def _node(self) -> int:
        self.children.append([])
        return len(self.children) - 1

    def add(self, pattern: dict[str, Any], parent: int = 0) -> int:
        """Add a pattern under `parent`; return the node its matches continue from."""
        (word, value), *_ = pattern.items()
        if word == "$and":
            for item in value:
                parent = self.add(item, parent)
            return parent
        if word == "$or":
            ends = [self.add(item, parent) for item in value]
            forward = self._node()  # numbered after its parents (the core makes it first: same links)
            for end in ends:
                self.children[end].append(forward)
            return forward
        test = _test(word, value)
        node = self.tests.get((parent, test))
        if node is None:
            node = self.tests[(parent, test)] = self._node()
            self.children[parent].append(node)
        return node

    def stack_bound(self) -> int:
        best = [0] * len(self.children)
        for node in reversed(range(len(self.children))):  # every child is numbered after its parents
            below = max((best[child] for child in self.children[node]), default=0)
            best[node] = len(self.children[node]) - 1 + max(below, 0)
        return 1 + best[0]


def _test(word: str, value: Any) -> tuple[str, str, Any]:
    """What makes two alpha tests one node for the core: operator, property and value (numbers
    compared as numbers: 5 and 5.0 are one test)."""
    op, (prop, operand) = (word, next(iter(value.items()))) if word.startswith("$") else ("$eq", (word, value))
    if isinstance(operand, (int, float)) and not isinstance(operand, bool):
        operand = float(operand)
    return op, prop, operand if isinstance(operand, (str, float, int, type(None))) else repr(operand)


def stack_bound(rules: Any) -> int:
    """The most alpha-stack entries one fact can need in a ruleset made of `rules` (see AlphaNetwork)."""
    network = AlphaNetwork()
    for body in rules:
        network.add(body["all"][0]["m"])
    return network.stack_bound()


def groups(pattern: Any) -> int:
    """$and and $or groups in a pattern (the core allows MAX_GROUPS)."""
    if isinstance(pattern, dict):
        return sum((key in ("$and", "$or")) + groups(value) for key, value in pattern.items())
    if isinstance(pattern, list):
        return sum(groups(item) for item in pattern)
    return 0


def split_for_alpha_budget(ruleset: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """Split a ruleset so that no fact can need more of the core's alpha stack than ALPHA_BUDGET.

    A rule's T and F patterns share a ruleset when together they fit, else they go apart (the
    evaluation collects what fired across all rulesets of a level). A pattern over the budget on
    its own gets a ruleset of its own: engine.compile.proof reports it as an error.
    """
    chunks: list[dict[str, Any]] = [{}]
    network = AlphaNetwork()

    def place(names: list[str]) -> None:
        nonlocal network
        for name in names:
            network.add(ruleset[name]["all"][0]["m"])
        if network.stack_bound() > ALPHA_BUDGET and chunks[-1]:
            chunks.append({})  # the grown network is dropped with the chunk it no longer fits
            network = AlphaNetwork()
            for name in names:
                network.add(ruleset[name]["all"][0]["m"])
        for name in names:
            chunks[-1][name] = ruleset[name]

    names = list(ruleset)
    for pair in (names[i : i + 2] for i in range(0, len(names), 2)):
        if stack_bound(ruleset[name] for name in pair) <= ALPHA_BUDGET:
            place(pair)
        else:
            for name in pair:
                place([name])
    return tuple(chunks)


def compile_kb(model: KnowledgeBaseModel) -> CompiledKB:
    return Compiler(model).compile()
