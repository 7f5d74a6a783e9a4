"""The public API pipelines import: `engine.load()` and `KnowledgeBase.evaluate()`.

Data flows one way: YAML → validated model → compiled rulesets → evaluation (durable-rules
decides, Python explains, the two are cross-checked) → result dict. `evaluate` never raises
for any input: a bad record is `invalid`, an internal failure is `error`, each with a code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.compile import CompiledKB, compile_kb
from engine.durable_engine import DurableRulesets
from engine.errors import KBErrors
from engine.evaluate import Evaluation
from engine.fingerprint import kb_fingerprint
from engine.kleene import Evaluator
from engine.model import KnowledgeBaseModel
from engine.paths import resolve_rules_dir
from engine.validate import ValidationReport, validate_dir

ENGINE_VERSION = "0.1.0"


class KnowledgeBase:
    """A validated, compiled knowledge base, ready to evaluate patients."""

    def __init__(self, report: ValidationReport) -> None:
        self.model: KnowledgeBaseModel = report.load.model
        self.report = report
        self.fingerprint = kb_fingerprint(report.load.docs, self.model.root)
        self.compiled: CompiledKB = compile_kb(self.model)
        self.evaluator = Evaluator(self.model)
        self.durable = DurableRulesets(self.compiled.levels, f"fsgskb_{self.fingerprint[:12]}")
        self._evaluation = Evaluation(self)

    @property
    def id(self) -> str:
        return str(self.model.manifest["id"])

    @property
    def version(self) -> str:
        return str(self.model.manifest["version"])

    def evaluate(
        self, patient: Any, *, timestamp: str | None = None, include_input: bool = False, mask: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The result for one patient record (see schema/result.schema.json).

        include_input stores the record in the decision record (for replay without the original
        file), with the values at the `mask` JSON pointers replaced by their sha256."""
        result = self._evaluation.run(patient, timestamp=timestamp)
        if include_input:
            from engine.masking import attach_input

            attach_input(result, patient, mask)
        return result

    @property
    def unapproved(self) -> list[str]:
        """Rules that are not active (signed off): --require-approved refuses to use them."""
        return sorted(r.id for r in self.model.rules.values() if r.status != "active")


def load(rules_dir: str | Path | None = None) -> KnowledgeBase:
    """Load, validate and compile a knowledge base; raise KBErrors when it has errors.

    A knowledge base whose exact files validated before comes from the cache (engine.cache)."""
    from engine import cache

    directory = resolve_rules_dir(rules_dir)
    key = cache.content_key(directory)
    report = cache.load_cached(key) if key else None
    if report is None:
        report = validate_dir(directory)
        if not report.ok:
            raise KBErrors(report.errors)
        if key:
            cache.store(key, report)
    return KnowledgeBase(report)
