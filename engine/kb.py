"""The façade pipelines import: `fsgs_kb.load()` and `KnowledgeBase.evaluate()`.

It wires the stages: YAML → validated model (load, check) → compiled rulesets (compile) →
evaluation (durable-rules decides, Python explains, the two are cross-checked) → result dict.
`evaluate` never raises for any input: a bad record is `invalid`, an internal failure is
`error`, each with a code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fsgs_kb.engine import cache
from fsgs_kb.engine.check.report import ValidationReport
from fsgs_kb.engine.compile.durable import DurableRulesets
from fsgs_kb.engine.compile.proof import prove
from fsgs_kb.engine.compile.rulesets import CompiledKB, compile_kb
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.evaluate.accept import accepts, parse_accepted
from fsgs_kb.engine.evaluate.codegen import NotCompiled
from fsgs_kb.engine.evaluate.compiled import CompiledEvaluator
from fsgs_kb.engine.evaluate.detail import DETAILS, check_detail, expand, reduce
from fsgs_kb.engine.evaluate.evaluation import Evaluation
from fsgs_kb.engine.evaluate.fallback import fallback_warning
from fsgs_kb.engine.evaluate.kleene import Evaluator
from fsgs_kb.engine.evaluate.masking import attach_input, check_pointers
from fsgs_kb.engine.evaluate.output import dumps_bytes
from fsgs_kb.engine.load.paths import RulesLocation, kb_identity, locate_rules
from fsgs_kb.engine.model import KnowledgeBaseModel
from fsgs_kb.engine.read.plain import plain_record
from fsgs_kb.engine.read.records import Record, record_value

COUNTED_LIMIT = 1024  # distinct outcome tuples remembered (~200 in the bench's first 60,000 records)


class KnowledgeBase:
    """A validated, compiled knowledge base, ready to evaluate patients."""

    def __init__(self, report: ValidationReport, location: RulesLocation | None = None) -> None:
        self.model: KnowledgeBaseModel = report.load.model
        self.report = report
        self.location = location or RulesLocation(Path(self.model.root), "--rules")
        self.fingerprint = report.load.fingerprint
        self.compiled: CompiledKB = compile_kb(self.model)
        self.evaluator = Evaluator(self.model)
        self.durable = DurableRulesets(self.compiled.levels, f"fsgskb_{self.fingerprint[:12]}")
        self.evaluation = Evaluation(
            self.model,
            self.compiled,
            self.evaluator,
            self.durable,
            {"id": self.id, "version": self.version, "fingerprint": self.fingerprint},
        )
        # None once Python cannot compile this knowledge base's generated evaluator: the
        # interpreted reference then gives every result (the same bytes, slower), and `refused`
        # says which generated function Python refused and why (engine/evaluate/codegen.py)
        self.compiled_evaluator: CompiledEvaluator | None = None
        self.refused: NotCompiled | None = None
        try:
            self.compiled_evaluator = CompiledEvaluator(self.evaluation)
        except NotCompiled as exc:
            self.refused = exc
        # Each distinct tuple of rule outcomes, paired with the rule ids once: batch counts a
        # record's outcomes by this one tuple (one dict update a record, not one per rule).
        self._counted: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}  # each (rule, outcome) made once, shared

    @property
    def id(self) -> str:
        return str(self.model.manifest["id"])

    @property
    def version(self) -> str:
        return str(self.model.manifest["version"])

    def evaluate(
        self,
        patient: Any,
        *,
        timestamp: str | None = None,
        include_input: bool = False,
        mask: tuple[str, ...] = (),
        mask_key: bytes | None = None,
        detail: str = "full",
    ) -> dict[str, Any]:
        """The result for one patient record (see schema/result.schema.json). Never raises for
        any record; raises ValueError only for a `mask` that is not a JSON pointer or an
        unknown `detail`.

        include_input stores the record in the decision record (for replay without the original
        file; not a record beyond the input limits, which cannot be stored), with the values at
        the `mask` JSON pointers masked: HMAC-SHA256 with `mask_key`, or removed without one.
        detail is `full` (self-contained), `standard` (what the knowledge base holds left out:
        `expand` rebuilds the rest) or `minimal` (advice, caveats, what is missing, the decision
        record); see engine/evaluate/detail.py."""
        return self._evaluate(patient, False, timestamp, include_input, mask, mask_key, detail)

    def _evaluate(
        self,
        patient: Any,
        accepted: bool,
        timestamp: str | None = None,
        include_input: bool = False,
        mask: tuple[str, ...] = (),
        mask_key: bytes | None = None,
        detail: str = "full",
    ) -> dict[str, Any]:
        check_pointers(mask)
        check_detail(detail)
        if not accepted:  # a value handed to the API: read it as JSON types first (engine/read/plain.py)
            patient, refused = plain_record(patient)
            if refused is not None:
                return reduce(self.evaluation, self.evaluation.refused(patient, refused, timestamp), detail)
        result = None
        if self.compiled_evaluator is not None and (accepted or accepts(patient)):  # compiled, to the detail level
            try:
                result, _ = self.compiled_evaluator.run(patient, timestamp, detail)
            except NotCompiled as exc:
                self._without_compiled(exc)
        if result is None:  # invalid, valid in a way the generated check leaves to the detailed path, not compiled
            result = reduce(self.evaluation, self.evaluation.run(patient, timestamp=timestamp), detail)
        if include_input and not any(e["code"].startswith("input.") for e in result["errors"]):
            attach_input(result, patient, mask, mask_key)
        return result

    def evaluate_json(self, patient: Any, *, detail: str = "full", **options: Any) -> bytes:
        """`evaluate` serialized: the result as one line of compact JSON (UTF-8, no newline),
        byte for byte `orjson.dumps(evaluate(patient, ...))`. For a valid record without
        options it is written straight from the compiled evaluator (at full detail, what the
        knowledge base says is JSON encoded once at load), which is the fastest way to a
        serialized result; any option goes through `evaluate`."""
        check_detail(detail)
        patient, refused = plain_record(patient)  # as `evaluate` does (engine/read/plain.py)
        if refused is not None:
            return dumps_bytes(self.evaluate(patient, detail=detail, **options))
        if not options and self.compiled_evaluator is not None and accepts(patient):
            try:
                return self.compiled_evaluator.run_json(patient, None, detail)[0]
            except NotCompiled as exc:
                self._without_compiled(exc)
        return dumps_bytes(self.evaluate(patient, detail=detail, **options))

    def _without_compiled(self, exc: NotCompiled) -> None:
        """From now on every result comes from the interpreted reference (see `refused`)."""
        self.compiled_evaluator = None
        self.refused = exc

    @property
    def not_compiled(self) -> str | None:
        """Why every result comes from the interpreted reference, or None while compiled."""
        return None if self.refused is None else str(self.refused)

    def fallback_warnings(self, *details: str) -> list[KBError]:
        """A `compile.fallback` warning (engine/evaluate/fallback.py) for each generated function
        that results at these detail levels need and Python refuses, compiled now rather than at
        the first record; the first refusal leaves every later result to the reference, as it
        would have at that record."""
        for detail in details:
            check_detail(detail)
        if self.compiled_evaluator is None:
            refused = [self.refused] if self.refused is not None else []
        else:
            refused = self.compiled_evaluator.refusals(details)
            if refused:
                self._without_compiled(refused[0])
        return [fallback_warning(exc, self.report.load) for exc in refused]

    def encode_record(self, record: Record, **options: Any) -> tuple[bytes, str, tuple[tuple[str, str], ...]]:
        """What batch writes for one framed record: the line `{"record":N,"line":L,…result}` as
        compact JSON (without its newline), the status, and each rule's outcome (counted at every
        detail level, also where the result does not list them; records with the same outcomes
        get the same tuple object, which batch counts as one key). A valid JSON line goes from
        orjson through the accept-only check straight to the compiled evaluator."""
        detail = options.get("detail", "full")
        check_detail(detail)
        plain = not options.get("include_input") and not options.get("timestamp")
        framed = record.origin is None and record.sources is None and record.conversion is None
        if self.compiled_evaluator is not None and plain and framed and record.problem is None and record.data is None:
            fast = parse_accepted(record.raw)
            if fast is not None:
                head = {"record": record.number, "line": record.line}
                try:
                    blob, status, outcomes = self.compiled_evaluator.run_json(fast, None, detail, head)
                except NotCompiled as exc:
                    self._without_compiled(exc)
                    return self.encode_record(record, **options)
                counted = self._counted.get(outcomes)
                if counted is None:
                    pairs = self._pairs
                    counted = tuple(
                        pairs.setdefault(pair, pair)
                        for pair in zip(self.compiled_evaluator.rule_ids, outcomes, strict=False)
                    )
                    if len(self._counted) < COUNTED_LIMIT:
                        self._counted[outcomes] = counted
                return blob, status, counted
        result = self.evaluate_record(record, **options)
        full = result if detail != "minimal" else self.evaluate_record(record, **{**options, "detail": "full"})
        counted = tuple((rule["id"], rule["outcome"]) for rule in full["rules"])
        return dumps_bytes({"record": record.number, "line": record.line, **result}), result["status"], counted

    def reference_evaluate(
        self,
        patient: Any,
        *,
        timestamp: str | None = None,
        include_input: bool = False,
        mask: tuple[str, ...] = (),
        mask_key: bytes | None = None,
        detail: str = "full",
    ) -> dict[str, Any]:
        """`evaluate` through the interpreted evaluator (engine/evaluate/kleene.py), the
        reference the compiled one is tested against byte for byte; slower, same result."""
        check_pointers(mask)
        check_detail(detail)
        patient, refused = plain_record(patient)  # as `evaluate` does (engine/read/plain.py)
        if refused is not None:
            return reduce(self.evaluation, self.evaluation.refused(patient, refused, timestamp), detail)
        result = self.evaluation.run(patient, timestamp=timestamp)
        if include_input and not any(e["code"].startswith("input.") for e in result["errors"]):
            attach_input(result, patient, mask, mask_key)
        return reduce(self.evaluation, result, detail)

    def reduce(self, result: dict[str, Any], detail: str) -> dict[str, Any]:
        """A full result at a lower detail level (see engine/evaluate/detail.py)."""
        check_detail(detail)
        return reduce(self.evaluation, result, detail)

    def expand(self, result: dict[str, Any]) -> dict[str, Any]:
        """The full result a standard one stands for (a full one as it is); CannotExpand for a
        minimal result or one made by another knowledge base."""
        return expand(self.evaluation, result)

    def evaluate_record(self, record: Record, **options: Any) -> dict[str, Any]:
        """The result for one framed input record, whatever it holds: a record that cannot be
        read or parsed is `invalid` with its problem, traceable by the hash of its bytes. A record
        converted from FHIR carries where its input came from (`origin`), the provenance of every
        field (`sources`), the resources not used and why (`set_aside`) and how it was converted
        (`decision.fhir`: evaluation date, map)."""
        plain = record.origin is None and record.sources is None and record.conversion is None
        if plain and record.problem is None and record.data is None:
            fast = parse_accepted(record.raw)  # a valid record: no shape walk, no second check
            if fast is not None:
                return self._evaluate(fast, True, **options)
        data, problem = record_value(record)
        if problem is None:
            result = self.evaluate(data, **options)
        else:
            detail = options.get("detail", "full")
            check_detail(detail)
            status = "error" if problem.code.endswith(".internal") else "invalid"
            pid = data.get("id") if isinstance(data, dict) else None
            result = self.failed_result(
                problem,
                record.raw,
                status,
                patient_id=pid if isinstance(pid, str) else None,
                detail=detail,
                more=record.more,
                digest=record.digest,
            )
        if plain:
            return result
        decision = result.pop("decision")
        if record.origin is not None:
            result["origin"] = record.origin
        if record.sources is not None:
            result["sources"] = record.sources
        if record.set_aside is not None:
            result["set_aside"] = record.set_aside
        if record.conversion is not None:
            decision["fhir"] = record.conversion
        result["decision"] = decision
        return result

    def failed_result(
        self,
        problem: KBError,
        raw: bytes = b"",
        status: str = "invalid",
        *,
        patient_id: str | None = None,
        detail: str = "full",
        more: tuple[KBError, ...] = (),
        digest: str | None = None,
    ) -> dict[str, Any]:
        """The result for input that never reached evaluation (not JSON, an empty line, a worker
        that died on it), traceable by the hash of its raw bytes; `more` are further problems of
        the same record, listed after `problem`."""
        result = self.evaluation.failed(problem, raw, status, more, digest)
        result["patient_id"] = patient_id
        return reduce(self.evaluation, result, detail)

    @property
    def identity(self) -> dict[str, object]:
        """Which knowledge base this is and where it was found (for every command's output)."""
        return kb_identity(self.location, self.model.manifest, self.fingerprint)

    @property
    def unapproved(self) -> list[str]:
        """Rules that are not active (signed off): --require-approved refuses to use them."""
        return sorted(r.id for r in self.model.rules.values() if r.status != "active")


def validate(rules_dir: str | Path | None = None) -> ValidationReport:
    """Every problem of a knowledge base, including whether durable-rules can run it and whether
    Python compiles its generated evaluator at every detail level (else a warning: the reference
    evaluator gives the same results, slower).

    Without `rules_dir`: $FSGS_KB_RULES, else the nearest rules/kb.yaml at or above the working
    directory, else the bundled one. A knowledge base whose exact files validated cleanly before
    comes from the cache (engine.cache), with the proof that the engine takes it."""
    directory = locate_rules(rules_dir).path
    key = cache.content_key(directory)
    report = cache.load_cached(key) if key else None
    if report is None:
        from fsgs_kb.engine.check.validate import validate_dir  # deferred: a cache hit needs no validator

        report = prove(validate_dir(directory))
        if report.ok:  # only a knowledge base without errors is compiled
            report = report.with_problems(KnowledgeBase(report).fallback_warnings(*DETAILS))
        if report.ok and key and cache.content_key(directory) == key:  # not edited meanwhile
            cache.store(key, report)
    return report


def load(rules_dir: str | Path | None = None) -> KnowledgeBase:
    """Load, validate and compile a knowledge base; raise KBErrors when it has errors.

    Without `rules_dir`: $FSGS_KB_RULES, else the nearest rules/kb.yaml at or above the working
    directory, else the bundled one (`kb.location` says which)."""
    location = locate_rules(rules_dir)
    report = validate(location.path)
    if not report.ok:
        raise KBErrors(report.errors)
    return KnowledgeBase(report, location)
