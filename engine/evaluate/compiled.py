"""The compiled evaluator: each rule's and derived value's condition, with its explanation, as
straight-line Python generated when the knowledge base is loaded.

The interpreted evaluator (engine/evaluate/kleene.py, driven by evaluation.py) walks condition
trees for every patient: a call, an `Outcome` and a few lists per comparison, the same
comparisons met again in other rules, explanation texts built whether or not the reader wants
them. Here the same model is written once, per detail level, as one Python function per knowledge
base: every distinct comparison judged once in a local variable, Kleene's `all`/`any`/`not`
spelled out as `if`s on those variables, the missing inputs gathered only for what is
undetermined, wording and thresholds as constants, and only the parts of the result the detail
level keeps. durable-rules still decides every outcome (the generated code asserts the same flat
fact through `Evaluation.decide`) and the cross-check with the Python truth stays.

The interpreted evaluator stays the reference: tests/test_compiled.py compares both, byte for
byte, at every detail level, on generated records (hypothesis), the cohort, every scenario and
every example. Records the generated accept-only check does not take (invalid ones, and the
rare valid record it leaves to the detailed validator) go through the reference path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from functools import partial
from typing import Any

import orjson

from fsgs_kb.engine.compile.durable import EngineError
from fsgs_kb.engine.compile.exact_form import Form, Node, Presence
from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.evaluate.codegen import NotCompiled, compiled_code
from fsgs_kb.engine.evaluate.detail import reduce
from fsgs_kb.engine.evaluate.evaluation import OUTCOME, SCOPE_DERIVED, Evaluation, error_record
from fsgs_kb.engine.evaluate.exact import NARROWED, Recorded, State, constraint_values, relevant_vars, value_at
from fsgs_kb.engine.evaluate.exact import decide as exact_decide
from fsgs_kb.engine.evaluate.facts import fact_function
from fsgs_kb.engine.evaluate.kleene import TRUTH_WORD, DerivedValue, copy_policy, exact, fmt, is_flat
from fsgs_kb.engine.evaluate.output import dumps_bytes
from fsgs_kb.engine.evaluate.overflow import DerivedOverflow
from fsgs_kb.engine.evaluate.patient import UNKNOWN_ENUM
from fsgs_kb.engine.evaluate.settle import Entries, EntryPlan, Shown, Source, Standard, settle_source
from fsgs_kb.engine.intervals import exact_number
from fsgs_kb.engine.load.conditions import walk
from fsgs_kb.engine.load.fingerprint import decision_id, input_sha256
from fsgs_kb.engine.load.templating import float_text
from fsgs_kb.engine.model import AllOf, Compare, Condition, Const, Expression, Not, Op, Ref

NUMERIC = ("lt", "le", "gt", "ge")
CACHE_LIMIT = 1 << 16
MEMO_LIMIT = 4096  # entries remembered per comparison (generated code)
_MEMOABLE = frozenset((str, int, bool, type(None)))  # value types that may key a memo
_UNSEEN = object()
EMPTY = "''"  # the empty string, as generated code writes it
PY_OP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


class _Plan:
    """One distinct comparison in the generated code: its variables and what is emitted."""

    def __init__(self, index: int, key: tuple[Any, ...], leaf: Compare) -> None:
        self.index = index
        self.key = key
        self.leaf = leaf
        self.actual = f"a{index}"
        self.result = f"r{index}"
        self.missing = f"m{index}"
        self.unit = f"u{index}"
        self.text = f"t{index}"
        self.entry = f"e{index}"
        self.judged = False
        self.worded = False
        self.entered = False


class _Generator:
    """Writes `run(p, decision)` for one detail level of one knowledge base."""

    def __init__(self, evaluation: Evaluation, detail: str, encoded: bool = False) -> None:
        self.ev = evaluation
        self.model = evaluation.model
        self.detail = detail
        self.encoded = encoded and detail == "full"  # conditions as JSON fragments (see CompiledEvaluator.run_json)
        # A minimal result shows no derived value's account and no condition's text, except
        # in_scope's account (the scope's reason): only the derived values that account reads
        # are written with theirs (`told`); the others' are '' (read by nothing).
        # (An account reads values, never another account: in_scope's is all a minimal result reads.)
        self.told = set(self.model.derived) if detail != "minimal" else {SCOPE_DERIVED}
        self.carried: list[_Plan] = []
        self.node_truths: dict[int, str] = {}  # id of an all/any/not just emitted → its truth's variable
        self.src = Source()
        self.plans: dict[tuple[Any, ...], _Plan] = {}
        self.field_vars = {info.path: f"f_{i}" for i, info in enumerate(evaluation.fields)}
        self.derived_vars = {name: f"d{i}" for i, name in enumerate(self.model.derived_order)}

    # ---- comparisons --------------------------------------------------------------------------
    def plan(self, leaf: Compare) -> _Plan:
        reference = self.ev.evaluator.leaf_plan(leaf)
        plan = self.plans.get(reference.key)
        if plan is None:
            plan = self.plans[reference.key] = _Plan(len(self.plans), reference.key, leaf)
        return plan

    def judge(self, leaf: Compare, indent: int = 1) -> _Plan:
        """Emit (once) the comparison's actual value, unit, truth and missing inputs."""
        plan = self.plan(leaf)
        if plan.judged:
            return plan
        plan.judged = True
        ref = self.ev.evaluator.leaf_plan(leaf)
        a, r, m, u = plan.actual, plan.result, plan.missing, plan.unit
        emit = self.src.emit
        if ref.derived:
            d = self.derived_vars[leaf.name]
            emit(f"{a} = {d}v; {m} = {d}m; {u} = {ref.unit!r}", indent)
        else:
            f = self.field_vars[leaf.name]
            pointer = self.src.const((ref.missing_pointer,))
            emit(f"{a} = {f}; {m} = {pointer} if {a} is None else ()", indent)
            if ref.unit_from:
                emit(f"{u} = str({self.field_vars.get(ref.unit_from, 'None')} or '')", indent)
            else:
                emit(f"{u} = {ref.unit!r}", indent)
        op = leaf.op
        if op in ("present", "absent"):
            emit(f"{r} = {a} is {'not ' if op == 'present' else ''}None; {m} = ()", indent)
            return plan
        threshold = self.src.const(ref.threshold)
        if op in PY_OP:
            test = f"bool({a} {PY_OP[op]} {threshold})"
        elif op == "in":
            test = f"{a} in {threshold}"
        elif op == "includes_any":
            test = f"bool(set({a}) & set({threshold}))"
        else:
            raise ValueError(op)
        emit(f"{r} = None if {a} is None else {test}", indent)
        return plan

    def fmt(self, leaf: Compare, var: str) -> str:
        """`fmt(value)` for a compared value, specialised where its type is known."""
        if leaf.source == "field":
            kind = self.ev.evaluator.fields[leaf.name].type
            if kind == "number":
                return _fmtn_inline(var)
            if kind == "string":
                return var
            if kind == "boolean":
                return f"('true' if {var} else 'false')"
        elif self.model.derived[leaf.name].is_boolean:
            return f"('true' if {var} else 'false')"
        return f"_fmt({var})"

    def word(self, plan: _Plan, indent: int = 1) -> None:
        """Emit (once) the comparison's text, as `_LeafPlan.explain` writes it."""
        if plan.worded:
            return
        plan.worded = True
        ref = self.ev.evaluator.leaf_plan(plan.leaf)
        a, r, u, t = plan.actual, plan.result, plan.unit, plan.text
        name = plan.leaf.name
        emit = self.src.emit
        if plan.leaf.op in ("present", "absent"):
            emit(f"{t} = {name + ' ' + ref.symbol + ': '!r} + ('true' if {r} else 'false')", indent)
            return
        if ref.derived or not ref.unit_from:  # the unit is known at load: the text's constant
            # parts are joined here, once, rather than by five concatenations per comparison
            sx = f" {ref.unit}" if ref.unit else ""
            unknown = self.src.const(f"{name} is unknown (needs {ref.need}{sx})")
            yes = self.src.const(f"{sx} (needs {ref.need}{sx}): true")
            no = self.src.const(f"{sx} (needs {ref.need}{sx}): false")
            emit(f"if {a} is None: {t} = {unknown}", indent)
            emit(f"else: {t} = {name + ' = '!r} + {self.fmt(plan.leaf, a)} + ({yes} if {r} else {no})", indent)
            return
        need = self.src.const(ref.need)
        emit(f"_sx = (' ' + {u}) if {u} else ''", indent)
        emit(f"if {a} is None: {t} = {name + ' is unknown (needs '!r} + {need} + _sx + ')'", indent)
        emit(
            f"else: {t} = {name + ' = '!r} + {self.fmt(plan.leaf, a)} + _sx + ' (needs ' + {need} + _sx + '): ' + "
            f"('true' if {r} else 'false')",
            indent,
        )

    def enter(self, plan: _Plan, indent: int = 1) -> None:
        """Emit (once) the comparison's full explanation entry, as `_LeafPlan.explain` builds it."""
        if plan.entered:
            return
        plan.entered = True
        ref = self.ev.evaluator.leaf_plan(plan.leaf)
        a, r, u, m, t, e = plan.actual, plan.result, plan.unit, plan.missing, plan.text, plan.entry
        emit = self.src.emit
        if self.encoded:  # only what the patient decides; the static part is in each pointer's prefix
            # The text and the entry are functions of (actual, unit, missing) alone; for values
            # that repeat across patients they are built once and remembered, bounded. The key
            # holds the value's type, and a float by its exact bits (float.hex): -0.0 == 0.0 and
            # 1.0 == 1 would otherwise share an entry that orjson writes differently.
            # A unit known at load is left out of the key, and so are a field's missing inputs
            # (its own pointer exactly when the value is absent): fewer parts to hash per comparison.
            memo = self.src.const({}, "MEMO")
            unit_varies = bool(ref.unit_from) and not ref.derived
            rest = "".join(f", {part}" for part, varies in ((u, unit_varies), (m, ref.derived)) if varies)
            # Only the entry's JSON is remembered: its text is read nowhere after (the derived
            # values' accounts, which read texts, are written before, in `derive`).
            key = self.memo_key(plan.leaf, a, rest)
            if key is not None:  # the value's type is known: a key without it (see memo_key)
                emit(f"_k = {key}; {e}b = {memo}.get(_k)", indent)
            else:
                emit(f"if type({a}) in _MEMOABLE: _k = ({a}{rest}, type({a})); {e}b = {memo}.get(_k)", indent)
                emit(f"elif type({a}) is float: _k = ({a}.hex(){rest}, float); {e}b = {memo}.get(_k)", indent)
                emit(f"else: _k = {e}b = None", indent)
            emit(f"if {e}b is None:", indent)
            self.word(plan, indent + 1)
            emit(f"{e} = {{'actual': {a}, 'unit': {u} or None, 'result': {r}, 'text': {t}}}", indent + 1)
            self.dynamic_tail(plan, ref, indent + 1)
            emit(f"{e}b = _dumps({e})[1:]", indent + 1)
            store = "" if key is not None else "_k is not None and "  # a typed key may be None itself
            emit(f"if {store}len({memo}) < MEMO_LIMIT: {memo}[_k] = {e}b", indent + 1)
            return
        self.word(plan, indent)
        emit(f"{e} = dict({self.src.const(ref.static)})", indent)
        if "provenance" in ref.static:
            emit(f"{e}['provenance'] = dict({e}['provenance'])", indent)
        if isinstance(ref.threshold, list):
            emit(f"{e}['threshold'] = list({e}['threshold'])", indent)
        if ref.policy:
            emit(f"{e}['policy'] = _copy_policy({self.src.const(ref.policy)})", indent)
        emit(f"{e}['actual'] = {a}; {e}['unit'] = {u} or None; {e}['result'] = {r}; {e}['text'] = {t}", indent)
        self.dynamic_tail(plan, ref, indent)

    def memo_key(self, leaf: Compare, a: str, rest: str) -> str | None:
        """A remembered entry's key where the compared value's type is known from the schema (the
        generated code reads only records the accept-only check took, as `fmt` here assumes):
        a string or boolean field's value, or None, as it is (no other type shares the dict); a
        number's int as it is and a float by its bits (a str: never equal to an int or None); an
        enum list as the tuple of its items. None: the type varies (a derived value other than a
        boolean), keyed with its type as `enter` writes."""
        if leaf.source == "field":
            info = self.ev.evaluator.fields[leaf.name]
            if info.type in ("string", "boolean"):
                value = a
            elif info.type == "number":
                value = f"({a}.hex() if type({a}) is float else {a})"
            elif info.type == "array" and info.enum:
                value = f"(tuple({a}) if type({a}) is list else {a})"
            else:
                return None
        elif self.model.derived[leaf.name].is_boolean:
            value = a
        else:
            return None
        return f"({value}{rest})" if rest else value

    def dynamic_tail(self, plan: _Plan, ref: Any, indent: int) -> None:
        """The entry's missing inputs, or its distance and margin, as `_LeafPlan.explain` adds them."""
        if plan.leaf.op in ("present", "absent"):
            return
        a, m, e = plan.actual, plan.missing, plan.entry
        emit = self.src.emit
        emit(f"if {a} is None: {e}['missing'] = list({m})", indent)
        if ref.numeric:
            threshold = self.src.const(ref.threshold)
            emit(
                f"else: {e}['distance'] = {_fmtn_inline(a)} + ' vs ' + {self.src.const(ref.need)}; "
                f"{e}['margin'] = float(f'{{{a} - {threshold}:.12g}}')",
                indent,
            )

    # ---- Kleene logic ------------------------------------------------------------------------------
    def condition(self, cond: Condition, indent: int = 1, missing: bool = True) -> tuple[str, str]:
        """Emit a condition's truth; (truth variable, missing-inputs variable). `missing=False`:
        nobody reads the compound conditions' missing inputs (a rule's, in `rules`: the exact
        semantics say what a rule misses), so they are not gathered (the variable is `()`)."""
        if isinstance(cond, Compare):
            plan = self.judge(cond, indent)
            return plan.result, plan.missing
        if isinstance(cond, Not):
            r, m = self.condition(cond.item, indent, missing)
            out = self.node_truths[id(cond)] = self.src.var("n")
            self.src.emit(f"{out} = None if {r} is None else not {r}", indent)
            return out, m
        parts = [self.condition(item, indent, missing) for item in cond.items]
        out = self.node_truths[id(cond)] = self.src.var("c")
        truths = [r for r, _ in parts]
        emit = self.src.emit
        if isinstance(cond, AllOf):
            emit(f"if {' or '.join(f'{t} is False' for t in truths)}: {out} = False", indent)
            emit(f"elif {' and '.join(f'{t} is True' for t in truths)}: {out} = True", indent)
        else:
            emit(f"if {' or '.join(f'{t} is True' for t in truths)}: {out} = True", indent)
            emit(f"elif {' and '.join(f'{t} is False' for t in truths)}: {out} = False", indent)
        emit(f"else: {out} = None", indent)
        if not missing:
            return out, "()"
        gathered = self.src.var("cm")
        emit(f"{gathered} = []", indent)
        emit(f"if {out} is None:", indent)
        for r, m in parts:
            emit(f"if {r} is None: _union({gathered}, {m})", indent + 1)
        return out, gathered

    def group_how(
        self, cond: Condition, leaves: Iterator[tuple[str, _Plan]], into: list[str], top: bool = True
    ) -> None:
        """`kleene.how_of` of a condition with groups, written out: the expressions of its text's
        pieces appended to `into`, to be joined once (a chain of `+` over thousands of pieces
        is more than CPython's compiler recurses through). Every group's truth is already a
        variable of the generated code (`condition` just wrote them, `node_truths`); calling
        how_of walked the condition's tree for every record (~5 % of a full-detail record)."""
        if isinstance(cond, Compare):
            into.append(next(leaves)[1].text)
            return
        if not top:
            into.append("'['")
        if isinstance(cond, Not):
            into.append("'not '")
            self.group_how(cond.item, leaves, into, False)
        else:
            joint = repr(" and " if isinstance(cond, AllOf) else " or ")
            for n, item in enumerate(cond.items):
                if n:
                    into.append(joint)
                self.group_how(item, leaves, into, False)
        if not top:
            into.append(f"']: ' + _TRUTH_WORD[{self.node_truths[id(cond)]}]")

    def leaves(self, cond: Condition) -> list[tuple[str, _Plan]]:
        return [(leaf.pointer, self.plan(leaf)) for leaf in walk(cond)]

    # ---- derived values ------------------------------------------------------------------------------
    def derived(self, name: str) -> None:
        """Emit d{i}v (value), d{i}m (missing, a tuple) and d{i}h (how) of one derived value."""
        spec = self.model.derived[name]
        d = self.derived_vars[name]
        emit = self.src.emit
        if name not in self.told:
            self.untold(name)
            return
        if spec.condition is not None:
            r, m = self.condition(spec.condition)
            texts = []
            for _, plan in self.leaves(spec.condition):
                self.word(plan)
                texts.append(f"({plan.text}, {plan.result})")
            emit(f"{d}v = {r}; {d}m = tuple({m})")
            if is_flat(spec.condition):
                emit(f"{d}h = ' and '.join([_t for _t, _r in ({', '.join(texts)},) if _r is not None]) or 'unknown'")
            else:  # groups keep their brackets and truths (kleene.how_of, the reference's own wording)
                pieces: list[str] = []
                self.group_how(spec.condition, iter(self.leaves(spec.condition)), pieces)
                emit(f"{d}h = ''.join(({', '.join(pieces)},))")
            return
        if spec.value is not None:
            self.expression_value(spec.name, spec.value, "''", 1, None)
            return
        for when, _ in spec.cases:  # judged and worded up front: later code may use them, whichever case applies
            for leaf in walk(when):
                self.word(self.judge(leaf))
        emit(f"{d}v = None; {d}m = (); {d}h = 'no case applies'")
        # every case's truth up front too, then one flat run of cases, each skipped once one has
        # decided (`{d}c`): one nested `else:` a case met the tokenizer's 100 levels of
        # indentation at ~100 cases, an `if … elif …` chain (nested in the parser and compiler)
        # their recursion limits at ~1,000 — an error for every record of a valid knowledge base
        truths = [self.condition(when) for when, _ in spec.cases]
        emit(f"{d}c = True")
        for number, ((when, expr), (r, m)) in enumerate(zip(spec.cases, truths, strict=True)):
            emit(f"if {d}c:")
            emit(f"if {r} is True:", 2)
            texts = []
            for _, plan in self.leaves(when):
                self.word(plan, 3)
                texts.append(plan.text)
            reason = f"' (because ' + '; '.join(({', '.join(texts)},)) + ')'"
            self.expression_value(spec.name, expr, reason, 3, number)
            emit(f"{d}c = False", 3)
            emit(f"elif {r} is None:", 2)
            emit(f"{d}m = tuple(_dedupe({m})); {d}h = 'unknown: needs ' + ', '.join({d}m); {d}c = False", 3)

    def untold(self, name: str) -> None:
        """A derived value whose account nobody reads (see `told`): its value and missing inputs
        as `derived` writes them, its account ''."""
        spec = self.model.derived[name]
        d = self.derived_vars[name]
        emit = self.src.emit
        if spec.condition is not None:
            r, m = self.condition(spec.condition)
            emit(f"{d}v = {r}; {d}m = tuple({m}); {d}h = ''")
            return
        if spec.value is not None:
            emit(f"{d}h = ''")
            self.untold_value(name, spec.value, 1, None)
            return
        for when, _ in spec.cases:  # judged up front, as `derived` does
            for leaf in walk(when):
                self.judge(leaf)
        emit(f"{d}v = None; {d}m = (); {d}h = ''")
        truths = [self.condition(when) for when, _ in spec.cases]  # one flat run, as `derived` writes it
        emit(f"{d}c = True")
        for number, ((_, expr), (r, m)) in enumerate(zip(spec.cases, truths, strict=True)):
            emit(f"if {d}c:")
            emit(f"if {r} is True:", 2)
            self.untold_value(name, expr, 3, number)
            emit(f"{d}c = False", 3)
            emit(f"elif {r} is None:", 2)
            emit(f"{d}m = tuple(_dedupe({m})); {d}c = False", 3)

    def untold_value(self, name: str, expr: Expression, indent: int, case: int | None) -> None:
        """`expression_value` without the account."""
        d = self.derived_vars[name]
        value, _, missing = self.expression(expr, indent, worded=False)
        emit = self.src.emit
        emit(f"if {value} is None: {d}v = None; {d}m = tuple({missing})", indent)
        made = f"_qplain({value}, {name!r}, {case!r})"  # DerivedOverflow beyond float range, naming the value
        emit(f"else: {d}v = {made} if type({value}) is tuple else {value}; {d}m = ()", indent)

    def expression_value(self, name: str, expr: Expression, reason: str, indent: int, case: int | None) -> None:
        """As `Evaluator._expression_value`: d{i}v, d{i}m, d{i}h from an expression (case number `case`)."""
        spec = self.model.derived[name]
        d = self.derived_vars[name]
        value, text, missing = self.expression(expr, indent)
        emit = self.src.emit
        emit(
            f"if {value} is None: {d}v = None; {d}m = tuple({missing}); {d}h = 'unknown: needs ' + ', '.join({d}m)",
            indent,
        )
        emit("else:", indent)
        made = f"_qplain({value}, {name!r}, {case!r})"  # DerivedOverflow beyond float range, naming the value
        emit(f"{d}v = {made} if type({value}) is tuple else {value}; {d}m = ()", indent + 1)
        if isinstance(expr, Ref):
            emit(f"{d}h = {text} + {reason}", indent + 1)
        else:
            unit = spec.unit
            number = _fmtn_inline(f"{d}v")
            emit(
                f"{d}h = (({text} + ' = ' + {number} + ' ' + {unit!r}).rstrip() if type({value}) is tuple "
                f"else {text}) + {reason}",
                indent + 1,
            )

    def expression(self, expr: Expression, indent: int, worded: bool = True) -> tuple[str, str, str]:
        """Emit an expression as `Evaluator.expression` computes it; (value, text, missing)
        variables. `worded=False`: without its text (the text is then '')."""
        src = self.src
        value, text, missing = src.var("x"), src.var("xt"), src.var("xm")
        emit = src.emit

        def say(words: str) -> str:  # the statement setting the text, when it is wanted
            return f"{text} = {words}; " if worded else ""

        if isinstance(expr, Const):
            emit(f"{value} = {src.const(expr.value)}; {say(src.const(fmt(expr.value)))}{missing} = ()", indent)
            return value, text if worded else EMPTY, missing
        if isinstance(expr, Ref):
            if expr.source == "param":
                param = self.model.parameters[expr.name]
                emit(f"{value} = {src.const(_pair(exact(param.value)))}", indent)
                emit(f"{say(src.const(f'{fmt(param.value)} {param.unit}'))}{missing} = ()", indent)
            elif expr.source == "derived":
                d = self.derived_vars[expr.name]
                unit = self.model.derived[expr.name].unit
                words = f"_fmt({d}v) + {' ' + unit!r}"
                emit(f"{value} = _qnumber({d}v); {say(words)}{missing} = {d}m", indent)
            else:
                info = self.ev.evaluator.fields[expr.name]
                f = self.field_vars[expr.name]
                if info.unit_from:
                    sibling = info.path.rsplit(".", 1)[0] + "." + info.unit_from
                    unit = f"str({self.field_vars.get(sibling, 'None')} or '')"  # a unit no rule reads: ''"
                else:
                    unit = repr("" if info.unit in (None, "none") else str(info.unit))
                pointer = src.const(info.missing_pointer)
                emit(f"if {f} is None: {value} = None; {say(EMPTY)}{missing} = ({pointer},)", indent)
                words = f"({_fmtn_inline(f)} + ' ' + {unit}).rstrip()"
                emit(f"else: {value} = _q({f}); {say(words)}{missing} = ()", indent)
            return value, text if worded else EMPTY, missing
        assert isinstance(expr, Op)
        (va, ta, ma), (vb, tb, mb) = (self.expression(arg, indent, worded) for arg in expr.args)
        emit(f"{missing} = {ma} + {mb}", indent)
        emit(f"if {missing} or {va} is None or {vb} is None: {value} = None; {say(EMPTY)}", indent)
        emit("else:", indent)
        emit(f"_a = _qexact({va}); _b = _qexact({vb})", indent + 1)
        if expr.name == "divide":
            words = f"{ta} + ' ÷ ' + {tb}"
            emit(f"{value} = _qdiv(_a, _b); {say(words)}{missing} = ()", indent + 1)
        elif expr.name == "multiply":
            words = f"{ta} + ' × ' + {tb}"
            emit(f"{value} = (_a[0] * _b[0], _a[1] * _b[1]); {say(words)}{missing} = ()", indent + 1)
        elif expr.name == "subtract":
            words = f"{ta} + ' − ' + {tb}"
            emit(f"{value} = (_a[0] * _b[1] - _b[0] * _a[1], _a[1] * _b[1]); {say(words)}{missing} = ()", indent + 1)
        else:
            words = f"'(' + {tb} + ' − ' + {ta} + ') ÷ ' + {ta} + ' × 100'"
            emit(f"{value} = _qpct(_a, _b); {say(words)}{missing} = ()", indent + 1)
        return value, text if worded else EMPTY, missing

    # ---- the whole function --------------------------------------------------------------------------
    def generate(self) -> str:
        """`evaluate(p)`: the Kleene layer in two phases, with the exact refinement of the boolean
        derived values (Evaluation._evaluate) in between, as in the reference, where comparisons
        judged while deriving keep their first judgment: it derives, calls
        `_refine(p, values, derived)` (the record's possible cells, its `recorded` function and
        whether a boolean derived value was refined, in `derived`), reads the refined values back
        and judges every rule. It gives (the field values, the dict of DerivedValue by name, the
        possible cells, `recorded`, each rule's Kleene truth, each rule's conditions at this detail
        (None at minimal detail)).
        One function: the values, derived values and comparisons of the first phase stay locals
        of the second (they were returned as tuples and unpacked again)."""
        emit = self.src.emit
        ev = self.ev
        objects: dict[tuple[str, ...], str] = {(): "p"}
        for info in ev.fields:  # read from a record the accept-only check took: every object is a dict
            for depth in range(1, len(info.keys)):
                prefix = info.keys[:depth]
                if prefix not in objects:
                    objects[prefix] = self.src.var("o")
                    emit(f"{objects[prefix]} = {objects[prefix[:-1]]}.get({prefix[-1]!r}) or _EMPTY")
            f = self.field_vars[info.path]
            emit(f"{f} = {objects[info.keys[:-1]]}.get({info.keys[-1]!r})")
            if info.item_key is not None:  # a list of objects: one key of every item, as field_values reads it
                key = info.item_key
                emit(
                    f"if type({f}) is list: {f} = [_i[{key!r}] for _i in {f} if isinstance(_i, dict) and {key!r} in _i]"
                )
            elif info.type == "array":  # a result shows it as a condition's actual: never the record's own list
                emit(f"if type({f}) is list: {f} = {f}[:]")
            if info.enum:
                emit(f"if {f} == {UNKNOWN_ENUM!r}: {f} = None")
        for name in self.model.derived_order:
            self.derived(name)
        values = ", ".join(f"{info.path!r}: {self.field_vars[info.path]}" for info in ev.fields)
        # the comparisons judged here keep their judgment (and their texts, where an account
        # needed them: all of them but at minimal detail) in `rules`, which words the others
        # where it needs to
        self.carried = [plan for plan in self.plans.values() if plan.judged]
        # the derived values also as the dict of DerivedValue the later steps read, built here
        # rather than by a loop over the tuple (tuple.__new__ directly: no Python-level __new__)
        named = ", ".join(
            f"{n!r}: _tuple_new(_DV, ({n!r}, {d}v, {self.model.derived[n].unit!r}, {d}m, {d}h))"
            for n, d in ((n, self.derived_vars[n]) for n in self.model.derived_order)
        )
        emit(f"values = {{{values}}}")
        emit(f"derived = {{{named}}}")
        emit("state, recorded, refined = _refine(p, values, derived)")
        booleans = [n for n in self.model.derived_order if self.model.derived[n].is_boolean]
        if booleans:
            emit(
                "if refined:  # the boolean derived values as refined (a DerivedValue: name, value, unit, missing, how)"
            )
            for n in booleans:
                d = self.derived_vars[n]
                emit(f"_x = derived[{n!r}]; {d}v = _x[1]; {d}m = _x[3]; {d}h = _x[4]", 2)
        # phase 2: every rule's Kleene truth and, by detail level, its conditions
        truths, conditions = [], []  # each rule's Kleene truth; its conditions at this detail
        for rule in ev.rules:
            r, _ = self.condition(rule.when, missing=False)
            truths.append(r)
            if self.detail == "full":
                for _, plan in self.leaves(rule.when):
                    self.enter(plan)
                leaves = self.leaves(rule.when)
                if self.encoded:  # the pieces, joined once with the whole line (CompiledEvaluator.run_json)
                    parts = ", ".join(
                        f"{self.prefix(ptr, plan, b',' if n else b'[')}, {plan.entry}b"
                        for n, (ptr, plan) in enumerate(leaves)
                    )
                    conditions.append(f"({parts}, b']')")
                    continue
                listed = ", ".join(f"{{'pointer': {ptr!r}, **{plan.entry}}}" for ptr, plan in leaves)
                conditions.append(f"[{listed}]")
            elif self.detail == "standard":
                conditions.append(f"[{', '.join(self.standard_conditions(rule))}]")
        told = f"({', '.join(conditions)},)" if conditions else "None"  # minimal: none
        emit(f"return values, derived, state, recorded, ({', '.join(truths)},), {told}")
        return "def evaluate(p):\n" + "\n".join(self.src.lines) + "\n"

    def prefix(self, pointer: str, plan: _Plan, before: bytes) -> str:
        """The constant start of a condition entry as JSON: `{"pointer":…,<static>,` (its policy
        notes included), to which the patient's part is appended; `before`: the list's `[` or
        the `,` after the previous entry, joined to it here, once."""
        ref = self.ev.evaluator.leaf_plan(plan.leaf)
        head = {"pointer": pointer, **ref.static}
        if ref.policy:
            head["policy"] = ref.policy
        return self.src.const(before + orjson.dumps(head)[:-1] + b",")

    def standard_conditions(self, rule: Any) -> list[str]:
        out = []
        for leaf in walk(rule.when):
            plan = self.judge(leaf)
            ref = self.ev.evaluator.leaf_plan(leaf)
            unit = f", 'unit': {plan.unit} or None" if ref.unit_from else ""
            out.append(f"{{{leaf.source!r}: {leaf.name!r}, 'actual': {plan.actual}, 'result': {plan.result}{unit}}}")
        return out


def _union(into: list[str], items: list[str]) -> None:
    for item in items:
        if item not in into:
            into.append(item)


def _dedupe(items: list[str]) -> list[str]:
    out: list[str] = []
    _union(out, items)
    return out


def _fmtn_inline(var: str) -> str:
    """`kleene.fmt` of a number (never a bool here: the schema says number), written out in the
    generated code rather than called for every number."""
    return f"(_float_text({var}) if type({var}) is float else str({var}))"


# ---- exact arithmetic for derived values -------------------------------------------------------
# The reference computes a derived value's expression on Fractions of the numbers as written
# (kleene.exact: 1.17 is 117/100) and gives the result as int or float (kleene.plain). The
# generated code does the same on (numerator, denominator) pairs of ints, denominator > 0, never
# reduced: a Fraction normalises by gcd at every step, which was most of the cost. Equal values
# give the same result: integral when the numerator divides, else numerator / denominator, which
# Python rounds correctly for any pair, as float(Fraction) does.
Pair = tuple[int, int]


def _pair(number: Fraction) -> Pair:
    return (number.numerator, number.denominator)


def _q(number: Any) -> Pair:
    """`kleene.exact` as a pair: the usual plain decimal without a string parse or a Fraction."""
    if type(number) is int:
        return (number, 1)
    if type(number) is float:
        whole, point, decimals = repr(number).partition(".")
        if point and decimals.isdigit():
            return (int(whole + decimals), 10 ** len(decimals))
    return _pair(exact_number(number))


def _qexact(value: Any) -> Pair:
    """An operand: a pair as it is, a constant of the expression as written."""
    return value if type(value) is tuple else _pair(exact(value))


def _qnumber(value: Any) -> Any:
    """A derived value read by another: a number as a pair, anything else as it is."""
    kind = type(value)
    if kind is int or kind is float:
        return _q(value)
    return _pair(exact(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _qdiv(a: Pair, b: Pair) -> Pair | None:
    if not b[0]:
        return None
    n, d = a[0] * b[1], a[1] * b[0]
    return (-n, -d) if d < 0 else (n, d)


def _qpct(a: Pair, b: Pair) -> Pair | None:
    """(b − a) ÷ a × 100; None for a = 0."""
    if not a[0]:
        return None
    n, d = (b[0] * a[1] - a[0] * b[1]) * a[1] * 100, b[1] * a[1] * a[0]
    return (-n, -d) if d < 0 else (n, d)


def _qplain(value: Pair, name: str, case: int | None) -> float | int:
    """`kleene.plain` of the pair's value, the value of derived value `name` (case number `case`),
    which `DerivedOverflow` names when no double holds it."""
    n, d = value
    if n % d == 0 and abs(n // d) < 2**53:
        return n // d
    try:
        return n / d  # correctly rounded, as float(Fraction(n, d)); OverflowError exactly when it is
    except OverflowError:
        raise DerivedOverflow(name, case) from None


class CompiledEvaluator:
    """The generated Kleene layer of one knowledge base, per detail level, and the steps of
    Evaluation._evaluate around it (exact refinement, durable-rules, caveats, assembly)."""

    def __init__(self, evaluation: Evaluation) -> None:
        self.evaluation = evaluation
        model = evaluation.model
        self.sources: dict[str, str] = {}
        self._functions: dict[str, Any] = {}
        self._functions_of: dict[tuple[str, bool], Any] = {}  # the same, by (detail, encoded)
        self.rules = evaluation.rules
        self.derived_names = list(model.derived_order)
        self.units = {n: model.derived[n].unit for n in self.derived_names}
        self._booleans = tuple(evaluation.booleans)
        self.standard_derived = [
            n for n in self.derived_names if any(n in evaluation.rule_derived[r.id] for r in self.rules)
        ]
        self._keyers: dict[int, Any] = {}  # by id(form): forms live with the KB
        self._lackers: dict[int, Any] = {}  # the same, for _lacking
        self._decided: dict[tuple[Any, ...], bool | None] = {}
        self._relevance: dict[tuple[Any, ...], list[int]] = {}
        self._asked_reads: dict[tuple[int, ...], tuple[str, ...]] = {}  # see _pointers
        self._asked: dict[tuple[Any, ...], list[str]] = {}
        self._scope_memo: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._scope_reads = _scope_reads(model, evaluation.scope_fields)
        self.rule_derived = {r.id: tuple(evaluation.rule_derived[r.id]) for r in self.rules}
        self._state = self._state_function()
        self._facts = [
            fact_function(evaluation, evaluation.durable, level) for level in range(len(evaluation.verdict_names))
        ]
        for level, made in enumerate(self._facts):
            if made is not None:
                self.sources[f"facts level {level}"] = made[1]
        whole = all(made is not None for made in self._facts)  # else some ruleset takes the flat fact
        self._fact_functions = [made[0] for made in self._facts if made is not None] if whole else None
        self._verdict_of: Any = None  # generated on first use (_verdict_function)
        self._decision_parts = _decision_parts(evaluation)  # for _decision_json
        self._verdict_keys = tuple((name, f"derived:{name}") for name in evaluation.compiled.boolean_derived)
        self._ids = tuple(r.id for r in self.rules)
        self.heads = {
            r.id: {"id": r.id, "version": r.version, "status": r.status, "kind": r.kind, "title": r.title}
            for r in self.rules
        }
        self._settled: dict[str, Any] = {}  # settle functions by mode, generated on first use
        self._plan_entries()

    def _plan_entries(self) -> None:
        """Per rule, in order, what the generated entries (engine/evaluate/settle.py) write
        around the patient's parts, in the key order of the dict the reference builds: its id;
        the constant JSON before its outcome (the head) and after its derived values (what the
        knowledge base says); the index of its list of derived values among the distinct lists;
        for a caveat, the constant JSON before what it shows and each value it shows (the JSON
        before the value, whether it is a derived value, its name, the unit as constant JSON or
        the field it is read from). `_notes`: each caveat's note as it is listed under the advice it qualifies."""
        evaluation = self.evaluation
        groups: list[tuple[str, ...]] = []
        for r in self.rules:
            if self.rule_derived[r.id] not in groups:
                groups.append(self.rule_derived[r.id])
        self._derived_groups = groups
        self._notes: dict[str, bytes] = {}
        self._entry_plan: list[EntryPlan] = []
        for r in self.rules:
            caveat: bytes | None = None
            shown: list[Shown] = []
            if r.kind == "caveat":
                extra = {"qualifies": list(r.qualifies), "provenance": evaluation.static[r.id]["provenance"]}
                caveat = b"," + orjson.dumps(extra)[1:-1] + b',"shown":'
                self._notes[r.id] = orjson.dumps(self._note(r.id))
                for kind, name, unit, unit_from in (evaluation._show_plan(k, n) for k, n in r.shows):  # noqa: SLF001
                    before = orjson.dumps({kind: name})[:-1] + b',"value":'
                    tail = b',"unit":' + orjson.dumps(unit) + b"}" if unit_from is None else unit_from
                    shown.append((before, kind == "derived", name, tail))
            self._entry_plan.append(
                (
                    r.id,
                    orjson.dumps(self.heads[r.id])[:-1] + b',"outcome":',
                    b"," + orjson.dumps(evaluation.static_part(r.id))[1:-1],
                    groups.index(self.rule_derived[r.id]),
                    caveat,
                    tuple(shown),
                )
            )

    def _state_function(self) -> Any:
        """`Domains.state` as straight-line code: a recorded variable's cell by inline comparisons
        with its cells' lower bounds (as `Var.cell_of` compares them) or its enum index; a missing
        one through the memoised domain methods, as there. Held to the reference's bytes by
        tests/test_compiled.py (the reference evaluator calls `Domains.state`)."""
        domains = self.evaluation.domains
        src = Source()
        emit = src.emit
        names = []
        emit("cv = None")
        for i, var in enumerate(self.evaluation.exact.vars):
            s = f"s{i}"
            names.append(s)
            v = src.const(var)
            if var.source == "field":
                emit(f"v = values.get({var.name!r})")
                if var.name in NARROWED:
                    emit(f"if v is None: {s} = _field_cells({v}, p, values)")
                else:  # the same possible cells for every record that lacks it
                    emit(f"if v is None: {s} = {src.const(domains.field_cells(var, {}, {}))}")
            else:
                emit(f"v = derived[{var.name!r}].value")
                emit("if v is None:")
                inputs = "".join(f"{self._input_at(keys, src)}, " for keys in domains.input_keys(var.name))
                narrowing = "".join(f"cv[{i}], " for i in domains.constraint_indices(var.name))
                if narrowing:
                    emit("if cv is None: cv = _constraint_values(p)", 2)
                emit(f"k = ({var.id!r}, ({inputs}), {narrowing})", 2)  # Domains._derived_cells' key
                emit(f"{s} = _memo.get(k) or _derived_cells({v}, values, p, k)", 2)
            if var.kind == "number" and len(var.lows) > 1:
                for j, (low, closed) in enumerate(var.lows[1:], start=1):
                    bound = src.const(low)
                    passes = f"v >= {bound}" if closed else f"v > {bound}"  # numbers: >= is > or ==
                    emit(f"elif not ({passes}): {s} = _ONE[{j - 1}]")
                emit(f"else: {s} = _ONE[{len(var.lows) - 1}]")
            elif var.kind in ("enum", "boolean"):
                emit(f"else: {s} = _ONE[{src.const(var.index)}[v]]")
            else:
                emit(f"else: {s} = ({v}.cell_of(v),)")
        emit(f"return ({', '.join(names)},)")
        namespace = {
            **src.constants,
            "_ONE": tuple((i,) for i in range(max((len(v.cells) for v in self.evaluation.exact.vars), default=0))),
            "_field_cells": domains.field_cells,  # the same memoised methods as Domains.state
            "_derived_cells": domains.derived_cells,
            "_memo": domains.memo,
            "_constraint_values": constraint_values,
            "_value_at": value_at,
        }
        code = "def state(p, values, derived):\n" + "\n".join(src.lines) + "\n"
        exec(compiled_code(code, "state"), namespace)  # noqa: S102
        self.sources["state"] = code
        return namespace["state"]

    def _input_at(self, keys: list[str], src: Source) -> str:
        """`value_at(p, keys)` in the generated state function: the field's value as `derive`
        read it where that is the same (an enum's `unknown` is None in both; a number or a
        boolean of a record the accept-only check took is never a string), else the call."""
        info = self.evaluation.evaluator.fields.get(".".join(keys))
        if (
            info is not None
            and info.item_key is None
            and (info.enum or info.type in ("number", "boolean"))
            and any(f.path == info.path for f in self.evaluation.fields)
        ):
            return f"values[{info.path!r}]"
        return f"_value_at(p, {src.const(keys)})"

    def functions(self, detail: str, encoded: bool = False) -> Any:
        """`evaluate` of one detail level (`_Generator.generate`), generated and compiled on first
        use (a command that evaluates nothing, or one level only, pays for nothing else).
        `encoded`: the full level's conditions as JSON fragments, for results serialized at once."""
        found = self._functions_of.get((detail, encoded))
        if found is not None:
            return found
        name = f"{detail}+json" if encoded and detail == "full" else detail
        found = self._functions.get(name)
        if found is None:
            generator = _Generator(self.evaluation, detail, encoded)
            source = generator.generate()
            namespace = self._namespace(generator.src.constants)
            exec(compiled_code(source, name), namespace)  # noqa: S102
            self.sources[name] = source
            found = self._functions[name] = namespace["evaluate"]
        self._functions_of[(detail, encoded)] = found
        return found

    def refusals(self, details: Iterable[str]) -> list[NotCompiled]:
        """Compile now, not on first use, every generated function a result at these detail
        levels can need (at full: as dicts and as JSON), and say which ones Python refuses; each
        is tried, whatever the others do (validate warns of each, engine/evaluate/fallback.py)."""
        makers: list[Callable[[], Any]] = []
        if self._fact_functions is not None:
            makers.append(partial(self._verdict_function, self._fact_functions))
        for detail in details:
            for encoded in (False, True) if detail == "full" else (False,):
                makers.append(partial(self.functions, detail, encoded))
                mode = "json" if encoded else detail if detail != "full" else ""  # as _evaluate's
                makers.append(partial(self._settle_function, mode))
        refused = []
        for make in makers:
            try:
                make()
            except NotCompiled as exc:
                refused.append(exc)
        return refused

    def _refine(
        self, patient: dict[str, Any], values: dict[str, Any], derived: dict[str, DerivedValue]
    ) -> tuple[State, Recorded, bool]:
        """Between the generated phases: the record's possible cells, its `recorded` function,
        and the exact semantics where Kleene's tables leave a boolean derived value unknown (as
        Evaluation._evaluate refines them), written into `derived`; whether any was refined."""
        ev = self.evaluation
        state = self._state(patient, values, derived)
        recorded = ev.recorded(values, derived)
        refined = False
        for name in self._booleans:
            old = derived[name]
            if old.value is not None:
                continue
            form = ev.exact.derived[name]
            value, missing = self._judge(form, state, recorded, values, derived)
            how = old.how
            if value is not None:
                inputs = ", ".join(self._without(form, values, derived))
                how = f"{how}; {'true' if value else 'false'} whatever the value of {inputs}"
            derived[name] = DerivedValue(name, value, old.unit, tuple(missing), how)
            refined = True
        return state, recorded, refined

    def _namespace(self, constants: dict[str, Any]) -> dict[str, Any]:
        return {
            **constants,
            "_EMPTY": {},
            "_refine": self._refine,
            "_DV": DerivedValue,
            "_tuple_new": tuple.__new__,
            "_q": _q,
            "_qexact": _qexact,
            "_qnumber": _qnumber,
            "_qdiv": _qdiv,
            "_qpct": _qpct,
            "_qplain": _qplain,
            "_fmt": fmt,
            "_TRUTH_WORD": TRUTH_WORD,
            "_float_text": float_text,
            "_union": _union,
            "_dedupe": _dedupe,
            "_copy_policy": copy_policy,
            "_dumps": orjson.dumps,
            "_MEMOABLE": _MEMOABLE,
            "MEMO_LIMIT": MEMO_LIMIT,
        }

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return self._ids  # a tuple made at load: read for every record batch writes

    def run(
        self, patient: dict[str, Any], timestamp: str | None, detail: str
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """(the result at `detail`, each rule's outcome in `rule_ids` order) of a record the
        accept-only check took; byte for byte what the reference evaluation gives, reduced to
        that detail."""
        input_sha = input_sha256(patient)
        evaluation = self.evaluation
        try:
            return self._evaluate(patient, detail, evaluation.decision_record(input_sha, timestamp))
        except NotCompiled:
            raise  # the knowledge base evaluates with the reference instead (KnowledgeBase)
        except DerivedOverflow as exc:  # while deriving: durable-rules was not asked
            problem = evaluation.overflow_error(patient, exc)
        except EngineError as exc:
            problem = KBError("eval.engine", f"durable-rules: {exc}")
        except Exception as exc:  # never let one record take the caller down
            problem = KBError("eval.internal", f"{type(exc).__name__}: {exc}")
        failed = evaluation.failed_result(patient, input_sha, "error", [problem], timestamp)
        return reduce(evaluation, failed, detail), ()

    def run_json(
        self, patient: dict[str, Any], timestamp: str | None, detail: str, head: dict[str, Any] | None = None
    ) -> tuple[bytes, str, tuple[str, ...]]:
        """(the result as one line of compact JSON, its status, each rule's outcome); `head`: keys
        written first (batch's record and line numbers), so the line is encoded once.

        At full detail most of a result is what the knowledge base says whatever the patient
        (texts, quotes, thresholds, provenance): here it is written from JSON encoded once
        (orjson fragments) rather than copied into every result and encoded again; the same
        bytes as `dumps_bytes({**head, **run(...)})` (tests/test_compiled.py)."""
        if detail == "full":
            input_sha = input_sha256(patient)
            try:
                decision = self._decision_json(input_sha, timestamp)
                result, outcomes = self._evaluate(patient, detail, decision, True, head)
                return joined_line(result), result["status"], outcomes
            except NotCompiled:
                raise
            except Exception:  # noqa: S110 - the plain path below gives the error result, or the value orjson refused
                pass
        result, outcomes = self.run(patient, timestamp, detail)
        return dumps_bytes({**head, **result} if head else result), result["status"], outcomes

    def _decision_json(self, input_sha: str, timestamp: str | None) -> dict[str, Any]:
        """`Evaluation.decision_record` for a result encoded at once: what is the same in every
        decision (the knowledge base's record, the engine versions) as JSON encoded once."""
        parts = self._decision_parts
        if parts is None:  # a decision record of another shape than this knows: the plain one
            return self.evaluation.decision_record(input_sha, timestamp)
        record: dict[str, Any] = {
            "decision_id": decision_id(parts[3], input_sha),
            "kb": parts[0],
            "engine_version": parts[1],
            "engine": parts[2],
            "input_sha256": input_sha,
        }
        if timestamp:
            record["timestamp"] = timestamp
        return record

    def _evaluate(  # noqa: C901 - one pass, in the order of Evaluation._evaluate
        self,
        patient: dict[str, Any],
        detail: str,
        decision: dict[str, Any],
        encoded: bool = False,
        head: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        ev = self.evaluation
        values, derived, state, recorded, truths, conditions = self.functions(detail, encoded)(patient)
        if self._fact_functions is not None:  # _verdict, without its call
            verdict = (self._verdict_of or self._verdict_function(self._fact_functions))(values, derived, state)
        else:
            verdict = self._verdict(values, derived, state)
        errors: list[KBError] = []
        for name, key in self._verdict_keys:
            if verdict[key] != derived[name].value:
                errors.append(_disagree_derived(name, verdict[key], derived[name].value))
        mode = "json" if encoded else detail if detail != "full" else ""
        settle = self._settled.get(mode) or self._settle_function(mode)
        settled = settle(truths, conditions, verdict, state, recorded, values, derived, errors)
        advice, caveats, drafts, undetermined, out_of_scope, outcomes = settled[-6:]
        # the status, as Evaluation._assemble gives it
        scope = derived.get(SCOPE_DERIVED)
        if out_of_scope:
            status = "out_of_scope"
        elif scope is None or scope.value is not True:
            status = "scope_undetermined"
        else:
            status = "evaluated"
        if errors:
            status = "error"
        result: dict[str, Any] = dict(head) if head else {}
        if detail != "full":
            result["detail"] = detail
        result["patient_id"] = patient.get("id")
        result["status"] = status
        result["advice"] = advice
        result["caveats"] = caveats
        result["drafts"] = drafts
        result["undetermined"] = undetermined
        result["no_recommendation"] = status == "evaluated" and not advice and not caveats and not undetermined
        result["scope"] = self._scope_record(scope, values, derived, not encoded)
        if encoded:  # the rule entries' JSON pieces (settle), joined with the line (joined_line)
            result["rules"] = settled[0]
        elif detail == "standard":
            result["rules"], result["derived"] = settled[0]
        elif detail == "minimal":
            result["says"], result["missing"] = settled[0]
        else:  # full, as dicts
            decided, missing_of, without_of, unchecked_of, notes = settled[:5]
            entries = []
            for rule, listed in zip(self.rules, conditions, strict=True):
                rid = rule.id
                entry: dict[str, Any] = dict(self.heads[rid])
                entry["outcome"] = OUTCOME[decided[rid]]
                entry["missing"] = missing_of[rid]
                entry["conditions"] = listed
                entry["derived"] = [ev.derived_entry(derived[n]) for n in ev.rule_derived[rid]]
                if rid in without_of:
                    entry["decided_without"] = without_of[rid]
                entry.update(ev.static_part(rid))
                if rule.kind == "caveat":
                    entry["qualifies"] = list(rule.qualifies)
                    entry["provenance"] = dict(ev.static[rid]["provenance"])
                    entry["shown"] = ev.shown(rule, values, derived)
                    if rid in unchecked_of:
                        entry["unchecked"] = unchecked_of[rid]
                if rid in notes:
                    entry["caveats"] = [self._note(c) for c in notes[rid]]
                entries.append(entry)
            result["rules"] = entries
        result["errors"] = [error_record(e) for e in errors]
        result["decision"] = decision
        return result, outcomes

    def _settle_function(self, mode: str) -> Any:
        """The steps after the Kleene layer for this knowledge base (engine/evaluate/settle.py),
        generated on first use; `mode`: "json" with the full rule entries as JSON, "standard"
        with the standard rule entries and derived values, "minimal" with a minimal result's
        says and missing, "" with the dicts by rule id (full results as dicts)."""
        ev = self.evaluation
        entries = Entries(
            self._entry_plan,
            self._derived_groups,
            self.standard_derived,
            self._notes,
            frozenset(self.evaluation.booleans),
        )
        shows = {r.id: [ev._show_plan(k, n) for k, n in r.shows] for r in self.rules}  # noqa: SLF001
        # a field the accept-only check took as a number, string or boolean is never a list
        scalars = frozenset(n for n, info in ev.evaluator.fields.items() if info.type != "array")
        standard = Standard(shows, self.standard_derived, scalars)
        code, constants = settle_source(
            self.rules,
            ev.exact.rules,
            entries if mode == "json" else None,
            standard if mode == "standard" else None,
            {r.id: ev.static[r.id]["says"] for r in self.rules} if mode == "minimal" else None,
        )
        namespace = {
            **constants,
            "_judge": self._judge,
            "_decide": self._decide,
            "_without": self._without,
            "_unchecked": self._unchecked,
            "_disagree": ev.disagreement,
            "_derived_json": self._derived_json,
        }
        name = f"settle+{mode}" if mode else "settle"
        exec(compiled_code(code, name), namespace)  # noqa: S102
        self.sources[name] = code
        found = self._settled[mode] = namespace["settle"]
        return found

    def _verdict(self, values: dict[str, Any], derived: dict[str, DerivedValue], state: State) -> dict[str, Any]:
        """durable-rules' verdict, as Evaluation.decide gives it on the flat fact, from facts built
        for each ruleset directly (engine/evaluate/facts.py)."""
        ev = self.evaluation
        functions = self._fact_functions
        if functions is None:
            return ev.decide(ev.flat_fact(values, derived, None, state))
        verdict = self._verdict_of or self._verdict_function(functions)
        result: dict[str, Any] = verdict(values, derived, state)
        return result

    def _verdict_function(self, functions: list[Any]) -> Any:
        """`Evaluation.decide_levels` over the fact functions, written out as straight-line code
        for this knowledge base (the loop over each level's names, unpacking a tuple per name,
        cost as much as building the facts)."""
        src = Source()
        emit, const = src.emit, src.const
        emit("o = {}")
        emit("v = {}")
        # the outcomes a later level's facts read (the facts functions read only those keys)
        read = {key for level_keys in self.evaluation.durable.keys for pairs in level_keys for key, _ in pairs or ()}
        for level, (derived, rules) in enumerate(self.evaluation.verdict_names):
            emit(f"f = _fire({level}, {const(functions[level])}(values, derived, state, o))")
            for key, true, false in derived:
                emit(f"v[{key!r}] = True if {true!r} in f else False if {false!r} in f else None")
            for rid, true, false, fact_key in rules:
                told = {t: f"; o[{fact_key!r}] = {t!r}" if fact_key in read else "" for t in "TFU"}
                emit(f"if {true!r} in f: v[{rid!r}] = True{told['T']}")
                emit(f"elif {false!r} in f: v[{rid!r}] = False{told['F']}")
                emit(f"else: v[{rid!r}] = None{told['U']}")
        emit("return v")
        code = "def verdict(values, derived, state):\n" + "\n".join(src.lines) + "\n"
        namespace = {**src.constants, "_fire": self.evaluation.durable.fire_projected}
        exec(compiled_code(code, "verdict"), namespace)  # noqa: S102
        self.sources["verdict"] = code
        self._verdict_of = namespace["verdict"]
        return self._verdict_of

    def _scope_record(
        self, scope: DerivedValue | None, values: dict[str, Any], derived: dict[str, DerivedValue], copy: bool = True
    ) -> dict[str, Any]:
        """Evaluation.scope_record, remembered (bounded) by everything it reads: in_scope's value,
        missing inputs and account, and the values the scope cases test or need; never keyed by a
        float (see MEMO_LIMIT). A fresh dict each time (a result is the caller's to change), but
        with `copy=False` (a result encoded at once, never handed out) the remembered one."""
        if scope is None:
            return self.evaluation.scope_record(scope, values, derived)
        key = (
            scope.value,
            scope.missing,
            scope.how,
            *[values.get(name) if source == "field" else derived[name].value for source, name in self._scope_reads],
        )
        memoable = all(type(k) in _MEMOABLE for k in key[3:])
        found = self._scope_memo.get(key) if memoable else None
        if found is None:
            found = self.evaluation.scope_record(scope, values, derived)
            if memoable and len(self._scope_memo) < CACHE_LIMIT:
                self._scope_memo[key] = found
        if not copy:
            return found
        return {"in_scope": found["in_scope"], "missing": list(found["missing"]), "reason": found["reason"]}

    def _derived_json(self, dv: DerivedValue, memo: dict[Any, bytes] | None, key: Any) -> bytes:
        """A derived value's full entry as JSON, remembered (bounded) in `memo` under `key` for
        the values that repeat across patients (the generated settle looks there first and
        chooses the key: engine/evaluate/settle.py); None: not remembered."""
        found = orjson.dumps(self.evaluation.derived_entry(dv, copy=False))
        if memo is not None and len(memo) < CACHE_LIMIT:
            memo[key] = found
        return found

    # ---- the exact semantics' decisions, cached ---------------------------------------------------
    # `decide` and `relevant_vars` (engine/evaluate/exact.py) are pure functions of the form, the
    # possible cells of the form's own variables and whether its `present`/`absent` fields are
    # recorded; so that, and nothing else, is the key. The reference evaluator calls them
    # uncached, and the byte-for-byte test compares both.
    def _key(self, form: Form, state: State, values: dict[str, Any], derived: dict[str, DerivedValue]) -> Any:
        """(the form, the cells of its variables, whether each of its `present`/`absent` values
        is recorded), by a function written for each form when it is first met: a loop over
        the variables and the presences, two generators per call, cost more than the lookups."""
        keyer = self._keyers.get(id(form))
        if keyer is None:
            cells = "".join(f"state[{v}], " for v in self.evaluation.form_vars(form))
            marks = "".join(
                f"values.get({name!r}) is not None, " if source == "field" else f"derived[{name!r}].value is not None, "
                for source, name in _presences(form)
            )  # as Evaluation.recorded tells them
            text = f"lambda state, values, derived: ({id(form)}, ({cells}), ({marks}))"
            keyer = self._keyers[id(form)] = eval(text, {})  # noqa: S307 - source made here, of ints and names
        return keyer(state, values, derived)

    def _lacking(self, form: Form, values: dict[str, Any], derived: dict[str, DerivedValue]) -> list[int]:
        """Evaluation.missing_vars (the form's variables the record lacks, in order), by a
        function written for each form when it is first met, as `_key` does."""
        lacking = self._lackers.get(id(form))
        if lacking is None:
            lines = ["def lacking(values, derived):", "    out = []"]
            for v in self.evaluation.form_vars(form):
                var = self.evaluation.exact.vars[v]
                known = f"values.get({var.name!r})" if var.source == "field" else f"derived[{var.name!r}].value"
                lines.append(f"    if {known} is None: out.append({v})")
            lines.append("    return out")
            namespace: dict[str, Any] = {}
            exec("\n".join(lines) + "\n", namespace)  # noqa: S102 - source made here, of ints and names
            lacking = self._lackers[id(form)] = namespace["lacking"]
        found: list[int] = lacking(values, derived)
        return found

    def _without(self, form: Form, values: dict[str, Any], derived: dict[str, DerivedValue]) -> list[str]:
        """Evaluation.decided_without through `_lacking`."""
        lacking = self._lacking(form, values, derived)
        return self._pointers(lacking, values) if lacking else []

    def _decide(
        self, form: Form, state: State, recorded: Recorded, values: dict[str, Any], derived: dict[str, DerivedValue]
    ) -> bool | None:
        return self._decided_at(self._key(form, state, values, derived), form, state, recorded)

    def _decided_at(self, key: Any, form: Form, state: State, recorded: Recorded) -> bool | None:
        found = self._decided.get(key, _UNSEEN)
        if found is _UNSEEN:
            found = exact_decide(form, state, recorded)
            self._remember(self._decided, key, found)
        return found  # type: ignore[return-value]

    def _relevant_at(self, key: Any, form: Form, state: State, recorded: Recorded, variables: list[int]) -> list[int]:
        key = (*key, tuple(variables))
        found = self._relevance.get(key)
        if found is None:
            found = relevant_vars(form, state, recorded, variables)
            self._remember(self._relevance, key, found)
        return list(found)

    def _pointers(self, variables: list[int], values: dict[str, Any]) -> list[str]:
        """Evaluation.pointers, remembered: the inputs to ask for depend on the variables and,
        for a derived value, on which of its inputs the record lacks — nothing else of the
        record. (A fresh list each time: results own their lists.)"""
        shape = tuple(variables)
        reads = self._asked_reads.get(shape)
        if reads is None:
            ev = self.evaluation
            reads = tuple(
                name
                for v in shape
                if ev.exact.vars[v].source != "field"
                for name in ev.domains.derived_inputs(ev.model.derived[ev.exact.vars[v].name])
            )
            self._remember(self._asked_reads, shape, reads)
        key = (shape, tuple([values.get(name) is None for name in reads])) if reads else (shape,)
        found = self._asked.get(key)
        if found is None:
            found = self.evaluation.pointers(variables, values)
            self._remember(self._asked, key, found)
        return list(found)

    @staticmethod
    def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
        if len(cache) >= CACHE_LIMIT:
            cache.clear()  # bounded memory: a batch of a million records must not grow it
        cache[key] = value

    def _judge(
        self, form: Form, state: State, recorded: Recorded, values: dict[str, Any], derived: dict[str, DerivedValue]
    ) -> tuple[bool | None, list[str]]:
        """Evaluation.judge through the caches."""
        key = self._key(form, state, values, derived)
        outcome = self._decided_at(key, form, state, recorded)
        if outcome is not None:
            return outcome, []
        lacking = self._lacking(form, values, derived)
        return None, self._pointers(self._relevant_at(key, form, state, recorded, lacking), values)

    def _unchecked(
        self, form: Form, state: State, recorded: Recorded, values: dict[str, Any], derived: dict[str, DerivedValue]
    ) -> list[str]:
        """Evaluation.unchecked through the caches: the inputs a caveat's check lacks."""
        lacking = self._lacking(form, values, derived)
        key = self._key(form, state, values, derived)
        return self._pointers(self._relevant_at(key, form, state, recorded, lacking), values)

    def _note(self, caveat_id: str) -> dict[str, Any]:
        static = self.evaluation.static[caveat_id]
        return {
            "id": caveat_id,
            "title": self.heads[caveat_id]["title"],
            "says": static["says"],
            "provenance": dict(static["provenance"]),
        }


def joined_line(result: dict[str, Any]) -> bytes:
    """`orjson.dumps(result)` of a full result whose "rules" are the JSON pieces of its rule
    entries (followed by "errors" and "decision", as every result orders them): the pieces are
    joined once, into the line. Joined into one fragment first and written by orjson, the ~40 KB
    of a record's rule entries were copied twice more (the conditions once more again), and
    orjson grew its buffer to the line's size by doubling."""
    pieces = result.pop("rules")
    tail = orjson.dumps({"errors": result.pop("errors"), "decision": result.pop("decision")})
    line: list[Any] = [memoryview(orjson.dumps(result))[:-1], b',"rules":']
    line += pieces
    line.append(b",")
    line.append(memoryview(tail)[1:])
    return b"".join(line)


def _decision_parts(evaluation: Evaluation) -> tuple[Any, ...] | None:
    """What every decision record holds alike, encoded once: (the knowledge base's record, the
    engine version, the engines' versions, the fingerprint its ids are made of); None when the
    record is not of the shape `_decision_json` writes."""
    made = evaluation.decision_record("", None)
    if list(made) != ["decision_id", "kb", "engine_version", "engine", "input_sha256"]:
        return None
    return (
        orjson.Fragment(orjson.dumps(made["kb"])),
        made["engine_version"],
        orjson.Fragment(orjson.dumps(made["engine"])),
        evaluation.kb_record["fingerprint"],
    )


def _scope_reads(model: Any, scope_fields: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """What the scope record reads besides in_scope itself: the fields in_scope's condition reads
    (`Evaluation.scope_fields`, named when the scope is reported undetermined), and (source, name)
    of every field or derived value the scope cases test, and the fields they need."""
    reads: list[tuple[str, str]] = [("field", name) for name in scope_fields]
    for case in model.scope:
        if case.when is not None:
            reads += [(leaf.source, leaf.name) for leaf in walk(case.when)]
        reads += [("field", name) for name in case.undetermined_needs]
    return tuple(dict.fromkeys(reads))


def _presences(form: Form) -> list[tuple[str, str]]:
    if isinstance(form, Presence):
        return [(form.source, form.name)]
    if isinstance(form, Node):
        return [p for item in form.items for p in _presences(item)]
    return []


def _disagree_derived(name: str, decided: Any, value: Any) -> KBError:
    return KBError(
        "eval.disagreement", f"derived value {name}: durable-rules says {decided}, the explanation says {value}"
    )
