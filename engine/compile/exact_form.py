"""The exact form of the knowledge base's conditions, for exact three-valued semantics.

A rule is decided only when every possible value of its missing inputs gives the same outcome
(clinical-notes §4.1). To make that computable, every condition is rewritten over *variables*
with finitely many *cells*:

- derived values that are conditions (in_scope, bp_above_target, ...) and categories chosen by
  cases with constant values (age_group) are inlined, down to patient fields;
- a numeric derived value computed by arithmetic (dose_mg_per_kg_day, creatinine_rise_pct) stays
  one variable: the engine computes its value, or the range it could take;
- each variable's domain is cut into cells on which every comparison the knowledge base makes
  with it is constant: the enum values of an enum field, true/false, the intervals between (and
  the points at) the thresholds a number is compared with, the subsets of the item classes a list
  is tested against.

A comparison becomes an Atom: its truth in every cell. A variable that is recorded falls in one
cell; a missing one may fall in several (its *possible cells*, computed per patient from the
values present). Both the Python evaluation (engine.evaluate.exact) and the durable-rules
patterns (engine.compile.rulesets) are built from this one form.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Union

from fsgs_kb.engine.intervals import Bound, exact_number
from fsgs_kb.engine.load.conditions import walk
from fsgs_kb.engine.load.fields import FieldInfo, catalogue
from fsgs_kb.engine.model import AllOf, AnyOf, Compare, Condition, Const, KnowledgeBaseModel, Not, ParamRef

SEEN_LIMIT = 1024  # lists remembered per list variable (Var.cell_of)


@dataclass(frozen=True)
class Cell:
    """One cell of a variable: an interval of numbers, one enum/boolean value, or a set of item
    classes of a list."""

    lo: Bound = None
    lo_closed: bool = False
    hi: Bound = None
    hi_closed: bool = False
    value: Any = None
    classes: frozenset[int] | None = None

    def sample(self) -> Any:
        """A value inside the cell (numbers: a point strictly inside an open interval)."""
        if self.classes is not None:
            return self.classes
        if self.value is not None:
            return self.value
        if self.lo is not None and self.hi is not None:
            return self.lo if self.lo == self.hi else (self.lo + self.hi) / 2
        if self.lo is not None:
            return self.lo + 1
        if self.hi is not None:
            return self.hi - 1
        return Fraction(0)

    def contains(self, number: Fraction) -> bool:
        if self.lo is not None and (number < self.lo or (number == self.lo and not self.lo_closed)):
            return False
        return not (self.hi is not None and (number > self.hi or (number == self.hi and not self.hi_closed)))


@dataclass(frozen=True)
class Var:
    """A variable of the exact form: a patient field, or a numeric derived value."""

    id: str  # safe as part of a fact key: age_years, cyclosporine__status, d__dose_mg_per_kg_day
    source: str  # field | derived
    name: str
    kind: str  # number | enum | boolean | list
    cells: tuple[Cell, ...]
    fact_key: str  # the key of its value in the flat fact
    classes: tuple[tuple[str, ...], ...] = ()  # lists: the items of each class
    lows: tuple[tuple[int | float, bool], ...] = ()  # numbers: each cell's lower bound as the engine compares it
    index: dict[Any, int] = field(default_factory=dict, compare=False, hash=False)  # enums: cell by value
    seen: dict[Any, int] = field(default_factory=dict, compare=False, hash=False, repr=False)  # lists: cell by items

    def possible_key(self, cell: int) -> str:
        """Enums, booleans, lists: the fact key saying the variable may lie in this cell."""
        return f"p__{self.id}__{cell}"

    @property
    def low_key(self) -> str:
        """Numbers: the fact key of the lowest possible value (the value itself when recorded)."""
        return f"lo__{self.id}"

    @property
    def high_key(self) -> str:
        return f"hi__{self.id}"

    def cell_of(self, value: Any) -> int:
        """The cell a recorded value falls in. Numbers are compared as the engine compares
        them, as written (floats), with the cells' boundaries."""
        if self.kind == "number":
            index = 0
            for i, (low, closed) in enumerate(self.lows):
                if i and not (value > low or (value == low and closed)):
                    break
                index = i
            return index
        if self.kind == "list":  # the same few lists recur (drug names, risk factors): remembered, bounded
            key = tuple(value)
            found = self.seen.get(key)
            if found is None:
                present = frozenset(i for i, items in enumerate(self.classes) if set(items) & set(value))
                found = next(i for i, c in enumerate(self.cells) if c.classes == present)
                if len(self.seen) < SEEN_LIMIT:
                    self.seen[key] = found
            return found
        return self.index[value]


@dataclass(frozen=True)
class Atom:
    """A comparison of one variable (or several, merged): its truth in each of the variable's cells."""

    var: int
    truth: tuple[bool, ...]


@dataclass(frozen=True)
class Presence:
    """`present` / `absent`: whether a value is recorded (decided by the record, never missing)."""

    source: str
    name: str
    present: bool


@dataclass(frozen=True)
class Fixed:
    value: bool


@dataclass(frozen=True)
class Node:
    """all (and) / any (or) / not."""

    op: str
    items: tuple[Form, ...]


Form = Union[Atom, Presence, Fixed, Node]  # noqa: UP007 - a runtime alias of forward references


def atoms(form: Form) -> list[Atom]:
    if isinstance(form, Atom):
        return [form]
    if isinstance(form, Node):
        return [a for item in form.items for a in atoms(item)]
    return []


def form_vars(form: Form) -> list[int]:
    """The variables of a form, in order of first appearance."""
    return list(dict.fromkeys(a.var for a in atoms(form)))


class ExactForm:
    """Variables, cells and the exact form of every rule and boolean derived value."""

    def __init__(self, model: KnowledgeBaseModel) -> None:
        self.model = model
        self.fields: dict[str, FieldInfo] = catalogue()
        self.vars: list[Var] = []
        self._index: dict[tuple[str, str], int] = {}
        self._leaves: dict[tuple[str, ...], Form] = {}  # see _leaf
        leaves = self._all_leaves()
        self._thresholds: dict[tuple[str, str], set[Fraction]] = {}
        self._sets: dict[tuple[str, str], list[frozenset[Any]]] = {}
        for leaf in leaves:
            key = (leaf.source, leaf.name)
            value = self._threshold(leaf)
            if leaf.op in ("lt", "le", "gt", "ge") or (
                leaf.op == "eq" and isinstance(value, (int, float)) and not isinstance(value, bool)
            ):
                self._thresholds.setdefault(key, set()).add(exact_number(value))
            elif leaf.op == "includes_any":
                self._sets.setdefault(key, []).append(frozenset(value))
        self.rules: dict[str, Form] = {rid: simplify(self.inline(r.when)) for rid, r in sorted(model.rules.items())}
        self.derived: dict[str, Form] = {
            name: simplify(self.inline(d.condition)) for name, d in model.derived.items() if d.condition is not None
        }

    # ---- the knowledge base's comparisons --------------------------------------------------
    def _all_leaves(self) -> list[Compare]:
        conds: list[Condition] = [r.when for r in self.model.rules.values()]
        conds += [d.condition for d in self.model.derived.values() if d.condition is not None]
        conds += [w for d in self.model.derived.values() for w, _ in d.cases]
        return [leaf for c in conds for leaf in walk(c)]

    def _threshold(self, leaf: Compare) -> Any:
        operand = leaf.operand
        return self.model.parameters[operand.name].value if isinstance(operand, ParamRef) else operand

    def is_category(self, name: str) -> bool:
        spec = self.model.derived[name]
        return bool(spec.cases) and all(isinstance(v, Const) for _, v in spec.cases)

    # ---- variables -------------------------------------------------------------------------
    def var(self, source: str, name: str) -> int:
        key = (source, name)
        if key not in self._index:
            self._index[key] = len(self.vars)
            self.vars.append(self._make_var(source, name))
        return self._index[key]

    def _make_var(self, source: str, name: str) -> Var:
        var = self._new_var(source, name)
        if var.kind == "number":
            lows = tuple(
                (0 if c.lo is None else (int(c.lo) if c.lo.denominator == 1 else float(c.lo)), c.lo_closed)
                for c in var.cells
            )
            object.__setattr__(var, "lows", lows)
        elif var.kind != "list":
            var.index.update({c.value: i for i, c in enumerate(var.cells)})
        return var

    def _new_var(self, source: str, name: str) -> Var:
        if source == "derived":
            cells = _number_cells(self._thresholds.get((source, name), set()), None, False, None, True)
            return Var(f"d__{name}", source, name, "number", cells, f"d__{name}")
        info = self.fields[name]
        fid = name.replace(".", "__")
        if info.type == "boolean":
            return Var(fid, source, name, "boolean", (Cell(value=True), Cell(value=False)), fid)
        if info.type == "array":
            sets = self._sets.get((source, name), [])
            signature: dict[tuple[bool, ...], list[str]] = {}
            for item in info.enum or ():
                sig = tuple(item in s for s in sets)
                if any(sig):
                    signature.setdefault(sig, []).append(item)
            classes = tuple(tuple(items) for items in signature.values())
            cells = tuple(
                Cell(classes=frozenset(chosen))
                for size in range(len(classes) + 1)
                for chosen in itertools.combinations(range(len(classes)), size)
            )
            return Var(fid, source, name, "list", cells, fid, classes)
        if info.type == "number":
            low = None if info.low is None else exact_number(info.low)
            high = None if info.high is None else exact_number(info.high)
            cells = _number_cells(self._thresholds.get((source, name), set()), low, not info.exclusive_low, high, True)
            return Var(fid, source, name, "number", cells, fid)
        values = tuple(v for v in (info.enum or ()) if v != "unknown")
        return Var(fid, source, name, "enum", tuple(Cell(value=v) for v in values), fid)

    # ---- inlining ------------------------------------------------------------------------------
    def inline(self, cond: Condition) -> Form:
        if isinstance(cond, Not):
            return Node("not", (self.inline(cond.item),))
        if isinstance(cond, (AllOf, AnyOf)):
            return Node("and" if isinstance(cond, AllOf) else "or", tuple(self.inline(i) for i in cond.items))
        return self._leaf(cond)

    def _leaf(self, leaf: Compare) -> Form:
        """A comparison's form, made once per distinct comparison: a category's cases are each
        inlined for every case that reads them, so a chain of categories each reading the one
        before made 2^N forms (twenty links: 164 s to load) though each is the same."""
        threshold = self._threshold(leaf)
        key = (leaf.source, leaf.name, leaf.op, type(threshold).__name__, repr(threshold))
        found = self._leaves.get(key)
        if found is None:
            found = self._leaves[key] = self._made_leaf(leaf)
        return found

    def _made_leaf(self, leaf: Compare) -> Form:
        if leaf.op in ("present", "absent"):
            return Presence(leaf.source, leaf.name, leaf.op == "present")
        if leaf.source == "derived":
            spec = self.model.derived[leaf.name]
            if spec.condition is not None:
                inner = self.inline(spec.condition)
                want = bool(leaf.operand) == (leaf.op == "eq")
                return inner if want else Node("not", (inner,))
            if self.is_category(leaf.name):
                return self._category(leaf)
        index = self.var(leaf.source, leaf.name)
        var = self.vars[index]
        threshold = self._threshold(leaf)
        return Atom(index, tuple(_holds(leaf.op, var, cell, threshold) for cell in var.cells))

    def _category(self, leaf: Compare) -> Form:
        """`category op value(s)`: the first case whose condition holds gives the category."""
        spec = self.model.derived[leaf.name]
        threshold = self._threshold(leaf)
        wanted = set(threshold) if leaf.op == "in" else {threshold}
        options: list[Form] = []
        earlier: list[Form] = []
        for when, value in spec.cases:
            form = self.inline(when)
            if isinstance(value, Const) and value.value in wanted:
                options.append(Node("and", (*[Node("not", (e,)) for e in earlier], form)))
            earlier.append(form)
        chosen: Form = Node("or", tuple(options)) if options else Fixed(False)
        return Node("not", (chosen,)) if leaf.op == "ne" else chosen


def negate(form: Form) -> Form:
    """The negation, pushed down to the leaves."""
    if isinstance(form, Atom):
        return Atom(form.var, tuple(not t for t in form.truth))
    if isinstance(form, Presence):
        return Presence(form.source, form.name, not form.present)
    if isinstance(form, Fixed):
        return Fixed(not form.value)
    if form.op == "not":
        return form.items[0]
    return Node("or" if form.op == "and" else "and", tuple(negate(i) for i in form.items))


def simplify(form: Form) -> Form:
    """Negations pushed to the leaves, nested and/or flattened, constants folded, and the
    comparisons of one variable inside one and/or merged into one atom (a conjunction of two
    comparisons of age is one comparison of age's cells)."""
    if isinstance(form, (Atom, Presence, Fixed)):
        return form
    if form.op == "not":
        return simplify(negate(simplify(form.items[0])))
    conjunctive = form.op == "and"
    flat: list[Form] = []
    for item in (simplify(i) for i in form.items):
        if isinstance(item, Node) and item.op == form.op:
            flat.extend(item.items)
        else:
            flat.append(item)
    merged: dict[int, tuple[bool, ...]] = {}
    out: list[Form] = []
    for item in flat:
        if isinstance(item, Fixed):
            if item.value != conjunctive:
                return Fixed(not conjunctive)
            continue
        if isinstance(item, Atom):
            if item.var in merged:
                old = merged[item.var]
                merged[item.var] = tuple(
                    (a and b) if conjunctive else (a or b) for a, b in zip(old, item.truth, strict=True)
                )
            else:
                merged[item.var] = item.truth
                out.append(item)
            continue
        if item not in out:
            out.append(item)
    result: list[Form] = []
    for item in out:
        if isinstance(item, Atom):
            truth = merged[item.var]
            if all(truth) or not any(truth):
                if all(truth) != conjunctive:
                    return Fixed(not conjunctive)
                continue
            result.append(Atom(item.var, truth))
        else:
            result.append(item)
    if not result:
        return Fixed(conjunctive)
    return result[0] if len(result) == 1 else Node(form.op, tuple(result))


def _number_cells(
    thresholds: set[Fraction], low: Bound, low_closed: bool, high: Bound, high_closed: bool
) -> tuple[Cell, ...]:
    """The intervals between the thresholds and the thresholds themselves, within the domain."""
    points = sorted(
        t
        for t in thresholds
        if (low is None or t > low or (t == low and low_closed))
        and (high is None or t < high or (t == high and high_closed))
    )
    cells: list[Cell] = []
    lo, lo_closed = low, low_closed
    for point in points:
        if lo is None or point > lo:
            cells.append(Cell(lo, lo_closed, point, False))
        cells.append(Cell(point, True, point, True))
        lo, lo_closed = point, False
    if high is None or lo is None or high > lo or (high == lo and high_closed and lo_closed):
        cells.append(Cell(lo, lo_closed, high, high_closed))
    return tuple(cells)


def _holds(op: str, var: Var, cell: Cell, threshold: Any) -> bool:
    """A comparison's truth anywhere in a cell (constant there by construction)."""
    if var.kind == "list":
        assert cell.classes is not None
        items = {item for i in cell.classes for item in var.classes[i]}
        return bool(items & set(threshold)) if op == "includes_any" else False
    value = cell.sample()
    if var.kind == "number":
        t = exact_number(threshold) if not isinstance(threshold, (list, tuple)) else None
        if op == "in":
            return any(value == exact_number(x) for x in threshold)
        assert t is not None
        if op in ("eq", "ne"):
            return bool((value == t) == (op == "eq"))
        if op in ("lt", "le"):
            return bool(value < t or (op == "le" and value == t))
        return bool(value > t or (op == "ge" and value == t))
    if op == "in":
        return value in tuple(threshold)
    if op == "eq":
        return bool(value == threshold)
    if op == "ne":
        return bool(value != threshold)
    raise ValueError(f"'{op}' on a {var.kind} value")
