"""Exact three-valued semantics in Python (clinical-notes §4.1).

A condition is decided when every possible value of its missing inputs (each over its schema
domain, consistent with the values present) gives the same truth; otherwise it is undetermined,
and `missing` names the inputs whose values could change it. The variables and their cells come
from engine.compile.exact_form; here, per patient:

- `possible cells`: a recorded variable lies in one cell; a missing one in every cell its domain
  reaches. A field's domain is its schema range or enum, narrowed by the record's consistency
  rules given the values present (a recorded dose rules out status `never`; a recorded diastolic
  of 96 puts the missing systolic above 96). A numeric derived value's domain is the range its
  expression takes over its missing inputs (interval arithmetic; 1,600 mg/day over any weight up
  to 300 kg is above 5 mg/kg/day). An empty domain (no value would make the record consistent)
  is taken as the unconstrained one.
- `decide`: Kleene's strong tables over the cells (sound), then, where they leave the value
  unknown, a case split on a missing variable, cell by cell, until every branch is decided or
  two branches disagree.
- `relevant`: a missing variable is relevant when some values of the others make the outcome
  depend on it. The relevant variables are exactly the smallest set of inputs that decides the
  condition (every sufficient set contains each of them, and together they suffice), so they
  are what `missing` lists.

The durable-rules patterns are compiled from the same form (engine.compile.rulesets) and are
given the same possible cells as facts; any disagreement is an `error` result.
"""

from __future__ import annotations

from collections.abc import Callable
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
    simplify,
)
from fsgs_kb.engine.evaluate.patient import NEVER_CONTRADICTS
from fsgs_kb.engine.intervals import UNBOUNDED, Bound, Interval, exact_number, operation_range
from fsgs_kb.engine.load.conditions import expression_refs
from fsgs_kb.engine.load.fields import FieldInfo
from fsgs_kb.engine.model import Const, Derived, Expression, Op, Ref

Truth = bool | None
MEMO_LIMIT = 4096
State = tuple[tuple[int, ...], ...]  # per variable, its possible cells
Recorded = Callable[[str, str], bool]


def meets(interval: Interval, cell: Cell) -> bool:
    """Whether a range and a cell share a value."""
    lo, lo_closed = _max_low((interval.lo, interval.lo_closed), (cell.lo, cell.lo_closed))
    hi, hi_closed = _min_high((interval.hi, interval.hi_closed), (cell.hi, cell.hi_closed))
    if lo is None or hi is None:
        return True
    return _below(lo, hi) or (_same(lo, hi) and lo_closed and hi_closed)


# Bounds are Fractions (normalised: equal exactly when numerator and denominator are, the
# denominator positive). They are compared here by their integers: Fraction's own comparison
# first asks `isinstance(other, numbers.Rational)`, an ABC check, at every comparison.
def _below(x: Fraction, y: Fraction) -> bool:
    """x < y"""
    return x.numerator * y.denominator < y.numerator * x.denominator


def _same(x: Fraction, y: Fraction) -> bool:
    """x == y"""
    return x.numerator == y.numerator and x.denominator == y.denominator


def _max_low(a: tuple[Bound, bool], b: tuple[Bound, bool]) -> tuple[Bound, bool]:
    x, y = a[0], b[0]
    if x is None:
        return b
    if y is None:
        return a
    if not _same(x, y):
        return a if _below(y, x) else b
    return x, a[1] and b[1]


def _min_high(a: tuple[Bound, bool], b: tuple[Bound, bool]) -> tuple[Bound, bool]:
    x, y = a[0], b[0]
    if x is None:
        return b
    if y is None:
        return a
    if not _same(x, y):
        return a if _below(x, y) else b
    return x, a[1] and b[1]


# ---- three-valued evaluation over cells --------------------------------------------------------
def kleene(form: Form, state: State, recorded: Recorded) -> Truth:
    if isinstance(form, Atom):
        cells = state[form.var]
        first = form.truth[cells[0]]
        return first if all(form.truth[c] == first for c in cells[1:]) else None
    if isinstance(form, Presence):
        return recorded(form.source, form.name) == form.present
    if isinstance(form, Fixed):
        return form.value
    if form.op == "not":
        inner = kleene(form.items[0], state, recorded)
        return None if inner is None else not inner
    stop = form.op == "or"  # the value that decides an or (true) or an and (false)
    unknown = False
    for item in form.items:
        value = kleene(item, state, recorded)
        if value is stop:
            return stop
        if value is None:
            unknown = True
    return None if unknown else not stop


def _undecided_vars(form: Form, state: State, recorded: Recorded, out: dict[int, int]) -> None:
    """Variables of the atoms that are still open where the form is still open, with counts."""
    if isinstance(form, Atom):
        cells = state[form.var]
        if len(cells) > 1 and len({form.truth[c] for c in cells}) > 1:
            out[form.var] = out.get(form.var, 0) + 1
        return
    if isinstance(form, Node):
        for item in form.items:
            if kleene(item, state, recorded) is None:
                _undecided_vars(item, state, recorded, out)


def _pick(form: Form, state: State, recorded: Recorded, exclude: int = -1) -> int | None:
    counts: dict[int, int] = {}
    _undecided_vars(form, state, recorded, counts)
    counts.pop(exclude, None)
    return max(counts, key=lambda v: (counts[v], -v)) if counts else None


def _with(state: State, var: int, cell: int) -> State:
    return state[:var] + ((cell,),) + state[var + 1 :]


def decide(form: Form, state: State, recorded: Recorded) -> Truth:
    """True or false when every completion agrees, else None."""
    value = kleene(form, state, recorded)
    if value is not None:
        return value
    var = _pick(form, state, recorded)
    if var is None:
        return None
    seen: set[bool] = set()
    for cell in state[var]:
        branch = decide(form, _with(state, var, cell), recorded)
        if branch is None:
            return None
        seen.add(branch)
        if len(seen) > 1:
            return None
    return seen.pop() if seen else None


def relevant(form: Form, state: State, recorded: Recorded, var: int) -> bool:
    """Do some values of the other missing variables make the outcome depend on this one?"""
    if kleene(form, state, recorded) is not None:
        return False
    other = _pick(form, state, recorded, exclude=var)
    if other is None:
        return decide(form, state, recorded) is None
    return any(relevant(form, _with(state, other, cell), recorded, var) for cell in state[other])


def relevant_vars(form: Form, state: State, recorded: Recorded, variables: list[int]) -> list[int]:
    return [v for v in variables if len(state[v]) > 1 and relevant(form, state, recorded, v)]


# ---- possible cells of each variable, per patient ---------------------------------------------
class Domains:
    """The possible cells of every variable of the exact form for one patient."""

    def __init__(self, form: ExactForm) -> None:
        self.form = form
        self.model = form.model
        self._memo: dict[tuple[Any, ...], tuple[int, ...]] = {}  # bounded; keyed by everything the cells depend on
        self._input_keys: dict[str, list[list[str]]] = {}
        self._constraint_indices: dict[str, tuple[int, ...]] = {}
        self._domains: dict[tuple[str, Any], Interval] = {}  # bounded, like _memo
        self._constants: dict[int, Interval] = {}  # constants and parameters of expressions, by id
        self._selectors: dict[str, list[int]] = {}
        self._derived_inputs: dict[str, list[str]] = {}
        self._case_forms: dict[str, list[tuple[Form, Expression]]] = {
            name: [(simplify(form.inline(w)), e) for w, e in spec.cases]
            for name, spec in self.model.derived.items()
            if spec.cases and not form.is_category(name)
        }

    def state(self, record: dict[str, Any], values: dict[str, Any], derived: dict[str, Any]) -> State:
        """`values`: field values by path (None when missing); `derived`: DerivedValue by name."""
        cells: list[tuple[int, ...]] = []
        for var in self.form.vars:
            if var.source == "field":
                value = values.get(var.name)
                if value is not None:
                    cells.append((var.cell_of(value),))
                else:
                    cells.append(self.field_cells(var, record, values))
            else:
                value = derived[var.name].value
                if value is not None:
                    cells.append((var.cell_of(value),))
                else:
                    cells.append(self._derived_cells(var, values, record))
        return tuple(cells)

    # -- fields
    def field_cells(self, var: Var, record: dict[str, Any], values: dict[str, Any]) -> tuple[int, ...]:
        """Memoised on what the record says that narrows this field (`narrowing`), which is all
        the cells depend on."""
        key = (var.id, narrowing(var.name, record))
        found = self._memo.get(key)
        if found is None:
            info = self.form.fields[var.name]
            everything = tuple(range(len(var.cells)))
            if var.kind == "enum":
                allowed = set(self._enum_values(info, key[1]))
                found = tuple(i for i, c in enumerate(var.cells) if c.value in allowed)
            elif var.kind == "number":
                interval = self._number_interval(info, key[1])
                found = _hull(tuple(i for i, c in enumerate(var.cells) if meets(interval, c)))
            else:
                found = everything
            found = found or everything
            if len(self._memo) < MEMO_LIMIT:
                self._memo[key] = found
        return found

    def enum_domain(self, path: str, record: dict[str, Any]) -> list[Any]:
        """The values a missing enum field could take, consistent with the values present."""
        return self._enum_values(self.form.fields[path], narrowing(path, record))

    @staticmethod
    def _enum_values(info: FieldInfo, narrowed: Any) -> list[Any]:
        values = [v for v in (info.enum or ()) if v != "unknown"]
        if info.path == "cyclosporine.status":
            not_never, not_current = narrowed
            if not_never:
                values = [v for v in values if v != "never"]
            if not_current:
                values = [v for v in values if v != "current"]
        elif info.path == "steroids.response" and narrowed:
            values = [v for v in values if v != "not_treated"]
        return values

    def number_domain(self, info: FieldInfo, record: dict[str, Any]) -> Interval:
        """The range of a missing number, consistent with the values present."""
        key = (info.path, narrowing(info.path, record))
        found = self._domains.get(key)
        if found is None:
            found = self._number_interval(info, key[1])
            if len(self._domains) < MEMO_LIMIT:
                self._domains[key] = found
        return found

    @staticmethod
    def _number_interval(info: FieldInfo, narrowed: Any) -> Interval:
        lo = None if info.low is None else exact_number(info.low)
        hi = None if info.high is None else exact_number(info.high)
        interval = Interval(lo, not info.exclusive_low, hi, True)
        path = info.path
        if path == "blood_pressure.systolic_mmHg":
            if narrowed is not None:  # above the recorded diastolic
                low = _max_low((interval.lo, interval.lo_closed), (exact_number(narrowed), False))
                interval = Interval(low[0], low[1], interval.hi, interval.hi_closed)
        elif path == "steroids.high_dose_weeks":
            if narrowed:
                interval = Interval.point(Fraction(0))
        elif path == "cyclosporine.daily_dose.value":
            if narrowed:
                interval = Interval(Fraction(0), False, interval.hi, interval.hi_closed)
        return interval

    # -- numeric derived values
    def _derived_cells(self, var: Var, values: dict[str, Any], record: dict[str, Any]) -> tuple[int, ...]:
        cv = constraint_values(record)
        inputs = tuple([value_at(record, k) for k in self.input_keys(var.name)])
        key = (var.id, inputs, *[cv[i] for i in self.constraint_indices(var.name)])
        found = self._memo.get(key)
        if found is None:
            found = self.derived_cells(var, values, record, key)
        return found

    def derived_cells(
        self, var: Var, values: dict[str, Any], record: dict[str, Any], key: tuple[Any, ...]
    ) -> tuple[int, ...]:
        """A missing numeric derived value's possible cells, remembered under `key`: the variable,
        its inputs as the record holds them and those of the values that narrow a missing number
        (`constraint_values`) that narrow one of its inputs (`constraint_indices`), which is
        everything they depend on. The generated state function
        (engine/evaluate/compiled.py) builds the same key and looks in `memo` first."""
        ranges = self.derived_ranges(self.model.derived[var.name], values, record)
        everything = tuple(range(len(var.cells)))
        found = _hull(tuple(i for i, c in enumerate(var.cells) if any(meets(r, c) for r in ranges))) or everything
        if len(self._memo) < MEMO_LIMIT:
            self._memo[key] = found
        return found

    @property
    def memo(self) -> dict[tuple[Any, ...], tuple[int, ...]]:
        return self._memo

    def constraint_indices(self, name: str) -> tuple[int, ...]:
        """Which of `constraint_values` a missing derived value's cells depend on: those that
        narrow one of its inputs (`narrowing`). With all three in the key, a proteinuria's
        cells were worked out again for every new diastolic pressure, which they never read.
        An input narrowed by anything else keeps all three (the key as it was)."""
        found = self._constraint_indices.get(name)
        if found is None:
            inputs = self.derived_inputs(self.model.derived[name])
            if any(path in NARROWED and path not in NARROWED_BY for path in inputs):
                found = tuple(range(len(NARROWED_BY)))
            else:
                found = tuple(sorted({NARROWED_BY[path] for path in inputs if path in NARROWED_BY}))
            self._constraint_indices[name] = found
        return found

    def input_keys(self, name: str) -> list[list[str]]:
        """A derived value's record inputs as key paths (`["cyclosporine", "daily_dose", "value"]`)."""
        keys = self._input_keys.get(name)
        if keys is None:
            keys = self._input_keys[name] = [n.split(".") for n in self.derived_inputs(self.model.derived[name])]
        return keys

    def derived_ranges(self, spec: Derived, values: dict[str, Any], record: dict[str, Any]) -> list[Interval]:  # noqa: C901
        """The ranges a numeric derived value may take over the completions of its inputs."""
        if spec.value is not None:
            return [self._interval(spec.value, values, record, {})]
        cases = self._case_forms[spec.name]
        selectors = self._selectors.get(spec.name)
        if selectors is None:
            selectors = self._selectors[spec.name] = list(
                dict.fromkeys(v for when, _ in cases for v in _form_var_ids(when))
            )
        base = self.state_of(selectors, values, record)
        out: list[Interval] = []
        for choice in _product([base[v] for v in selectors]):
            state = list(base_state(len(self.form.vars)))
            narrowed: dict[str, Cell] = {}
            for v, cell in zip(selectors, choice, strict=True):
                state[v] = (cell,)
                variable = self.form.vars[v]
                if variable.kind == "number" and variable.source == "field":
                    narrowed[variable.name] = variable.cells[cell]
            frozen = tuple(state)
            for when, expr in cases:
                if kleene(when, frozen, lambda source, name: value_at(record, name.split(".")) is not None) is True:
                    out.append(self._interval(expr, values, record, narrowed))
                    break
        return out

    def state_of(
        self, var_ids: list[int], values: dict[str, Any], record: dict[str, Any]
    ) -> dict[int, tuple[int, ...]]:
        out: dict[int, tuple[int, ...]] = {}
        for v in var_ids:
            var = self.form.vars[v]
            value = values.get(var.name) if var.source == "field" else None
            if value is None:
                value = value_at(record, var.name.split("."))
            out[v] = (var.cell_of(value),) if value is not None else self.field_cells(var, record, values)
        return out

    def _interval(
        self, expr: Expression, values: dict[str, Any], record: dict[str, Any], narrowed: dict[str, Cell]
    ) -> Interval:
        if isinstance(expr, Const) or (isinstance(expr, Ref) and expr.source == "param"):
            constant = self._constants.get(id(expr))  # expressions live with the KB
            if constant is None:
                value = expr.value if isinstance(expr, Const) else self.model.parameters[expr.name].value
                constant = self._constants[id(expr)] = Interval.point(exact_number(value))
            return constant
        if isinstance(expr, Ref):
            if expr.source == "derived":
                return UNBOUNDED  # a derived value of a derived value: not narrowed further
            value = value_at(record, expr.name.split("."))
            if value is not None:
                return Interval.point(exact_number(value))
            domain = self.number_domain(self.form.fields[expr.name], record)
            cell = narrowed.get(expr.name)
            if cell is not None:
                lo = _max_low((domain.lo, domain.lo_closed), (cell.lo, cell.lo_closed))
                hi = _min_high((domain.hi, domain.hi_closed), (cell.hi, cell.hi_closed))
                domain = Interval(lo[0], lo[1], hi[0], hi[1])
            return domain
        assert isinstance(expr, Op)
        a, b = (self._interval(arg, values, record, narrowed) for arg in expr.args)
        return operation_range(expr.name, a, b)

    def derived_inputs(self, spec: Derived) -> list[str]:
        """The fields a derived value reads (case conditions and expressions); worked out once
        per derived value (the list is shared: read it, do not change it)."""
        found = self._derived_inputs.get(spec.name)
        if found is None:
            found = self._derived_inputs[spec.name] = self._inputs_of(spec)
        return found

    def _inputs_of(self, spec: Derived) -> list[str]:
        exprs = ([spec.value] if spec.value is not None else []) + [e for _, e in spec.cases]
        names = [ref.name for e in exprs for ref in expression_refs(e) if ref.source == "field"]
        whens = [self.form.vars[v].name for when, _ in self._case_forms.get(spec.name, []) for v in _form_var_ids(when)]
        return list(dict.fromkeys(whens + names))


def constraint_values(record: dict[str, Any]) -> tuple[Any, ...]:
    """The values present that narrow the domain of a missing number (see number_domain)."""
    return (
        _mapping(record.get("blood_pressure")).get("diastolic_mmHg"),
        _mapping(record.get("steroids")).get("response"),
        _mapping(record.get("cyclosporine")).get("status"),
    )


# Each number whose domain `narrowing` narrows: the index in `constraint_values` of what it reads.
NARROWED_BY = {"blood_pressure.systolic_mmHg": 0, "steroids.high_dose_weeks": 1, "cyclosporine.daily_dose.value": 2}

# The fields whose domain, when missing, depends on what else the record holds (`narrowing`);
# every other missing field's possible cells are the same for every record.
NARROWED = frozenset(
    ("blood_pressure.systolic_mmHg", "steroids.high_dose_weeks", "cyclosporine.daily_dose.value")
    + ("cyclosporine.status", "steroids.response")
)


def narrowing(path: str, record: dict[str, Any]) -> Any:
    """What the values present say about a missing field's domain (clinical-notes §4.1: each
    completion is consistent with the record), and nothing else: the domains are computed
    from this alone, so it is also the key they are memoised on.

    - systolic blood pressure: above a recorded diastolic;
    - high-dose steroid weeks: 0 when the steroid response is `not_treated`;
    - cyclosporine dose: above 0 when cyclosporine is `current`;
    - cyclosporine status: not `never` when anything of a course is recorded, not `current`
      when a stop reason or a zero dose is;
    - steroid response: not `not_treated` after some weeks of high-dose steroids."""
    if path not in NARROWED:
        return None
    if path == "blood_pressure.systolic_mmHg":
        diastolic = _mapping(record.get("blood_pressure")).get("diastolic_mmHg")
        return diastolic if isinstance(diastolic, (int, float)) else None
    if path == "steroids.high_dose_weeks":
        return _mapping(record.get("steroids")).get("response") == "not_treated"
    if path == "cyclosporine.daily_dose.value":
        return _mapping(record.get("cyclosporine")).get("status") == "current"
    if path == "cyclosporine.status":
        csa = _mapping(record.get("cyclosporine"))
        not_never = any(key in csa for key in NEVER_CONTRADICTS)
        return not_never, "stop_reason" in csa or _mapping(csa.get("daily_dose")).get("value") == 0
    if path == "steroids.response":
        weeks = _mapping(record.get("steroids")).get("high_dose_weeks")
        return isinstance(weeks, (int, float)) and weeks > 0
    return None


def _hull(cells: tuple[int, ...]) -> tuple[int, ...]:
    """A number's possible cells are contiguous: from the lowest possible to the highest."""
    return tuple(range(min(cells), max(cells) + 1)) if cells else ()


def base_state(n: int) -> list[tuple[int, ...]]:
    return [(0,)] * n


def _form_var_ids(form: Form) -> list[int]:
    if isinstance(form, Atom):
        return [form.var]
    if isinstance(form, Node):
        return [v for item in form.items for v in _form_var_ids(item)]
    return []


def _product(options: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = [()]
    for choices in options:
        out = [prefix + (c,) for prefix in out for c in choices]
    return out


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def value_at(record: dict[str, Any], keys: list[str]) -> Any:
    """The record's value at a key path, None where absent or `unknown`."""
    value: Any = record
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return None if value == "unknown" else value
