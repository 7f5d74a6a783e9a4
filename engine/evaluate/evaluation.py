"""Evaluate one patient: validate, derive, let durable-rules decide, explain, cross-check.

The result is the output contract (schema/result.schema.json). Its order and content depend
only on the input and the knowledge base, so the same input gives byte-identical output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from fsgs_kb.engine.compile.durable import DurableRulesets, EngineError
from fsgs_kb.engine.compile.exact_form import Form, form_vars
from fsgs_kb.engine.compile.rulesets import CompiledKB, derived_key, field_key, number, rule_key, scalar
from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.evaluate.accept import accepts
from fsgs_kb.engine.evaluate.exact import Domains, Recorded, State, decide, relevant_vars
from fsgs_kb.engine.evaluate.kleene import DerivedValue, Evaluator, Memo, Outcome, copy_policy
from fsgs_kb.engine.evaluate.overflow import DerivedOverflow, overflow_error
from fsgs_kb.engine.evaluate.patient import field_values, recorded_unknown, used_fields, validate_patient
from fsgs_kb.engine.load.conditions import expression_refs, reach, walk
from fsgs_kb.engine.load.fields import catalogue
from fsgs_kb.engine.load.fingerprint import decision_id, input_sha256
from fsgs_kb.engine.load.templating import fill
from fsgs_kb.engine.model import KnowledgeBaseModel, Rule, rule_order
from fsgs_kb.engine.read.canonical import value_sha256
from fsgs_kb.engine.read.shape import shape_problem, valid_unicode
from fsgs_kb.engine.version import DURABLE_RULES_VERSION, __version__

OUTCOME = {True: "fired", False: "not_fired", None: "undetermined"}
SCOPE_DERIVED = "in_scope"
SCOPE_OUTCOME = {True: "met", False: "not_met", None: "undetermined"}  # kb.yaml `scope`, by in_scope's value


def _quote_dict(quote: Any) -> dict[str, str]:
    return {"source": quote.source, "sentence": quote.sentence, "quote": " ".join(quote.quote.split())}


class Evaluation:
    """Per-knowledge-base state reused for every patient (what can be computed once, is)."""

    def __init__(
        self,
        model: KnowledgeBaseModel,
        compiled: CompiledKB,
        evaluator: Evaluator,
        durable: DurableRulesets,
        kb_record: dict[str, str],
    ) -> None:
        self.model = model
        scope_spec = model.derived.get(SCOPE_DERIVED)
        self.scope_fields = tuple(  # the fields in_scope's condition reads, in order
            dict.fromkeys(
                leaf.name
                for leaf in (walk(scope_spec.condition) if scope_spec and scope_spec.condition else ())
                if leaf.source == "field"
            )
        )
        self.compiled = compiled
        self.evaluator = evaluator
        self.durable = durable
        paths = set(compiled.fact_fields)
        paths |= {leaf.name for r in model.rules.values() for leaf in walk(r.when) if leaf.source == "field"}
        for derived in model.derived.values():
            exprs = ([derived.value] if derived.value else []) + [e for _, e in derived.cases]
            paths |= {r.name for e in exprs for r in expression_refs(e) if r.source == "field"}
            conds = ([derived.condition] if derived.condition else []) + [w for w, _ in derived.cases]
            paths |= {leaf.name for c in conds for leaf in walk(c) if leaf.source == "field"}
        for case in model.scope:  # the scope's explanation reads the record too (kb.yaml `scope`)
            if case.when is not None:
                paths |= {leaf.name for leaf in walk(case.when) if leaf.source == "field"}
        for rule in model.rules.values():
            paths |= {name for kind, name in rule.shows if kind == "field"}
            paths |= {
                name.rsplit(".", 1)[0] + "." + info.unit_from
                for kind, name in rule.shows
                if kind == "field" and (info := catalogue().get(name)) is not None and info.unit_from
            }
        self.fields = used_fields(paths)
        self.exact = compiled.exact
        self.domains = Domains(compiled.exact)
        self.booleans = [n for n in model.derived_order if model.derived[n].is_boolean]
        self._vars_of: dict[int, list[int]] = {}
        self.fact_fields = [
            (info.path, field_key(info.path), info.type == "array")
            for info in self.fields
            if info.path in set(compiled.fact_fields)
        ]
        self.rules: list[Rule] = sorted(model.rules.values(), key=rule_order)
        self.caveats: list[Rule] = [r for r in self.rules if r.kind == "caveat"]
        self.rule_derived = {r.id: self._derived_closure(r) for r in self.rules}
        self.static = {r.id: self._static_part(r) for r in self.rules}
        self.kb_record = kb_record
        self.scope_cases = {o: [c for c in model.scope if c.outcome == o] for o in SCOPE_OUTCOME.values()}
        self._shows: dict[str, list[tuple[str, str, str | None, str | None]]] = {}
        # per level, the names durable-rules' actions carry, worked out once (see _decide)
        self._verdict_names = [
            (
                [(f"derived:{n}", f"derived:{n}|T", f"derived:{n}|F") for n in names],
                [(rid, f"{rid}|T", f"{rid}|F", rule_key(rid)) for rid in rids],
            )
            for names, rids in zip(compiled.level_derived, compiled.level_rules, strict=True)
        ]

    def _derived_closure(self, rule: Rule) -> list[str]:
        """Derived values a rule relies on, directly or through other derived values, in
        dependency order."""
        seen = set(reach(self.model, rule)[1])
        return [n for n in self.model.derived_order if n in seen]

    def decision_record(self, input_sha: str, timestamp: str | None) -> dict[str, Any]:
        """The decision record of a result (kb, engine versions, input hash)."""
        return self._decision(input_sha, timestamp)

    def failed_result(
        self, patient: Any, input_sha: str, status: str, problems: list[KBError], timestamp: str | None
    ) -> dict[str, Any]:
        """The full result of a record that was not evaluated (invalid) or failed (error)."""
        return self._failed(patient, input_sha, status, problems, timestamp)

    def derived_entry(self, dv: DerivedValue, copy: bool = True) -> dict[str, Any]:
        """A derived value as a rule entry lists it; `copy=False` shares the knowledge base's
        policy notes, for an entry that is encoded at once and never handed out."""
        return self._derived_dict(dv, copy)

    def static_part(self, rule_id: str) -> dict[str, Any]:
        """A fresh copy of what a rule entry says whatever the patient: advice text, quotes."""
        static = self.static[rule_id]
        return {
            "says": static["says"],
            "citations": [dict(c) for c in static["citations"]],
            "evidence": dict(static["evidence"]),
        }

    def decide(self, fact: dict[str, Any]) -> dict[str, Any]:
        """durable-rules' verdict per derived value and rule on a flat fact (see _decide)."""
        return self._decide(fact)

    # public doors to the steps of _evaluate, for the compiled evaluator (engine/evaluate/compiled.py)
    def recorded(self, values: dict[str, Any], derived: dict[str, DerivedValue]) -> Recorded:
        return self._recorded(values, derived)

    def unchecked(
        self, form: Form, state: State, recorded: Recorded, values: dict[str, Any], derived: dict[str, DerivedValue]
    ) -> list[str]:
        """A caveat's inputs whose absence kept its applicability check from being made."""
        lacking = self._missing_vars(form, values, derived)
        return self._pointers(relevant_vars(form, state, recorded, lacking), values)

    def missing_vars(self, form: Form, values: dict[str, Any], derived: dict[str, DerivedValue]) -> list[int]:
        return self._missing_vars(form, values, derived)

    def pointers(self, variables: list[int], values: dict[str, Any]) -> list[str]:
        return self._pointers(variables, values)

    def form_vars(self, form: Form) -> list[int]:
        return self._form_vars(form)

    def shown(self, rule: Rule, values: dict[str, Any], derived: dict[str, DerivedValue]) -> list[dict[str, Any]]:
        return self._shown(rule, values, derived)

    def disagreement(self, rule_id: str, durable: bool | None, python: bool | None) -> KBError:
        return self._disagreement(rule_id, durable, python)

    @staticmethod
    def _static_part(rule: Rule) -> dict[str, Any]:
        part = {
            "says": " ".join(rule.says.split()),
            "citations": [_quote_dict(q) for q in rule.citations],
            "evidence": _quote_dict(rule.evidence),
        }
        if rule.provenance_kind is not None:
            part["provenance"] = caveat_provenance(rule.provenance_kind, rule.provenance)
        return part

    # ---- entry point --------------------------------------------------------------------------
    def run(self, patient: Any, timestamp: str | None = None, accepted: bool = False) -> dict[str, Any]:
        """The full result; `accepted` says the record already passed `accepts`."""
        if accepted or accepts(patient):  # the generated check: certainly valid, nothing more to say
            input_sha = input_sha256(patient)
        else:  # the detailed path says what is wrong (or accepts what the fast check would not)
            problem, _ = shape_problem(patient)  # before anything recursive touches the record
            if problem is not None:  # not JSON data: hashed by its canonical text (engine/read/canonical.py)
                return self._failed(patient, value_sha256(patient), "invalid", [problem], timestamp)
            input_sha = input_sha256(patient)
            problems = validate_patient(patient)
            if problems:
                return self._failed(patient, input_sha, "invalid", problems, timestamp)
        try:
            return self._evaluate(patient, input_sha, timestamp)
        except DerivedOverflow as exc:  # while deriving: durable-rules was not asked
            return self._failed(patient, input_sha, "error", [self.overflow_error(patient, exc)], timestamp)
        except EngineError as exc:
            return self._failed(
                patient, input_sha, "error", [KBError("eval.engine", f"durable-rules: {exc}")], timestamp
            )
        except Exception as exc:  # never let one record take the caller down
            return self._failed(
                patient, input_sha, "error", [KBError("eval.internal", f"{type(exc).__name__}: {exc}")], timestamp
            )

    def overflow_error(self, patient: dict[str, Any], exc: DerivedOverflow) -> KBError:
        """The error of a record one of whose derived values no double holds."""
        return overflow_error(self.model, self.evaluator.fields, patient, exc)

    def run_unchecked(self, patient: dict[str, Any]) -> dict[str, Any]:
        """The result for a schema-valid record whose cross-field consistency is not checked.
        The completions of a record's missing inputs are each consistent with the values
        present, not necessarily with each other (clinical-notes §4.1); the exact-semantics
        tests evaluate them this way."""
        return self._evaluate(patient, input_sha256(patient), None)

    # ---- decision -----------------------------------------------------------------------------
    def flat_fact(
        self,
        values: dict[str, Any],
        derived: dict[str, DerivedValue],
        record: dict[str, Any] | None = None,
        state: State | None = None,
    ) -> dict[str, Any]:
        """The flat fact durable-rules sees: fields, list items, numeric derived values, and the
        possible cells of every missing variable."""
        fact: dict[str, Any] = {}
        for path, key, is_list in self.fact_fields:
            value = values[path]
            if value is None:
                continue
            if is_list:
                fact[key + "__n"] = len(value)
                for item in value:
                    fact[f"{key}__has__{item}"] = 1
            else:
                fact[key] = scalar(value)
        for name in self.compiled.fact_derived:
            if derived[name].value is not None:
                fact[derived_key(name)] = scalar(derived[name].value)
        if state is None:
            state = self.domains.state(record or {}, values, derived)
        for var, cells in zip(self.exact.vars, state, strict=True):
            if var.kind == "number":
                known = values.get(var.name) if var.source == "field" else derived[var.name].value
                if known is not None:
                    fact[var.low_key] = fact[var.high_key] = scalar(known)
                else:
                    fact[var.low_key] = number(var.cells[cells[0]].sample())
                    fact[var.high_key] = number(var.cells[cells[-1]].sample())
            else:
                for cell in cells:
                    fact[var.possible_key(cell)] = 1
        return fact

    def _decide(self, fact: dict[str, Any]) -> dict[str, Any]:
        """Run the compiled levels in durable-rules; return its verdict per derived value and rule."""

        def fire(level: int, outcomes: dict[str, str]) -> set[str]:
            fact.update(outcomes)  # the outcomes of earlier levels, which caveats read
            return self.durable.fire(level, fact)

        return self.decide_levels(fire)

    def decide_levels(self, fire: Callable[[int, dict[str, str]], set[str]]) -> dict[str, Any]:
        """durable-rules' verdict per derived value and rule, level by level: `fire(level,
        outcomes)` asserts the record's fact at that level, with the outcomes ("T" | "F" | "U" by
        `r__RULE` key) of the rules decided at earlier levels, and names the rules it fired."""
        verdict: dict[str, Any] = {}
        outcomes: dict[str, str] = {}
        for level, (derived, rules) in enumerate(self._verdict_names):
            fired = fire(level, outcomes)
            for key, true, false in derived:
                verdict[key] = True if true in fired else False if false in fired else None
            for rid, true, false, fact_key in rules:
                if true in fired:
                    verdict[rid], outcomes[fact_key] = True, "T"
                elif false in fired:
                    verdict[rid], outcomes[fact_key] = False, "F"
                else:
                    verdict[rid], outcomes[fact_key] = None, "U"
        return verdict

    @property
    def verdict_names(self) -> list[tuple[list[tuple[str, str, str]], list[tuple[str, str, str, str]]]]:
        return self._verdict_names

    def values_of(self, patient: dict[str, Any]) -> dict[str, Any]:
        """The field values the knowledge base reads from a (valid) record."""
        return field_values(patient, self.fields)

    def recorded_unknown(self, patient: dict[str, Any]) -> frozenset[str]:
        """The fields `values_of` reads as absent that the record holds as 'unknown'."""
        return recorded_unknown(patient, self.fields)

    def _recorded(self, values: dict[str, Any], derived: dict[str, DerivedValue]) -> Recorded:
        def recorded(source: str, name: str) -> bool:
            return (values.get(name) if source == "field" else derived[name].value) is not None

        return recorded

    def _pointers(self, variables: list[int], values: dict[str, Any]) -> list[str]:
        """The inputs to ask for: a field's pointer, or the missing inputs of a derived value."""
        out: list[str] = []
        for v in variables:
            var = self.exact.vars[v]
            if var.source == "field":
                out.append(self.evaluator.fields[var.name].missing_pointer)
                continue
            inputs = self.domains.derived_inputs(self.model.derived[var.name])
            missing = [n for n in inputs if values.get(n) is None] or inputs
            out += [self.evaluator.fields[n].missing_pointer for n in missing]
        return list(dict.fromkeys(out))

    def _missing_vars(self, form: Form, values: dict[str, Any], derived: dict[str, DerivedValue]) -> list[int]:
        """The variables of a form whose value the record lacks."""
        out = []
        for v in self._form_vars(form):
            var = self.exact.vars[v]
            known = values.get(var.name) if var.source == "field" else derived[var.name].value
            if known is None:
                out.append(v)
        return out

    def _form_vars(self, form: Form) -> list[int]:
        key = id(form)  # forms live as long as the compiled knowledge base
        found = self._vars_of.get(key)
        if found is None:
            found = self._vars_of[key] = form_vars(form)
        return found

    def judge(
        self, form: Form, state: State, recorded: Recorded, values: dict[str, Any], derived: dict[str, DerivedValue]
    ) -> tuple[bool | None, list[str]]:
        """(exact outcome, the inputs that could change it: none when it is decided)."""
        outcome = decide(form, state, recorded)
        if outcome is not None:
            return outcome, []
        lacking = self._missing_vars(form, values, derived)
        return None, self._pointers(relevant_vars(form, state, recorded, lacking), values)

    def decided_without(self, form: Form, values: dict[str, Any], derived: dict[str, DerivedValue]) -> list[str]:
        """The missing inputs of a decided form: every value they could take gives its outcome."""
        return self._pointers(self._missing_vars(form, values, derived), values)

    def scope_record(
        self, scope: DerivedValue | None, values: dict[str, Any], derived: dict[str, DerivedValue]
    ) -> dict[str, Any]:
        """A result's `scope`: in scope or not, what is missing to tell, and why. The reasons are
        the knowledge base's (kb.yaml `scope`): under in_scope's outcome, the first case whose
        condition holds; with none, in_scope's own account of the record."""
        if scope is None:
            return {"in_scope": None, "missing": [], "reason": "the knowledge base defines no in_scope value"}
        missing = list(scope.missing)
        for case in self.scope_cases[SCOPE_OUTCOME[scope.value]]:
            if case.when is not None and self.evaluator.condition(case.when, values, derived).result is not True:
                continue
            # `missing` names inputs that are not recorded: a recorded one the scope still needs
            # otherwise (a biopsy-proven diagnosis where `false` is recorded) is in the reason.
            # Reported undetermined, every unrecorded input of in_scope could still change it (an
            # etiology recorded as unknown beside a biopsy recorded false: secondary would put
            # the patient out of scope), so those are named too (clinical-notes §4: never silence).
            if case.undetermined_needs:
                for name in self.scope_fields:
                    pointer = self.evaluator.fields[name].pointer
                    if values.get(name) is None and pointer not in missing:
                        missing.append(pointer)
            for name in case.undetermined_needs:
                pointer = self.evaluator.fields[name].pointer
                if values.get(name) is None and pointer not in missing:
                    missing.append(pointer)
            reason = fill(case.reason, {"missing": ", ".join(missing)})
            return {"in_scope": None if case.undetermined_needs else scope.value, "missing": missing, "reason": reason}
        return {"in_scope": scope.value, "missing": missing, "reason": scope.how}

    def exact_derived(
        self, patient: dict[str, Any], values: dict[str, Any], memo: Memo
    ) -> tuple[dict[str, DerivedValue], State, Recorded, dict[str, list[str]]]:
        """The derived values as a result records them: Kleene's, then each boolean one Kleene's
        tables leave unknown decided by the exact semantics where every value of its missing
        inputs gives the same answer; with the record's cells, its `recorded` function, and the
        inputs each value so decided was decided without (for `explain`)."""
        derived = self.evaluator.derive(values, memo)
        state = self.domains.state(patient, values, derived)
        recorded = self._recorded(values, derived)
        without: dict[str, list[str]] = {}
        for name in self.booleans:
            old = derived[name]
            if old.value is not None:  # Kleene's tables are sound: decided there is decided
                continue
            form = self.exact.derived[name]
            value, missing = self.judge(form, state, recorded, values, derived)
            how = old.how
            if value is not None and old.value is None:
                without[name] = self.decided_without(form, values, derived)
                how = f"{how}; {'true' if value else 'false'} whatever the value of {', '.join(without[name])}"
            derived[name] = DerivedValue(name, value, old.unit, tuple(missing), how)
        return derived, state, recorded, without

    def _evaluate(self, patient: dict[str, Any], input_sha: str, timestamp: str | None) -> dict[str, Any]:
        evaluator = self.evaluator
        values = field_values(patient, self.fields)
        memo: Memo = {}
        derived, state, recorded, _ = self.exact_derived(patient, values, memo)
        verdict = self._decide(self.flat_fact(values, derived, patient, state))
        errors: list[KBError] = []
        for name in self.compiled.boolean_derived:
            if verdict[f"derived:{name}"] != derived[name].value:
                errors.append(
                    KBError(
                        "eval.disagreement",
                        f"derived value {name}: durable-rules says "
                        f"{verdict[f'derived:{name}']}, the explanation says {derived[name].value}",
                    )
                )
        entries: dict[str, dict[str, Any]] = {}
        outcomes: dict[str, bool | None] = {}
        for rule in self.rules:
            if rule.kind == "caveat":
                continue
            outcome = evaluator.condition(rule.when, values, derived, memo)
            form = self.exact.rules[rule.id]
            exact, missing = (
                (outcome.result, [])
                if outcome.result is not None
                else self.judge(form, state, recorded, values, derived)
            )
            without = (
                self.decided_without(form, values, derived) if exact is not None and outcome.result is None else []
            )
            if verdict[rule.id] != exact:
                errors.append(self._disagreement(rule.id, verdict[rule.id], exact))
            outcomes[rule.id] = exact
            entries[rule.id] = self._rule_entry(rule, verdict[rule.id], outcome, derived, missing, without)
        for rule in self.caveats:
            outcome = evaluator.condition(rule.when, values, derived, memo)
            form = self.exact.rules[rule.id]
            holds = outcome.result if outcome.result is not None else decide(form, state, recorded)
            qualified = [q for q in rule.qualifies if outcomes.get(q) is True]
            fired = holds is True and bool(qualified)
            if (verdict[rule.id] is True) != fired:
                errors.append(self._disagreement(rule.id, verdict[rule.id] is True, fired))
            entry = self._rule_entry(rule, fired, outcome, derived, [], [])
            entry["qualifies"] = list(rule.qualifies)
            entry["provenance"] = dict(self.static[rule.id]["provenance"])
            entry["shown"] = self._shown(rule, values, derived)
            if holds is None and qualified:  # the applicability check could not be made
                lacking = self._missing_vars(form, values, derived)
                entry["unchecked"] = self._pointers(relevant_vars(form, state, recorded, lacking), values)
            entries[rule.id] = entry
            if fired:
                for target in qualified:
                    entries[target].setdefault("caveats", []).append(
                        {
                            "id": rule.id,
                            "title": rule.title,
                            "says": entry["says"],
                            "provenance": dict(entry["provenance"]),
                        }
                    )
        ordered = [entries[r.id] for r in self.rules]
        return self._assemble(patient, input_sha, ordered, values, derived, errors, timestamp)

    @staticmethod
    def _disagreement(rule_id: str, durable: bool | None, python: bool | None) -> KBError:
        return KBError(
            "eval.disagreement",
            f"rule {rule_id}: durable-rules says {OUTCOME[durable]}, the explanation says {OUTCOME[python]}",
            rule_id=rule_id,
        )

    def _shown(self, rule: Rule, values: dict[str, Any], derived: dict[str, DerivedValue]) -> list[dict[str, Any]]:
        """The values a rule shows when it fires (e.g. the last creatinine values), as recorded."""
        plan = self._shows.get(rule.id)
        if plan is None:
            plan = self._shows[rule.id] = [self._show_plan(kind, name) for kind, name in rule.shows]
        out: list[dict[str, Any]] = []
        for kind, name, unit, unit_from in plan:
            if kind == "derived":
                dv = derived[name]
                out.append({"derived": name, "value": dv.value, "unit": unit})
                continue
            value = values.get(name)
            if unit_from is not None:
                unit = values.get(unit_from)
            out.append({"field": name, "value": list(value) if isinstance(value, list) else value, "unit": unit})
        return out

    def _show_plan(self, kind: str, name: str) -> tuple[str, str, str | None, str | None]:
        """(kind, name, its unit, the field its unit is read from): worked out once per rule."""
        if kind == "derived":
            unit = self.model.derived[name].unit
            return kind, name, None if unit == "none" else unit, None
        info = self.evaluator.fields[name]
        unit_from = name.rsplit(".", 1)[0] + "." + info.unit_from if info.unit_from else None
        return kind, name, info.unit if info.unit not in (None, "none") else None, unit_from

    def _rule_entry(
        self,
        rule: Rule,
        decided: bool | None,
        outcome: Outcome,
        derived: dict[str, DerivedValue],
        missing: list[str],
        without: list[str],
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": rule.id,
            "version": rule.version,
            "status": rule.status,
            "kind": rule.kind,
            "title": rule.title,
            "outcome": OUTCOME[decided],
            "missing": missing if decided is None else [],
            "conditions": outcome.leaves,
            "derived": [self._derived_dict(derived[n]) for n in self.rule_derived[rule.id]],
        }
        if without:
            entry["decided_without"] = without
        static = self.static[rule.id]
        entry["says"] = static["says"]
        entry["citations"] = [dict(c) for c in static["citations"]]
        entry["evidence"] = dict(static["evidence"])
        return entry

    def _derived_dict(self, dv: DerivedValue, copy: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": dv.name,
            "value": dv.value,
            "unit": None if dv.unit == "none" else dv.unit,
            "how": dv.how,
            "missing": list(dv.missing),
        }
        policy = self.evaluator.policy.get(("derived", dv.name))
        if policy:
            out["policy"] = copy_policy(policy) if copy else policy
        return out

    def _assemble(
        self,
        patient: dict[str, Any],
        input_sha: str,
        entries: list[dict[str, Any]],
        values: dict[str, Any],
        derived: dict[str, DerivedValue],
        errors: list[KBError],
        timestamp: str | None,
    ) -> dict[str, Any]:
        scope = derived.get(SCOPE_DERIVED)
        fired = [e for e in entries if e["outcome"] == "fired"]
        if any(e["kind"] == "out_of_scope" for e in fired):
            status = "out_of_scope"
        elif scope is None or scope.value is not True:
            status = "scope_undetermined"
        else:
            status = "evaluated"
        if errors:
            status = "error"
        undetermined = [e["id"] for e in entries if e["outcome"] == "undetermined"]
        advice = [e["id"] for e in fired if e["kind"] != "caveat"]
        result: dict[str, Any] = {
            "patient_id": patient.get("id"),
            "status": status,
            "advice": advice,
            "caveats": [e["id"] for e in fired if e["kind"] == "caveat"],
            "drafts": [e["id"] for e in fired if e["status"] != "active"],
            "undetermined": undetermined,
            "no_recommendation": status == "evaluated" and not fired and not undetermined,
            "scope": self.scope_record(scope, values, derived),
            "rules": entries,
            "errors": [_error_dict(e) for e in errors],
        }
        result["decision"] = self._decision(input_sha, timestamp)
        return result

    def _failed(
        self, patient: Any, input_sha: str, status: str, problems: list[KBError], timestamp: str | None
    ) -> dict[str, Any]:
        pid = patient.get("id") if isinstance(patient, dict) else None
        if not isinstance(pid, str) or not valid_unicode(pid):
            pid = None  # a lone surrogate (refused as input.encoding) cannot be written out as JSON
        return {
            "patient_id": pid,
            "status": status,
            "advice": [],
            "caveats": [],
            "drafts": [],
            "undetermined": [],
            "no_recommendation": False,
            "scope": None,
            "rules": [],
            "errors": [_error_dict(p) for p in problems],
            "decision": self._decision(input_sha, timestamp),
        }

    def refused(self, patient: Any, problem: KBError, timestamp: str | None = None) -> dict[str, Any]:
        """The result for a value handed to the API that cannot be read as JSON data
        (engine/read/plain.py): invalid, traceable by the hash of its canonical text. Its patient
        id is not read: reading the value is what failed."""
        return self._failed(None, value_sha256(patient), "invalid", [problem], timestamp)

    def failed(
        self,
        problem: KBError,
        raw: bytes,
        status: str = "invalid",
        more: tuple[KBError, ...] = (),
        digest: str | None = None,
    ) -> dict[str, Any]:
        """The result for input that never reached evaluation (not JSON, an empty line, bad CSV
        cells, a worker that died on it); its input hash is that of the raw bytes, so it is still
        traceable. `more` are the record's other problems, listed after the first; `digest` the hash
        of a record whose bytes were not all kept (Record.digest), given instead of them."""
        return self._failed(None, digest or hashlib.sha256(raw).hexdigest(), status, [problem, *more], None)

    def _decision(self, input_sha: str, timestamp: str | None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "decision_id": decision_id(self.kb_record["fingerprint"], input_sha),
            "kb": dict(self.kb_record),  # a copy: results share nothing mutable with the KB
            "engine_version": __version__,
            "engine": {"fsgs_kb": __version__, "durable_rules": DURABLE_RULES_VERSION},
            "input_sha256": input_sha,
        }
        if timestamp:
            record["timestamp"] = timestamp
        return record


def caveat_provenance(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """Where a caveat comes from, as shown beside the advice it qualifies."""
    if kind == "source":
        return {
            "kind": "source",
            "source": data["source"],
            "sentence": data["sentence"],
            "quote": " ".join(data["quote"].split()),
        }
    if kind == "cited":
        return {
            "kind": "cited",
            "reference": " ".join(data["reference"].split()),
            "says": " ".join(data["says"].split()),
            "verified": data["verified"],
        }
    return {"kind": "local", "rationale": " ".join(data["rationale"].split()), "decided_on": data["decided_on"]}


def _error_dict(error: KBError) -> dict[str, Any]:
    out: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.pointer or error.code.startswith("patient."):
        out["pointer"] = error.pointer
    if error.hint:
        out["hint"] = error.hint
    if error.rule_id:
        out["rule_id"] = error.rule_id
    return out


def error_record(error: KBError) -> dict[str, Any]:
    """One entry of a result's `errors`."""
    return _error_dict(error)
