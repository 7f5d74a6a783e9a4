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

    def evaluate(self, patient: Any, *, timestamp: str | None = None) -> dict[str, Any]:
        """The result for one patient record (see schema/result.schema.json)."""
        return self._evaluation.run(patient, timestamp=timestamp)


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
