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

from fractions import Fraction
from typing import Any

import orjson

from fsgs_kb.engine.compile.durable import EngineError
from fsgs_kb.engine.compile.rulesets import boolean_key, derived_key, field_key, scalar
from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.evaluate.detail import reduce
from fsgs_kb.engine.evaluate.evaluation import OUTCOME, SCOPE_DERIVED, Evaluation, error_record, scope_record
from fsgs_kb.engine.evaluate.kleene import DerivedValue, exact, fmt, plain
from fsgs_kb.engine.evaluate.output import dumps_bytes
from fsgs_kb.engine.evaluate.patient import UNKNOWN_ENUM
from fsgs_kb.engine.load.conditions import walk
from fsgs_kb.engine.load.fingerprint import input_sha256
from fsgs_kb.engine.model import AllOf, Compare, Condition, Const, Expression, Not, Op, Ref

NUMERIC = ("lt", "le", "gt", "ge")
PY_OP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


class _Source:
    """Lines of the generated function and the constants they name."""

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

    def __init__(self, evaluation: Evaluation, detail: str) -> None:
        self.ev = evaluation
        self.model = evaluation.model
        self.json = detail == "full_json"  # the full result written as JSON bytes from templates
        self.detail = "full" if self.json else detail
        self.src = _Source()
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
                return f"_fmtn({var})"
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
        self.word(plan, indent)
        if self.json:
            self.enter_json(plan, indent)
            return
        ref = self.ev.evaluator.leaf_plan(plan.leaf)
        a, r, m, u, t, e = plan.actual, plan.result, plan.missing, plan.unit, plan.text, plan.entry
        static = self.src.const(ref.static)
        emit = self.src.emit
        emit(f"{e} = dict({static})", indent)
        if "provenance" in ref.static:
            emit(f"{e}['provenance'] = dict({e}['provenance'])", indent)
        if isinstance(ref.threshold, list):
            emit(f"{e}['threshold'] = list({e}['threshold'])", indent)
        emit(f"{e}['actual'] = {a}; {e}['unit'] = {u} or None; {e}['result'] = {r}; {e}['text'] = {t}", indent)
        if plan.leaf.op in ("present", "absent"):
            return
        emit(f"if {a} is None: {e}['missing'] = list({m})", indent)
        if ref.numeric:
            threshold = self.src.const(ref.threshold)
            emit(
                f"else: {e}['distance'] = _fmtn({a}) + ' vs ' + {self.src.const(ref.need)}; "
                f"{e}['margin'] = float(f'{{{a} - {threshold}:.12g}}')",
                indent,
            )

    def enter_json(self, plan: _Plan, indent: int) -> None:
        """The entry as JSON bytes after its `{"pointer":…,` — what orjson writes for the dict:
        the knowledge base's part pre-encoded, the patient's part in one orjson call."""
        ref = self.ev.evaluator.leaf_plan(plan.leaf)
        a, r, m, u, t, e = plan.actual, plan.result, plan.missing, plan.unit, plan.text, plan.entry
        head = self.src.const(orjson.dumps(ref.static)[1:-1] + b",")
        emit = self.src.emit
        emit(f"_x = {{'actual': {a}, 'unit': {u} or None, 'result': {r}, 'text': {t}}}", indent)
        if plan.leaf.op not in ("present", "absent"):
            emit(f"if {a} is None: _x['missing'] = {m}", indent)
            if ref.numeric:
                threshold = self.src.const(ref.threshold)
                emit(
                    f"else: _x['distance'] = _fmtn({a}) + ' vs ' + {self.src.const(ref.need)}; "
                    f"_x['margin'] = float(f'{{{a} - {threshold}:.12g}}')",
                    indent,
                )
        emit(f"{e} = {head} + _d(_x)[1:]", indent)

    # ---- Kleene logic ------------------------------------------------------------------------------
    def condition(self, cond: Condition, indent: int = 1) -> tuple[str, str]:
        """Emit a condition's truth; (truth variable, missing-inputs variable)."""
        if isinstance(cond, Compare):
            plan = self.judge(cond, indent)
            return plan.result, plan.missing
        if isinstance(cond, Not):
            r, m = self.condition(cond.item, indent)
            out = self.src.var("n")
            self.src.emit(f"{out} = None if {r} is None else not {r}", indent)
            return out, m
        parts = [self.condition(item, indent) for item in cond.items]
        out, missing = self.src.var("c"), self.src.var("cm")
        truths = [r for r, _ in parts]
        emit = self.src.emit
        if isinstance(cond, AllOf):
            emit(f"if {' or '.join(f'{t} is False' for t in truths)}: {out} = False", indent)
            emit(f"elif {' and '.join(f'{t} is True' for t in truths)}: {out} = True", indent)
        else:
            emit(f"if {' or '.join(f'{t} is True' for t in truths)}: {out} = True", indent)
            emit(f"elif {' and '.join(f'{t} is False' for t in truths)}: {out} = False", indent)
        emit(f"else: {out} = None", indent)
        emit(f"{missing} = []", indent)
        emit(f"if {out} is None:", indent)
        for r, m in parts:
            emit(f"if {r} is None: _union({missing}, {m})", indent + 1)
        return out, missing

    def leaves(self, cond: Condition) -> list[tuple[str, _Plan]]:
        return [(leaf.pointer, self.plan(leaf)) for leaf in walk(cond)]

    # ---- derived values ------------------------------------------------------------------------------
    def derived(self, name: str) -> None:
        """Emit d{i}v (value), d{i}m (missing, a tuple) and d{i}h (how) of one derived value."""
        spec = self.model.derived[name]
        d = self.derived_vars[name]
        emit = self.src.emit
        if spec.condition is not None:
            r, m = self.condition(spec.condition)
            texts = []
            for _, plan in self.leaves(spec.condition):
                self.word(plan)
                texts.append(f"({plan.text}, {plan.result})")
            emit(f"{d}v = {r}; {d}m = tuple({m})")
            emit(f"{d}h = ' and '.join([_t for _t, _r in ({', '.join(texts)},) if _r is not None]) or 'unknown'")
            return
        if spec.value is not None:
            self.expression_value(spec.name, spec.value, "''", 1)
            return
        for when, _ in spec.cases:  # judged and worded up front: later code may use them, whichever case applies
            for leaf in walk(when):
                self.word(self.judge(leaf))
        emit(f"{d}v = None; {d}m = (); {d}h = 'no case applies'")
        indent = 1
        for when, expr in spec.cases:
            r, m = self.condition(when, indent)
            emit(f"if {r} is True:", indent)
            texts = []
            for _, plan in self.leaves(when):
                self.word(plan, indent + 1)
                texts.append(plan.text)
            reason = f"' (because ' + '; '.join(({', '.join(texts)},)) + ')'"
            self.expression_value(spec.name, expr, reason, indent + 1)
            emit(f"elif {r} is None:", indent)
            emit(f"{d}m = tuple(_dedupe({m})); {d}h = 'unknown: needs ' + ', '.join({d}m)", indent + 1)
            emit("else:", indent)
            indent += 1
        emit("pass", indent)

    def expression_value(self, name: str, expr: Expression, reason: str, indent: int) -> None:
        """As `Evaluator._expression_value`: d{i}v, d{i}m, d{i}h from an expression."""
        spec = self.model.derived[name]
        d = self.derived_vars[name]
        value, text, missing = self.expression(expr, indent)
        emit = self.src.emit
        emit(
            f"if {value} is None: {d}v = None; {d}m = tuple({missing}); {d}h = 'unknown: needs ' + ', '.join({d}m)",
            indent,
        )
        emit("else:", indent)
        emit(f"{d}v = _plain({value}) if type({value}) is _Fraction else {value}; {d}m = ()", indent + 1)
        if isinstance(expr, Ref):
            emit(f"{d}h = {text} + {reason}", indent + 1)
        else:
            unit = spec.unit
            emit(
                f"{d}h = (({text} + ' = ' + _fmt({d}v) + ' ' + {unit!r}).rstrip() if type({value}) is _Fraction "
                f"else {text}) + {reason}",
                indent + 1,
            )

    def expression(self, expr: Expression, indent: int) -> tuple[str, str, str]:
        """Emit an expression as `Evaluator.expression` computes it; (value, text, missing) variables."""
        src = self.src
        value, text, missing = src.var("x"), src.var("xt"), src.var("xm")
        emit = src.emit
        if isinstance(expr, Const):
            emit(f"{value} = {src.const(expr.value)}; {text} = {src.const(fmt(expr.value))}; {missing} = ()", indent)
            return value, text, missing
        if isinstance(expr, Ref):
            if expr.source == "param":
                param = self.model.parameters[expr.name]
                emit(f"{value} = {src.const(exact(param.value))}", indent)
                emit(f"{text} = {src.const(f'{fmt(param.value)} {param.unit}')}; {missing} = ()", indent)
            elif expr.source == "derived":
                d = self.derived_vars[expr.name]
                unit = self.model.derived[expr.name].unit
                emit(f"{value} = _number({d}v); {text} = _fmt({d}v) + {' ' + unit!r}; {missing} = {d}m", indent)
            else:
                info = self.ev.evaluator.fields[expr.name]
                f = self.field_vars[expr.name]
                if info.unit_from:
                    sibling = info.path.rsplit(".", 1)[0] + "." + info.unit_from
                    unit = f"str({self.field_vars.get(sibling, 'None')} or '')"  # a unit no rule reads: ''"
                else:
                    unit = repr("" if info.unit in (None, "none") else str(info.unit))
                pointer = src.const(info.missing_pointer)
                emit(f"if {f} is None: {value} = None; {text} = ''; {missing} = ({pointer},)", indent)
                emit(
                    f"else: {value} = _exact_fast({f}); {text} = (_fmtn({f}) + ' ' + {unit}).rstrip(); {missing} = ()",
                    indent,
                )
            return value, text, missing
        assert isinstance(expr, Op)
        (va, ta, ma), (vb, tb, mb) = (self.expression(arg, indent) for arg in expr.args)
        emit(f"{missing} = {ma} + {mb}", indent)
        emit(f"if {missing} or {va} is None or {vb} is None: {value} = None; {text} = ''", indent)
        emit("else:", indent)
        emit(f"_a = _exact({va}); _b = _exact({vb})", indent + 1)
        if expr.name == "divide":
            emit(f"{value} = _a / _b if _b else None; {text} = {ta} + ' ÷ ' + {tb}; {missing} = ()", indent + 1)
        elif expr.name == "multiply":
            emit(f"{value} = _a * _b; {text} = {ta} + ' × ' + {tb}; {missing} = ()", indent + 1)
        elif expr.name == "subtract":
            emit(f"{value} = _a - _b; {text} = {ta} + ' − ' + {tb}; {missing} = ()", indent + 1)
        else:
            emit(
                f"{value} = (_b - _a) / _a * 100 if _a else None; "
                f"{text} = '(' + {tb} + ' − ' + {ta} + ') ÷ ' + {ta} + ' × 100'; {missing} = ()",
                indent + 1,
            )
        return value, text, missing

    # ---- the whole function --------------------------------------------------------------------------
    def generate(self) -> str:
        emit = self.src.emit
        ev = self.ev
        # fields, read from a record the accept-only check took (so every object is a dict)
        objects: dict[tuple[str, ...], str] = {(): "p"}
        for info in ev.fields:
            for depth in range(1, len(info.keys)):
                prefix = info.keys[:depth]
                if prefix not in objects:
                    objects[prefix] = self.src.var("o")
                    emit(f"{objects[prefix]} = {objects[prefix[:-1]]}.get({prefix[-1]!r}) or _EMPTY")
            f = self.field_vars[info.path]
            emit(f"{f} = {objects[info.keys[:-1]]}.get({info.keys[-1]!r})")
            if info.enum:
                emit(f"if {f} == {UNKNOWN_ENUM!r}: {f} = None")
        for name in self.model.derived_order:
            self.derived(name)
        # the fact durable-rules decides on, as Evaluation.flat_fact builds it
        emit("fact = {}")
        for path, key, is_list in ev.fact_fields:
            f = self.field_vars[path]
            if is_list:
                emit(f"if {f} is not None:")
                emit(f"fact[{key + '__n'!r}] = len({f})", 2)
                emit(f"for _i in {f}: fact[{key + '__has__'!r} + _i] = 1", 2)
            else:
                info = self.ev.evaluator.fields[path]
                value = f"int({f})" if info.type == "boolean" else f
                emit(f"if {f} is not None: fact[{key!r}] = {value}")
        for name in ev.compiled.fact_derived:
            d = self.derived_vars[name]
            emit(f"if {d}v is not None: fact[{derived_key(name)!r}] = _scalar({d}v)")
        # durable-rules decides, level by level, as Evaluation.decide does (conclusions become facts)
        verdicts: dict[str, str] = {}
        compiled = ev.compiled
        for level, (names, rids) in enumerate(zip(compiled.level_derived, compiled.level_rules, strict=True)):
            emit(f"_fired = _fire({level}, fact)")
            for name in names:
                b = verdicts[f"derived:{name}"] = self.src.var("b")
                emit(
                    f"{b} = True if {f'derived:{name}|T'!r} in _fired else False if {f'derived:{name}|F'!r} in _fired "
                    "else None"
                )
                emit(f"fact[{boolean_key(name)!r}] = 'T' if {b} is True else 'F' if {b} is False else 'U'")
            for rid in rids:
                v = verdicts[rid] = self.src.var("v")
                emit(f"{v} = True if {rid + '|T'!r} in _fired else False if {rid + '|F'!r} in _fired else None")
        emit("errors = []")
        for name in compiled.boolean_derived:
            d, b = self.derived_vars[name], verdicts[f"derived:{name}"]
            emit(f"if {b} != {d}v: errors.append(_disagree_derived({name!r}, {b}, {d}v))")
        rule_vars = []
        for rule in ev.rules:
            r, m = self.condition(rule.when)
            if self.detail == "full":
                for _, plan in self.leaves(rule.when):
                    self.enter(plan)
            v = verdicts[rule.id]
            emit(f"if {v} != {r}: errors.append(_disagree_rule({rule.id!r}, {v}, {r}))")
            rule_vars.append((rule, v, r, m))
        self.assemble(rule_vars)
        return "def run(p, decision):\n" + "\n".join(self.src.lines) + "\n"

    def assemble(self, rule_vars: list[tuple[Any, str, str, str]]) -> None:
        """Emit the result at this detail level, as Evaluation._assemble (and detail.reduce) make it."""
        emit, const = self.src.emit, self.src.const
        ev = self.ev
        fired = [f"({rule.id!r}, {v}, {rule.kind!r}, {rule.status != 'active'})" for rule, v, _, _ in rule_vars]
        emit(f"_entries = ({', '.join(fired)},)")
        emit("_fired = [e for e in _entries if e[1] is True]")
        emit("if any(e[2] == 'out_of_scope' for e in _fired):")
        emit("status = 'out_of_scope'; _fired = [e for e in _fired if e[2] == 'out_of_scope']", 2)
        scope = self.derived_vars.get(SCOPE_DERIVED)
        scope_value = f"{scope}v" if scope else "None"
        emit(f"elif {'True' if scope is None else f'{scope_value} is not True'}:")
        emit("status = 'scope_undetermined'; _fired = []", 2)
        emit("else: status = 'evaluated'")
        emit("if errors: status = 'error'")
        emit("_undetermined = [e[0] for e in _entries if e[1] is None]")
        emit("_advice = [e[0] for e in _fired]")
        emit("_evaluated = status == 'evaluated'")
        if scope:
            unit = self.model.derived[SCOPE_DERIVED].unit
            emit(f"_scope = _scope_record(_DV({SCOPE_DERIVED!r}, {scope}v, {unit!r}, {scope}m, {scope}h), p)")
        else:
            emit("_scope = _scope_record(None, p)")
        outcomes = ", ".join(f"_OUTCOME[{v}]" for _, v, _, _ in rule_vars)
        emit(f"_outcomes = ({outcomes},)")
        if self.json:
            self.assemble_json(rule_vars)
            return
        emit("result = {}")
        if self.detail != "full":
            emit(f"result['detail'] = {self.detail!r}")
        emit("result['patient_id'] = p.get('id'); result['status'] = status; result['advice'] = _advice")
        emit("result['drafts'] = [e[0] for e in _fired if e[3]]")
        emit("result['undetermined'] = _undetermined if _evaluated else []")
        emit("result['no_recommendation'] = _evaluated and not _fired and not _undetermined")
        emit("result['scope'] = _scope")
        if self.detail == "full":
            rules = [self.full_rule(rule, v, m) for rule, v, _, m in rule_vars]
            emit(f"result['rules'] = [{', '.join(rules)}]")
        elif self.detail == "standard":
            rules = [self.standard_rule(rule, v, m) for rule, v, _, m in rule_vars]
            emit(f"result['rules'] = [{', '.join(rules)}]")
            names = {n for rule in ev.rules for n in ev.rule_derived[rule.id]}
            derived = [
                f"{{'name': {n!r}, 'value': {self.derived_vars[n]}v, 'how': {self.derived_vars[n]}h, "
                f"'missing': list({self.derived_vars[n]}m)}}"
                for n in self.model.derived_order
                if n in names
            ]
            emit(f"result['derived'] = [{', '.join(derived)}]")
        else:
            says = const({rule.id: ev.static[rule.id]["says"] for rule in ev.rules})
            emit(f"result['says'] = {{rid: {says}[rid] for rid in _advice}}")
            missing = [f"({rule.id!r}, {v}, {m})" for rule, v, _, m in rule_vars]
            emit("_wanted = set(result['undetermined'])")
            emit(f"result['missing'] = {{rid: list(m) for rid, v, m in ({', '.join(missing)},) if rid in _wanted}}")
        emit("result['errors'] = [_error_record(e) for e in errors]")
        emit("result['decision'] = decision")
        emit("return result, _outcomes")

    def assemble_json(self, rule_vars: list[tuple[Any, str, str, str]]) -> None:
        """The full result as JSON bytes: the summary through orjson, the rules from templates,
        every fragment gathered in one list and joined once."""
        emit, const = self.src.emit, self.src.const
        ev = self.ev
        emit("_head = _d({'patient_id': p.get('id'), 'status': status, 'advice': _advice, "
             "'drafts': [e[0] for e in _fired if e[3]], 'undetermined': _undetermined if _evaluated else [], "
             "'no_recommendation': _evaluated and not _fired and not _undetermined, 'scope': _scope})")  # fmt: skip
        derived_names = [n for n in self.model.derived_order if any(n in ev.rule_derived[r.id] for r in ev.rules)]
        for n in derived_names:
            d = self.derived_vars[n]
            unit = None if self.model.derived[n].unit == "none" else self.model.derived[n].unit
            emit(f"j{d} = _d({{'name': {n!r}, 'value': {d}v, 'unit': {unit!r}, 'how': {d}h, 'missing': {d}m}})")
        emit("_o = [_head[:-1], b',\"rules\":[']")
        for number, (rule, v, _, m) in enumerate(rule_vars):
            static = ev.static[rule.id]
            head = orjson.dumps(
                {"id": rule.id, "version": rule.version, "status": rule.status, "kind": rule.kind, "title": rule.title}
            )
            tail = orjson.dumps(
                {"says": static["says"], "citations": static["citations"], "evidence": static["evidence"]}
            )
            opening = const((b"," if number else b"") + head[:-1] + b',"outcome":')
            pieces = [opening, f"_OUTB[{v}]", "_MISSING", f"_d({m})", const(b',"conditions":[')]
            for i, (pointer, plan) in enumerate(self.leaves(rule.when)):
                pieces += [const((b"," if i else b"") + orjson.dumps({"pointer": pointer})[:-1] + b","), plan.entry]
            pieces.append(const(b'],"derived":['))
            for i, n in enumerate(ev.rule_derived[rule.id]):
                pieces += (["_COMMA"] if i else []) + [f"j{self.derived_vars[n]}"]
            pieces.append(const(b"]," + tail[1:]))
            emit(f"_o += ({', '.join(pieces)})")
        emit("_o += (b'],\"errors\":', _d([_error_record(e) for e in errors]), b',\"decision\":', _d(decision), b'}')")
        emit("return b''.join(_o), status, _outcomes")

    def full_rule(self, rule: Any, verdict: str, missing: str) -> str:
        const = self.src.const
        conditions = ", ".join(
            f"{{'pointer': {pointer!r}, **{plan.entry}}}" for pointer, plan in self.leaves(rule.when)
        )
        derived = ", ".join(
            f"{{'name': {n!r}, 'value': {self.derived_vars[n]}v, 'unit': "
            f"{None if self.model.derived[n].unit == 'none' else self.model.derived[n].unit!r}, "
            f"'how': {self.derived_vars[n]}h, 'missing': list({self.derived_vars[n]}m)}}"
            for n in self.ev.rule_derived[rule.id]
        )
        static = self.ev.static[rule.id]
        head = const(
            {"id": rule.id, "version": rule.version, "status": rule.status, "kind": rule.kind, "title": rule.title}
        )
        return (
            f"{{**{head}, 'outcome': _OUTCOME[{verdict}], 'missing': list({missing}), 'conditions': [{conditions}], "
            f"'derived': [{derived}], 'says': {const(static['says'])}, "
            f"'citations': [dict(c) for c in {const(static['citations'])}], "
            f"'evidence': dict({const(static['evidence'])})}}"
        )

    def standard_rule(self, rule: Any, verdict: str, missing: str) -> str:
        conditions = []
        for leaf in walk(rule.when):
            plan = self.plan(leaf)
            ref = self.ev.evaluator.leaf_plan(leaf)
            unit = f", 'unit': {plan.unit} or None" if ref.unit_from else ""
            conditions.append(
                f"{{{leaf.source!r}: {leaf.name!r}, 'actual': {plan.actual}, 'result': {plan.result}{unit}}}"
            )
        return (
            f"{{'id': {rule.id!r}, 'outcome': _OUTCOME[{verdict}], 'missing': list({missing}), "
            f"'conditions': [{', '.join(conditions)}]}}"
        )


def _union(into: list[str], items: list[str]) -> None:
    for item in items:
        if item not in into:
            into.append(item)


def _dedupe(items: list[str]) -> list[str]:
    out: list[str] = []
    _union(out, items)
    return out


def _fmtn(number: Any) -> str:
    """`kleene.fmt` of a number (never a bool here: the schema says number)."""
    return f"{number:.6g}" if type(number) is float else str(number)


def _exact_fast(number: Any) -> Fraction:
    """`kleene.exact` (the decimal as written: 1.17 is 117/100), without parsing a string for
    the usual plain decimals; the same Fraction."""
    kind = type(number)
    if kind is Fraction:
        return number  # type: ignore[no-any-return]
    if kind is int:
        return Fraction(number)
    if kind is float:
        text = repr(number)
        whole, point, decimals = text.partition(".")
        if point and decimals.isdigit():
            return Fraction(int(whole + decimals), 10 ** len(decimals))
    return exact(number)


def _number(value: Any) -> Any:
    kind = type(value)
    if kind is int or kind is float:
        return _exact_fast(value)
    return exact(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


class CompiledEvaluator:
    """The generated evaluation functions of one knowledge base, one per detail level."""

    def __init__(self, evaluation: Evaluation) -> None:
        self.evaluation = evaluation
        self.sources: dict[str, str] = {}
        self.functions: dict[str, Any] = {}
        for detail in ("full", "standard", "minimal", "full_json"):
            generator = _Generator(evaluation, detail)
            source = generator.generate()
            namespace = self._namespace(generator.src.constants)
            exec(compile(source, f"<fsgs-kb compiled {detail}>", "exec"), namespace)  # noqa: S102 - our own source
            self.sources[detail] = source
            self.functions[detail] = namespace["run"]

    def _namespace(self, constants: dict[str, Any]) -> dict[str, Any]:
        return {
            **constants,
            "_EMPTY": {},
            "_Fraction": Fraction,
            "_exact": _exact_fast,
            "_exact_fast": _exact_fast,
            "_plain": plain,
            "_fmt": fmt,
            "_fmtn": _fmtn,
            "_number": _number,
            "_union": _union,
            "_dedupe": _dedupe,
            "_scalar": scalar,
            "_fire": self.evaluation.durable.fire,
            "_d": orjson.dumps,
            "_TRUTH": {True: b"true", False: b"false", None: b"null"},
            "_OUTB": {k: orjson.dumps(v) for k, v in OUTCOME.items()},
            "_MISSING": b',"missing":',
            "_COMMA": b",",
            "_OUTCOME": OUTCOME,
            "_DV": DerivedValue,
            "_scope_record": scope_record,
            "_error_record": error_record,
            "_disagree_derived": _disagree_derived,
            "_disagree_rule": _disagree_rule,
            "field_key": field_key,
        }

    def run(
        self, patient: dict[str, Any], timestamp: str | None, detail: str
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """(the result at `detail`, each rule's outcome in `rule_ids` order) of a record the
        accept-only check took; byte for byte what the reference evaluation gives, reduced to
        that detail."""
        input_sha = input_sha256(patient)
        evaluation = self.evaluation
        try:
            decision = evaluation.decision_record(input_sha, timestamp)
            return self.functions[detail](patient, decision)  # type: ignore[no-any-return]
        except EngineError as exc:
            problem = KBError("eval.engine", f"durable-rules: {exc}")
        except Exception as exc:  # never let one record take the caller down
            problem = KBError("eval.internal", f"{type(exc).__name__}: {exc}")
        failed = evaluation.failed_result(patient, input_sha, "error", [problem], timestamp)
        return reduce(evaluation, failed, detail), ()

    def run_json(
        self, patient: dict[str, Any], timestamp: str | None, detail: str
    ) -> tuple[bytes, str, tuple[str, ...]]:
        """(the result as one line of compact JSON, its status, each rule's outcome); the full
        result straight from templates, equal to orjson's bytes of the `run` dict."""
        if detail == "full":
            try:
                input_sha = input_sha256(patient)
                decision = self.evaluation.decision_record(input_sha, timestamp)
                return self.functions["full_json"](patient, decision)  # type: ignore[no-any-return]
            except Exception:  # noqa: S110 - the dict path below says what went wrong, as a result
                pass
        result, outcomes = self.run(patient, timestamp, detail)
        return dumps_bytes(result), result["status"], outcomes

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(rule.id for rule in self.evaluation.rules)


def _disagree_derived(name: str, decided: Any, value: Any) -> KBError:
    return KBError(
        "eval.disagreement", f"derived value {name}: durable-rules says {decided}, the explanation says {value}"
    )


def _disagree_rule(rule_id: str, decided: Any, explained: Any) -> KBError:
    return KBError(
        "eval.disagreement",
        f"rule {rule_id}: durable-rules says {OUTCOME[decided]}, the explanation says {OUTCOME[explained]}",
        rule_id=rule_id,
    )
