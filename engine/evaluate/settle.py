"""The compiled evaluator's steps after the Kleene layer, written out per knowledge base: each
rule's exact outcome, durable-rules' verdict and their cross-check, the caveats, the summary
lists and, for results serialized at once, the full rule entries as JSON.

`CompiledEvaluator._evaluate` did this in loops over the rules, keyed dicts by rule id (decided,
missing inputs, outcomes) and then read them back, by id again, to assemble the result: a tenth
of a record's time went into that glue. Which rules are plain or caveats, which advice a caveat
qualifies, which rules are drafts or out of scope, and every rule's index are known when the
knowledge base is loaded, so here they are constants of one straight-line function: a rule's
outcome is a local variable, a caveat's "qualifies a fired rule" an `or` of those variables.

The steps and their order are those of `Evaluation._evaluate` (engine/evaluate/evaluation.py):
plain rules first, in rule order (errors listed in that order), then caveats; tests/test_compiled.py
holds the result to the interpreted reference's bytes at every detail level.
"""

from __future__ import annotations

from typing import Any

import orjson

from fsgs_kb.engine.evaluate.evaluation import OUTCOME

OUTCOME_JSON = {True: b'"fired"', False: b'"not_fired"', None: b'"undetermined"'}
# a value a caveat shows: JSON before it, derived?, name, unit (constant JSON, or the field it is read from)
Shown = tuple[bytes, bool, str, "bytes | str"]
# per rule, in order: id, JSON before its outcome, JSON of what it says, index of its derived
# values' list, for a caveat the JSON before what it shows, and what it shows
EntryPlan = tuple[str, bytes, bytes, int, "bytes | None", tuple[Shown, ...]]


class Source:
    """Lines of a generated function and the constants they name."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.counter = 0

    def emit(self, line: str, indent: int = 1) -> None:
        self.lines.append("    " * indent + line)

    def const(self, value: Any, prefix: str = "K") -> str:
        for name, known in self.constants.items():
            if known is value:
                return name
        self.counter += 1
        name = f"{prefix}{self.counter}"
        self.constants[name] = value
        return name

    def var(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


class Entries:
    """What the full rule entries are written from (`CompiledEvaluator._plan_entries`): each
    rule's `EntryPlan`, the distinct lists of derived values rules list (by name), the derived
    values any rule lists, and each caveat's note as JSON."""

    def __init__(
        self,
        plan: list[EntryPlan],
        groups: list[tuple[str, ...]],
        listed: list[str],
        notes: dict[str, bytes],
        booleans: frozenset[str] = frozenset(),
    ) -> None:
        self.plan = plan
        self.groups = groups
        self.listed = listed
        self.notes = notes
        self.booleans = booleans  # the boolean derived values: True, False or None, never another type


class Standard:
    """What the standard rule entries are written from: each caveat's shown values as
    `Evaluation._show_plan` gives them (kind, name, unit, the field the unit is read from), by
    rule id, and the derived values a standard result lists, in order."""

    def __init__(
        self,
        shows: dict[str, list[tuple[str, str, str | None, str | None]]],
        listed: list[str],
        scalars: frozenset[str] = frozenset(),
    ) -> None:
        self.shows = shows
        self.listed = listed
        self.scalars = scalars  # fields whose values are never lists (no copy to make)


def settle_source(
    rules: list[Any],
    forms: dict[str, Any],
    entries: Entries | None,
    standard: Standard | None = None,
    says: dict[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """(source of `settle(T, C, V, state, recorded, values, derived, errors)`, its constants).

    T, C: each rule's Kleene truth and its conditions at the detail level (None at minimal), from
    the generated `evaluate`; V: durable-rules' verdict.
    It appends disagreements to `errors` and returns, without `entries` or `standard`,
    (decided, missing_of, without_of, unchecked_of, notes, advice, caveats, drafts, undetermined,
    out_of_scope, outcomes) — the dicts by rule id the result is assembled from — with `entries`
    (the full rule entries as a list of JSON pieces, advice, caveats, drafts, undetermined,
    out_of_scope, outcomes)
    with `standard` ((the standard rule entries, the standard derived values), advice, …) and
    with `says` (what each rule says, by id: a minimal result's (says, missing), advice, …):
    no dict built only to be read back."""
    src = Source()
    emit, const = src.emit, src.const
    encoded = entries is not None or standard is not None or says is not None  # outcomes in locals, not dicts
    plain = {r.id: i for i, r in enumerate(rules) if r.kind != "caveat"}
    if not encoded:
        emit("decided = {}; missing_of = {}; without_of = {}; unchecked_of = {}; notes = {}")
    for i, rule in enumerate(rules):  # plain rules: the exact outcome, the verdict, the cross-check
        if rule.kind == "caveat":
            continue
        r, form = repr(rule.id), const(forms[rule.id], "F")
        emit(f"x = T[{i}]")
        if encoded:
            emit(f"w{i} = None")
        emit("if x is None:")
        emit(f"x, m = _judge({form}, state, recorded, values, derived)", 2)
        emit("if x is not None:", 2)
        emit(f"w = _without({form}, values, derived)", 3)
        emit(f"if w: {f'w{i}' if encoded else f'without_of[{r}]'} = w", 3)
        emit("else: m = []")
        emit(f"s{i} = V[{r}]; o{i} = x")
        emit(f"if s{i} != x: errors.append(_disagree({r}, s{i}, x))")
        if entries is not None:
            emit(f"m{i} = m if s{i} is None else None")
        elif standard is not None or says is not None:
            emit(f"m{i} = m if s{i} is None else []")
        else:
            emit(f"decided[{r}] = s{i}; missing_of[{r}] = m if s{i} is None else []")
    for i, rule in enumerate(rules):  # caveats: whether each applies to a fired rule it qualifies
        if rule.kind != "caveat":
            continue
        r, form = repr(rule.id), const(forms[rule.id], "F")
        targets = [plain[q] for q in rule.qualifies if q in plain]  # another caveat's outcome is never True
        emit(f"h = T[{i}]")
        emit(f"if h is None: h = _decide({form}, state, recorded, values, derived)")
        emit(f"q = {' or '.join(f'o{t} is True' for t in targets) or 'False'}")
        emit(f"s{i} = h is True and q")
        emit(f"if (V[{r}] is True) != s{i}: errors.append(_disagree({r}, V[{r}] is True, s{i}))")
        into = f"u{i}" if encoded else f"unchecked_of[{r}]"
        if encoded:
            emit(f"u{i} = None")
        else:
            emit(f"decided[{r}] = s{i}; missing_of[{r}] = []")
        emit(f"if h is None and q: {into} = _unchecked({form}, state, recorded, values, derived)")
        if not encoded and targets:
            emit(f"if s{i}:")
            for t in targets:
                emit(f"if o{t} is True: notes.setdefault({rules[t].id!r}, []).append({r})", 2)
    emit("advice = []; caveats = []; drafts = []; undetermined = []")
    for i, rule in enumerate(rules):  # the summary, in rule order, as Evaluation._assemble lists it
        r = repr(rule.id)
        listed = "caveats" if rule.kind == "caveat" else "advice"
        draft = f"; drafts.append({r})" if rule.status != "active" else ""
        emit(f"if s{i} is True: {listed}.append({r}){draft}")
        if rule.kind != "caveat":
            emit(f"elif s{i} is None: undetermined.append({r})")
    out_of_scope = [f"s{i} is True" for i, r in enumerate(rules) if r.kind == "out_of_scope"]
    emit(f"out_of_scope = {' or '.join(out_of_scope) or 'False'}")
    outcomes = "".join(f"_O[s{i}], " for i in range(len(rules)))
    if entries is not None:
        _entries(src, rules, plain, entries)
        tail = "p"  # the pieces, joined once with the whole line (compiled.joined_line)
    elif standard is not None:
        _standard_entries(src, rules, plain, standard)
        tail = "(R, D)"
    elif says is not None:  # a minimal result's says (fired rules, in rule order) and missing (undetermined)
        emit("S = {}")
        for i, rule in enumerate(rules):
            emit(f"if s{i} is True: S[{rule.id!r}] = {const(says[rule.id])}")
        emit("M = {}")
        for i, rule in enumerate(rules):
            if rule.kind != "caveat":
                emit(f"if s{i} is None: M[{rule.id!r}] = m{i}")
        tail = "(S, M)"
    else:
        tail = "decided, missing_of, without_of, unchecked_of, notes"
    emit(f"return {tail}, advice, caveats, drafts, undetermined, out_of_scope, ({outcomes})")
    code = "def settle(T, C, V, state, recorded, values, derived, errors):\n" + "\n".join(src.lines) + "\n"
    return code, {**src.constants, "_O": OUTCOME, "_OJ": OUTCOME_JSON, "_dumps": orjson.dumps, "_listed": _listed}


def _entries(src: Source, rules: list[Any], plain: dict[str, int], entries: Entries) -> None:
    """The full rule entries as one JSON fragment into `p`: what the knowledge base says encoded
    at load, each derived value encoded once however many rules list it, the patient's parts
    encoded between; the bytes orjson writes for the reference's dicts. The constant JSON between
    the patient's parts is one constant wherever nothing conditional separates them."""
    emit, const = src.emit, src.const
    lists: list[str] = []
    for n, name in enumerate(entries.listed):
        # remembered per derived value, by the DerivedValue itself (value, missing inputs and
        # account: all its entry depends on) and, unless it is boolean, the value's type (1 == 1.0
        # == True, which orjson writes differently); a float is never remembered (rarely repeats).
        memo = const({}, "DM")
        emit(f"dv = derived[{name!r}]")
        if name in entries.booleans:
            emit(f"j{n} = {memo}.get(dv)")
            emit(f"if j{n} is None: j{n} = _derived_json(dv, {memo}, dv)")
        else:
            emit("t = type(dv[1])")
            emit(f"if t is float: j{n} = _derived_json(dv, None, None)")
            emit("else:")
            emit(f"j{n} = {memo}.get((dv, t))", 2)
            emit(f"if j{n} is None: j{n} = _derived_json(dv, {memo}, (dv, t))", 2)
    for names in entries.groups:
        parts = [f"j{entries.listed.index(name)}" for name in names]
        if len(parts) > 1:  # a list several rules share: joined once
            emit(f"L{len(lists)} = b','.join(({', '.join(parts)},))")
        lists.append(parts[0] if len(parts) == 1 else f"L{len(lists)}" if parts else "b''")
    notes_of = _notes_of(rules, plain)
    emit("p = []")
    emit("e = p.extend")
    emit("a = p.append")
    outcome_missing = const({k: v + b',"missing":' for k, v in OUTCOME_JSON.items()})
    opening = b"["
    for i, (_, head, says, group, caveat, shown) in enumerate(entries.plan):
        missing = "b'[]'" if rules[i].kind == "caveat" else f"_dumps(m{i}) if m{i} else b'[]'"
        emit(
            f"e(({const(opening + head)}, {outcome_missing}[s{i}], {missing}, "
            f"b',\"conditions\":', *C[{i}], b',\"derived\":[', {lists[group]}))"
        )
        if rules[i].kind == "caveat":
            emit(f"a({const(b']' + says)})")
        else:
            emit(f"if w{i} is not None: e((b'],\"decided_without\":', _dumps(w{i}), {const(says)}))")
            emit(f"else: a({const(b']' + says)})")
        if caveat is not None:  # what it shows: one list encoded at once (the bytes of its dicts)
            emit(f"a({const(caveat)})")
            emit(f"a(_dumps([{', '.join(_shown_dict(item, const) for item in shown)}]))")
            emit(f"if u{i} is not None: e((b',\"unchecked\":', _dumps(u{i})))")
        if i in notes_of:  # the caveats that fired for it, in rule order, as notes under it
            emit(f"if o{i} is True:")
            emit("n = []", 2)
            for c in notes_of[i]:
                emit(f"if s{c}: n.append({const(entries.notes[rules[c].id])})", 2)
            emit("if n: e((b',\"caveats\":[', b','.join(n), b']'))", 2)
        opening = b"},"
    emit("a(b'}]')" if entries.plan else "a(b'[]')")


def _notes_of(rules: list[Any], plain: dict[str, int]) -> dict[int, list[int]]:
    """A fired rule's index: the indexes of the caveats that may qualify it, in rule order."""
    notes_of: dict[int, list[int]] = {}
    for c, rule in enumerate(rules):
        if rule.kind == "caveat":
            for q in rule.qualifies:
                if q in plain:
                    notes_of.setdefault(plain[q], []).append(c)
    return notes_of


def _standard_entries(src: Source, rules: list[Any], plain: dict[str, int], standard: Standard) -> None:
    """The standard rule entries into `R` and the standard derived values into `D`, as
    `CompiledEvaluator._evaluate` builds them from the dicts by rule id (and `Evaluation._shown`
    the values a caveat shows): the same keys in the same order, fresh lists and dicts."""
    emit = src.emit
    notes_of = _notes_of(rules, plain)
    emit("R = []")
    for i, rule in enumerate(rules):
        r = repr(rule.id)
        if rule.kind == "caveat":
            emit(f"e = {{'id': {r}, 'outcome': _O[s{i}], 'missing': [], 'conditions': C[{i}]}}")
            shown = []
            for kind, name, unit, unit_from in standard.shows[rule.id]:
                if kind == "derived":
                    shown.append(f"{{'derived': {name!r}, 'value': derived[{name!r}].value, 'unit': {unit!r}}}")
                    continue
                value = f"values.get({name!r})" if name in standard.scalars else f"_listed(values.get({name!r}))"
                told = f"values.get({unit_from!r})" if unit_from is not None else repr(unit)
                shown.append(f"{{'field': {name!r}, 'value': {value}, 'unit': {told}}}")
            emit(f"e['shown'] = [{', '.join(shown)}]")
            emit(f"if u{i} is not None: e['unchecked'] = u{i}")
        else:
            emit(f"e = {{'id': {r}, 'outcome': _O[s{i}], 'missing': m{i}}}")
            emit(f"if w{i} is not None: e['decided_without'] = w{i}")
            emit(f"e['conditions'] = C[{i}]")
            if i in notes_of:  # the caveats that fired for it, in rule order
                emit(f"if o{i} is True:")
                emit("n = []", 2)
                for c in notes_of[i]:
                    emit(f"if s{c}: n.append({rules[c].id!r})", 2)
                emit("if n: e['caveats'] = n", 2)
        emit("R.append(e)")
    listed = ", ".join(
        f"{{'name': {n!r}, 'value': derived[{n!r}].value, 'how': derived[{n!r}].how, "
        f"'missing': list(derived[{n!r}].missing)}}"
        for n in standard.listed
    )
    emit(f"D = [{listed}]")


def _listed(value: Any) -> Any:
    """A shown field's value as `Evaluation._shown` gives it: a list copied."""
    return list(value) if isinstance(value, list) else value


def _shown_dict(item: Shown, const: Any) -> str:
    """A shown value as the dict `Evaluation._shown` makes (for encoding only): its kind and
    name, value, and unit (constant, from the JSON the plan holds, or read from its field)."""
    before, is_derived, name, unit = item
    kind = "derived" if is_derived else "field"
    value = f"derived[{name!r}].value" if is_derived else f"values.get({name!r})"
    if isinstance(unit, bytes):  # b',"unit":' + the unit's JSON + b'}'
        told = const(orjson.loads(unit[len(b',"unit":') : -1]))
    else:
        told = f"values.get({unit!r})"
    return f"{{{kind!r}: {name!r}, 'value': {value}, 'unit': {told}}}"
