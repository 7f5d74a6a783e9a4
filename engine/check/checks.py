"""Checks that need the whole knowledge base: references, quotes, units, cycles, coverage.

The schema says what one file may look like; these checks say whether the files agree with
each other and with the source. Each problem points at the YAML node it is about.
"""

from __future__ import annotations

import re
from typing import Any

from fsgs_kb.engine.check.arithmetic import operand_problems
from fsgs_kb.engine.check.report import Coverage
from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.load.conditions import LIST_OPS, expression_refs, operand_shape, walk
from fsgs_kb.engine.load.fields import FieldInfo, catalogue
from fsgs_kb.engine.load.yamlsafe import Located, located_error
from fsgs_kb.engine.model import (
    NUMERIC_OPS,
    Compare,
    Const,
    Derived,
    KnowledgeBaseModel,
    Parameter,
    ParamRef,
    Quote,
    Rule,
)
from fsgs_kb.engine.suggest import did_you_mean


def normalise(text: str) -> str:
    """Whitespace-insensitive form used to compare quotes with the source."""
    return " ".join(text.split())


def has_phrase(text: str, phrase: str) -> bool:
    """Whether a (lower-case, normalised) text contains the phrase as whole words."""
    return re.search(rf"(?<![\w]){re.escape(phrase)}(?![\w])", text) is not None


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


class Checker:
    def __init__(
        self,
        model: KnowledgeBaseModel,
        docs: dict[str, Located],
        failed: set[str],
        broken_derived: frozenset[str] = frozenset(),
    ) -> None:
        self.model = model
        self.docs = docs
        self.failed = failed
        self.broken_derived = broken_derived  # written but not loaded (their errors are reported): not unknown
        self.errors: list[KBError] = []
        self.fields = catalogue()

    def fail(
        self,
        file: str,
        pointer: str,
        code: str,
        message: str,
        hint: str | None = None,
        key: bool = False,
        severity: str = "error",
        rule_id: str | None = None,
    ) -> None:
        """Record a problem, unless it is only the echo of a file that failed to load."""
        echo = {
            "source.unknown": "source",
            "source.unknown_sentence": "source",
            "source.uncovered": "source",
            "rule.unknown_parameter": "param",
            "derived.unknown_param": "param",
            "rule.unknown_derived": "derived",
            "derived.unknown_derived": "derived",
            "param.unknown_derived": "derived",
            "rule.qualifies": "rule",
            "rule.complements": "rule",
            "param.unused": "param",
            "kb.unknown_source": "source",
        }.get(code)
        if echo in self.failed or (code in ("param.unused", "source.uncovered") and self.failed & {"derived", "rule"}):
            return
        if code == "param.unused" and self.broken_derived:
            return  # the parameter may be read by a derived value that did not load
        self.errors.append(located_error(self.docs, file, code, message, pointer, hint, key, severity, rule_id))

    # ---- quotes ---------------------------------------------------------------------------
    def check_quote(self, quote: Quote, rule_id: str | None = None) -> None:
        source = self.model.sources.get(quote.source)
        if source is None:
            self.fail(
                quote.file,
                quote.pointer + "/source",
                "source.unknown",
                f"unknown source '{quote.source}'",
                did_you_mean(quote.source, set(self.model.sources)),
                rule_id=rule_id,
            )
            return
        sentence = source.sentences.get(quote.sentence)
        if sentence is None:
            self.fail(
                quote.file,
                quote.pointer + "/sentence",
                "source.unknown_sentence",
                f"source '{quote.source}' has no sentence {quote.sentence}",
                f"sentences are {', '.join(source.sentences)}",
                rule_id=rule_id,
            )
            return
        if normalise(quote.quote) not in normalise(sentence):
            self.fail(
                quote.file,
                quote.pointer + "/quote",
                "source.quote_mismatch",
                f"quote is not verbatim in {quote.source} {quote.sentence}",
                _closest_wording(quote.quote, sentence),
                rule_id=rule_id,
            )

    # ---- references, types and units --------------------------------------------------------
    def check_condition_leaf(self, leaf: Compare, file: str, rule_id: str | None) -> None:
        if leaf.source == "field":
            info = self.fields.get(leaf.name)
            if info is None:
                self.fail(
                    file,
                    leaf.pointer + "/field",
                    "rule.unknown_field",
                    f"unknown patient field '{leaf.name}'",
                    did_you_mean(leaf.name, set(self.fields)),
                    rule_id=rule_id,
                )
                return
            self._check_field_comparison(leaf, info, file, rule_id)
        else:
            derived = self.model.derived.get(leaf.name)
            if derived is None and leaf.name in self.broken_derived:
                return  # its own errors are reported where it is written
            if derived is None:
                self.fail(
                    file,
                    leaf.pointer + "/derived",
                    "rule.unknown_derived",
                    f"unknown derived value '{leaf.name}'",
                    did_you_mean(leaf.name, self._derived_names()),
                    rule_id=rule_id,
                )
                return
            self._check_derived_comparison(leaf, derived, file, rule_id)
        self._check_param(leaf, file, rule_id)

    def _operand_values(self, leaf: Compare) -> list[Any] | None:
        value = leaf.operand
        if isinstance(value, ParamRef):
            param = self.model.parameters.get(value.name)
            if param is None:
                return None
            value = param.value
        return list(value) if isinstance(value, (list, tuple)) else [value]

    def _check_param(self, leaf: Compare, file: str, rule_id: str | None) -> None:
        if isinstance(leaf.operand, ParamRef) and leaf.operand.name not in self.model.parameters:
            self.fail(
                file,
                leaf.pointer + f"/{leaf.op}/param",
                "rule.unknown_parameter",
                f"unknown parameter '{leaf.operand.name}'",
                did_you_mean(leaf.operand.name, set(self.model.parameters)),
                rule_id=rule_id,
            )
        param = self.model.parameters.get(leaf.operand.name) if isinstance(leaf.operand, ParamRef) else None
        if param is not None and leaf.op not in NUMERIC_OPS and isinstance(param.value, list) != (leaf.op in LIST_OPS):
            message, hint = operand_shape(leaf.op, param.value, param.name)
            self.fail(file, leaf.pointer + f"/{leaf.op}", "rule.operator_type", message, hint, rule_id=rule_id)
        if leaf.op in NUMERIC_OPS and not isinstance(leaf.operand, ParamRef):
            self.fail(
                file,
                leaf.pointer + f"/{leaf.op}",
                "rule.literal_threshold",
                f"threshold {leaf.operand!r} is written into the rule",
                "name it in parameters.yaml with its provenance and write {param: NAME}",
                rule_id=rule_id,
            )

    def _check_field_comparison(self, leaf: Compare, info: FieldInfo, file: str, rule_id: str | None) -> None:
        where = leaf.pointer + f"/{leaf.op}"
        if leaf.op == "includes_any" and info.type != "array":
            self.fail(
                file,
                where,
                "rule.operator_type",
                f"includes_any needs a list field; '{info.path}' is a {info.type}",
                "use eq or in",
                rule_id=rule_id,
            )
        if leaf.op in NUMERIC_OPS:
            if info.type != "number":
                self.fail(
                    file,
                    where,
                    "rule.operator_type",
                    f"'{leaf.op}' compares numbers; '{info.path}' is a {info.type}",
                    rule_id=rule_id,
                )
            elif info.unit_from:
                self.fail(
                    file,
                    leaf.pointer + "/field",
                    "rule.unit_mismatch",
                    f"'{info.path}' has no fixed unit (it is given per record in '{info.unit_from}')",
                    "compare a derived value that converts it, e.g. dose_mg_per_kg_day",
                    rule_id=rule_id,
                )
            else:
                self._check_unit(leaf, info.unit or "none", file, rule_id)
        values = self._operand_values(leaf)
        if info.enum and values is not None and leaf.op in ("eq", "ne", "in", "includes_any"):
            for value in values:
                if value not in info.enum:
                    self.fail(
                        file,
                        where,
                        "rule.unknown_value",
                        f"'{value}' is not a value of '{info.path}'",
                        did_you_mean(str(value), set(info.enum)) or f"values: {', '.join(info.enum)}",
                        rule_id=rule_id,
                    )
        if info.type == "boolean" and values is not None and any(not isinstance(v, bool) for v in values):
            self.fail(file, where, "rule.operator_type", f"'{info.path}' is true or false", rule_id=rule_id)

    def _check_derived_comparison(self, leaf: Compare, derived: Derived, file: str, rule_id: str | None) -> None:
        where = leaf.pointer + f"/{leaf.op}"
        if derived.is_boolean:
            if leaf.op not in ("eq", "ne") or not isinstance(leaf.operand, bool):
                self.fail(
                    file,
                    where,
                    "rule.operator_type",
                    f"'{derived.name}' is true or false",
                    "write eq: true or eq: false",
                    rule_id=rule_id,
                )
            return
        categories = _categories(derived)
        if leaf.op in NUMERIC_OPS:
            if categories:
                self.fail(
                    file, where, "rule.operator_type", f"'{derived.name}' is a category, not a number", rule_id=rule_id
                )
            else:
                self._check_unit(leaf, derived.unit, file, rule_id)
        values = self._operand_values(leaf)
        if categories and values is not None and leaf.op in ("eq", "ne", "in"):
            for value in values:
                if value not in categories:
                    self.fail(
                        file,
                        where,
                        "rule.unknown_value",
                        f"'{value}' is not a value of '{derived.name}'",
                        did_you_mean(str(value), categories) or f"values: {', '.join(sorted(categories))}",
                        rule_id=rule_id,
                    )

    def _check_unit(self, leaf: Compare, unit: str, file: str, rule_id: str | None) -> None:
        if not isinstance(leaf.operand, ParamRef):
            return
        param = self.model.parameters.get(leaf.operand.name)
        if param is not None and (isinstance(param.value, bool) or not isinstance(param.value, (int, float))):
            self.fail(
                file,
                leaf.pointer + f"/{leaf.op}",
                "rule.operator_type",
                f"'{leaf.op}' compares numbers but parameter '{param.name}' is {param.value!r}",
                f"give {param.name} a number in parameters.yaml",
                rule_id=rule_id,
            )
        elif param is not None and param.unit != unit:
            self.fail(
                file,
                leaf.pointer + f"/{leaf.op}",
                "rule.unit_mismatch",
                f"'{leaf.name}' is in {unit} but parameter '{param.name}' is in {param.unit}",
                "compare values in the same unit (a derived value can convert)",
                rule_id=rule_id,
            )

    # ---- derived values ---------------------------------------------------------------------
    def _derived_names(self) -> set[str]:
        """The derived values written in derived.yaml, whether or not they loaded."""
        return set(self.model.derived) | self.broken_derived

    def check_derived(self) -> tuple[str, ...]:
        """Check every derived value and return them in dependency order (cycles reported)."""
        deps: dict[str, set[str]] = {}
        for derived in self.model.derived.values():
            deps[derived.name] = set()
            for leaf in _derived_leaves(derived):
                self.check_condition_leaf(leaf, derived.file, None)
                if leaf.source == "derived":
                    deps[derived.name].add(leaf.name)
            for expr in _derived_expressions(derived):
                for ref in expression_refs(expr):
                    self._check_ref(ref, derived)
                    if ref.source == "derived":
                        deps[derived.name].add(ref.name)
        self.errors.extend(operand_problems(self.model, self.fields, self.docs))
        return self._order(deps)

    def _check_ref(self, ref: Any, derived: Derived) -> None:
        known = {"field": set(self.fields), "derived": self._derived_names(), "param": set(self.model.parameters)}[
            ref.source
        ]
        if ref.name not in known:
            self.fail(
                derived.file,
                ref.pointer,
                f"derived.unknown_{ref.source}",
                f"unknown {ref.source} '{ref.name}'",
                did_you_mean(ref.name, known),
            )

    def _order(self, deps: dict[str, set[str]]) -> tuple[str, ...]:
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str, trail: list[str]) -> None:
            if state.get(name) == 2 or name not in deps:
                return
            if state.get(name) == 1:
                cycle = trail[trail.index(name) :] + [name]
                derived = self.model.derived[name]
                self.fail(
                    derived.file,
                    derived.pointer,
                    "derived.cycle",
                    f"derived values depend on each other in a cycle: {' -> '.join(cycle)}",
                    "break the cycle: one of them must be computed from patient fields only",
                )
                return
            state[name] = 1
            for dep in sorted(deps[name]):
                visit(dep, trail + [name])
            state[name] = 2
            order.append(name)

        for name in deps:
            visit(name, [])
        return tuple(order)

    # ---- wording: the source's hedges kept, no instruction it does not give ------------------
    def check_wording(self, rule: Rule) -> None:
        """A rule's text keeps the modal words of the sentences it quotes ("indicate" may not
        become "show") and uses a word of instruction or certainty only where a sentence it
        cites does (the source's `modality` and `strong_words`)."""
        says = normalise(rule.says).lower()
        cited: list[str] = []
        strong: set[str] = set()
        for known in self.model.sources.values():
            strong |= {str(w).lower() for w in known.record.get("strong_words", ())}
        for quote in (*rule.citations, *_provenance_quote(rule)):
            source = self.model.sources.get(quote.source)
            if source is None or quote.sentence not in source.sentences:
                return  # reported as a bad citation; the wording cannot be judged against it
            cited.append(normalise(source.sentences[quote.sentence]).lower())
            quoted = normalise(quote.quote).lower()
            for phrase in source.record.get("modality", {}).get(quote.sentence, ()):
                phrase = normalise(str(phrase)).lower()
                if has_phrase(quoted, phrase) and not has_phrase(says, phrase):
                    self.fail(
                        rule.file,
                        "/says",
                        "rule.hedge",
                        f"the text drops '{phrase}', the modality of the {quote.sentence} words it quotes",
                        f"keep the source's word '{phrase}': a stronger or weaker word changes what the source says",
                        rule_id=rule.id,
                    )
        for word in sorted(strong):
            if has_phrase(says, word) and not any(has_phrase(sentence, word) for sentence in cited):
                self.fail(
                    rule.file,
                    "/says",
                    "rule.instruction",
                    f"the text says '{word}', which no sentence it cites says",
                    "say only what the source says: no instruction or certainty it does not give",
                    rule_id=rule.id,
                )

    def check_caveat(self, rule: Rule) -> None:
        """A caveat names the advice it qualifies: rules that exist and give advice or warnings."""
        for i, target in enumerate(rule.qualifies):
            other = self.model.rules.get(target)
            if other is None:
                self.fail(
                    rule.file,
                    f"/qualifies/{i}",
                    "rule.qualifies",
                    f"caveat {rule.id} qualifies unknown rule '{target}'",
                    did_you_mean(target, set(self.model.rules)),
                    rule_id=rule.id,
                )
            elif other.kind not in ("advice", "warning"):
                self.fail(
                    rule.file,
                    f"/qualifies/{i}",
                    "rule.qualifies",
                    f"caveat {rule.id} qualifies {target}, a rule of kind {other.kind}",
                    "a caveat qualifies advice or warnings only",
                    rule_id=rule.id,
                )

    # ---- rules ------------------------------------------------------------------------------
    def check_rule(self, rule: Rule) -> None:
        for leaf in walk(rule.when):
            self.check_condition_leaf(leaf, rule.file, rule.id)
        for quote in (*rule.citations, rule.evidence, *_provenance_quote(rule)):
            self.check_quote(quote, rule.id)
        self.check_wording(rule)
        self.check_caveat(rule)
        for i, (kind, name) in enumerate(rule.shows):
            known = set(self.fields) if kind == "field" else set(self.model.derived)
            if name not in known and not (kind == "derived" and name in self.broken_derived):  # reported where written
                self.fail(
                    rule.file,
                    f"/shows/{i}/{kind}",
                    f"rule.unknown_{kind}",
                    f"unknown {'patient field' if kind == 'field' else 'derived value'} '{name}'",
                    did_you_mean(name, known),
                    rule_id=rule.id,
                )
        if rule.status == "active" and not (rule.approved_by and rule.approved_on):
            self.fail(
                rule.file,
                "/status",
                "rule.unsigned",
                f"rule {rule.id} is active without sign-off",
                "add approved_by and approved_on, or keep status: draft",
                rule_id=rule.id,
            )
        last = rule.history[-1]["version"]
        if last != rule.version:
            self.fail(
                rule.file,
                f"/history/{len(rule.history) - 1}/version",
                "rule.history_version",
                f"the last history entry is version {last} but the rule is version {rule.version}",
                f"add a history entry for {rule.version} saying what changed",
                rule_id=rule.id,
            )
        stem = rule.file.rsplit("/", 1)[-1].removesuffix(".yaml")
        if stem != rule.id:
            self.fail(
                rule.file,
                "/id",
                "rule.file_name",
                f"rule {rule.id} is in a file named {stem}.yaml",
                f"rename the file to {rule.id}.yaml",
                severity="warning",
                rule_id=rule.id,
            )

    def check_manifest(self) -> None:
        manifest = self.model.manifest
        if not manifest:
            return
        file = next((f for f, d in self.docs.items() if d.data is manifest), "kb.yaml")
        if manifest["source"] not in self.model.sources:
            self.fail(
                file,
                "/source",
                "kb.unknown_source",
                f"unknown source '{manifest['source']}'",
                did_you_mean(manifest["source"], set(self.model.sources)),
            )
        newest = max((entry["version"] for entry in manifest["changelog"]), key=version_key)
        if newest != manifest["version"]:
            self.fail(
                file,
                "/version",
                "kb.changelog_version",
                f"knowledge base is version {manifest['version']} but the newest changelog entry is {newest}",
                f"add a changelog entry for {manifest['version']}",
            )

    def check_parameters(self) -> None:
        used = {
            leaf.operand.name
            for rule in self.model.rules.values()
            for leaf in walk(rule.when)
            if isinstance(leaf.operand, ParamRef)
        }
        for derived in self.model.derived.values():
            used |= {leaf.operand.name for leaf in _derived_leaves(derived) if isinstance(leaf.operand, ParamRef)}
            used |= {
                ref.name
                for expr in _derived_expressions(derived)
                for ref in expression_refs(expr)
                if ref.source == "param"
            }
        for param in self.model.parameters.values():
            for i, (kind, name) in enumerate(param.shapes):
                known = set(self.fields) if kind == "field" else self._derived_names()
                if name not in known:
                    self.fail(
                        param.file,
                        f"{param.pointer}/shapes/{i}/{kind}",
                        f"param.unknown_{kind}",
                        f"parameter '{param.name}' shapes unknown {kind} '{name}'",
                        did_you_mean(name, known),
                    )
            if param.shapes:
                used.add(param.name)
            if param.provenance_kind == "source":
                p = param.provenance
                self.check_quote(
                    Quote(p["source"], p["sentence"], p["quote"], param.file, param.pointer + "/provenance/source")
                )
                self._check_value_in_quote(param)
            if param.name not in used:
                self.fail(
                    param.file,
                    param.pointer,
                    "param.unused",
                    f"parameter '{param.name}' is used by no rule",
                    _unused_fix(param.name, used - set(self.model.parameters)),
                    key=True,
                    severity="warning",
                )

    def _check_value_in_quote(self, param: Parameter) -> None:
        """A number said to come from the source must be the number the quote gives."""
        value = param.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        text = f"{value:g}"
        if not re.search(rf"(?<![\d.]){re.escape(text)}(?![\d]|\.\d)", param.provenance["quote"]):
            self.fail(
                param.file,
                param.pointer + "/value",
                "param.value_not_in_quote",
                f"{param.name} is {text} {param.unit}, but its source quote does not say {text}",
                "a changed value no longer comes from the source: make the provenance cited or local",
            )

    def coverage(self) -> Coverage | None:
        sources = self.model.sources
        primary = self.model.manifest.get("source") if self.model.manifest else None
        if primary not in sources and len(sources) != 1:
            return None
        source = sources[primary] if primary in sources else next(iter(sources.values()))
        encoded: dict[str, list[str]] = {}
        for rule in sorted(self.model.rules.values(), key=lambda r: r.id):
            for quote in rule.citations:
                if quote.source == source.id:
                    encoded.setdefault(quote.sentence, []).append(rule.id)
        for sid in source.not_encoded:
            if sid not in source.sentences:
                self.fail(
                    source.file,
                    f"/not_encoded/{sid}",
                    "source.unknown_sentence",
                    f"not_encoded names {sid}, which the source does not have",
                    key=True,
                )
        uncovered = [s for s in source.sentences if s not in encoded and s not in source.not_encoded]
        for sid in uncovered:
            self.fail(
                source.file,
                f"/sentences/{sid}",
                "source.uncovered",
                f"sentence {sid} is neither encoded by a rule nor listed under not_encoded",
                "cite it from a rule, or add it to not_encoded with the reason",
                key=True,
            )
        return Coverage(
            {s: encoded[s] for s in source.sentences if s in encoded},
            {s: r for s, r in source.not_encoded.items() if s in source.sentences},
            uncovered,
        )


def _provenance_quote(rule: Rule) -> list[Quote]:
    """A caveat whose provenance is the source: its quote, checked like a citation."""
    if rule.provenance_kind != "source":
        return []
    p = rule.provenance
    return [Quote(p["source"], p["sentence"], p["quote"], rule.file, "/provenance/source")]


def _categories(derived: Derived) -> set[str]:
    return {expr.value for _, expr in derived.cases if isinstance(expr, Const) and isinstance(expr.value, str)}


def _derived_leaves(derived: Derived) -> list[Compare]:
    leaves = walk(derived.condition) if derived.condition is not None else []
    return leaves + [leaf for when, _ in derived.cases for leaf in walk(when)]


def _derived_expressions(derived: Derived) -> list[Any]:
    exprs = [derived.value] if derived.value is not None else []
    return exprs + [expr for _, expr in derived.cases]


def _closest_wording(quote: str, sentence: str) -> str:
    """Show the sentence's own words around the first word of the quote that differs."""
    words, target = normalise(quote).split(" "), normalise(sentence)
    for i in range(len(words), 0, -1):
        if " ".join(words[:i]) in target:
            bad = words[i] if i < len(words) else ""
            return f"the source has no '{bad}' after '{' '.join(words[max(0, i - 3) : i])}'; copy the words exactly"
    return f'the sentence reads: "{target[:120]}{"…" if len(target) > 120 else ""}"'


def run_checks(checker: Checker) -> Coverage | None:
    """The cross-file checks of the manifest, derived values, rules, parameters and source
    coverage, recorded in checker.errors; fills model.derived_order as a side effect of the
    cycle check. The checker's `failed` names the parts that did not load, whose absence must
    not be reported again."""
    model = checker.model
    checker.check_manifest()
    model.derived_order = checker.check_derived()
    for rule in model.rules.values():
        checker.check_rule(rule)
    checker.check_parameters()
    return checker.coverage()


def _unused_fix(name: str, unknown: set[str]) -> str:
    """How to fix an unused parameter: where rules and derived values name a parameter that does
    not exist and is close to this one, it was most likely renamed here and not there."""
    for old in sorted(unknown):
        if did_you_mean(old, {name}):
            return (
                f"rules or derived values still name '{old}': if you renamed it to '{name}', "
                f"rename it there too (or back here)"
            )
    return "remove it, or use it in a rule or derived value"
