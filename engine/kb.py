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
from fsgs_kb.engine.check.validate import ValidationReport, validate_dir
from fsgs_kb.engine.compile.durable import DurableRulesets
from fsgs_kb.engine.compile.proof import prove
from fsgs_kb.engine.compile.rulesets import CompiledKB, compile_kb
from fsgs_kb.engine.errors import KBErrors
from fsgs_kb.engine.evaluate.evaluation import Evaluation
from fsgs_kb.engine.evaluate.kleene import Evaluator
from fsgs_kb.engine.evaluate.masking import attach_input
from fsgs_kb.engine.load.fingerprint import kb_fingerprint
from fsgs_kb.engine.load.paths import resolve_rules_dir
from fsgs_kb.engine.model import KnowledgeBaseModel


class KnowledgeBase:
    """A validated, compiled knowledge base, ready to evaluate patients."""

    def __init__(self, report: ValidationReport) -> None:
        self.model: KnowledgeBaseModel = report.load.model
        self.report = report
        self.fingerprint = kb_fingerprint(report.load.docs, self.model.root)
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
        result = self.evaluation.run(patient, timestamp=timestamp)
        if include_input:
            attach_input(result, patient, mask)
        return result

    def failed_result(
        self, code: str, message: str, text: str, status: str = "invalid", pointer: str = ""
    ) -> dict[str, Any]:
        """The result for input that never reached evaluation (not JSON, an empty line, a worker
        that died on it), traceable by the hash of its raw text."""
        return self.evaluation.failed(code, message, text, status=status, pointer=pointer)

    @property
    def unapproved(self) -> list[str]:
        """Rules that are not active (signed off): --require-approved refuses to use them."""
        return sorted(r.id for r in self.model.rules.values() if r.status != "active")


def validate(rules_dir: str | Path | None = None) -> ValidationReport:
    """Every problem of a knowledge base, including whether durable-rules can run it.

    A knowledge base whose exact files validated cleanly before comes from the cache
    (engine.cache), with the proof that the engine takes it."""
    directory = resolve_rules_dir(rules_dir)
    key = cache.content_key(directory)
    report = cache.load_cached(key) if key else None
    if report is None:
        report = prove(validate_dir(directory))
        if report.ok and key and cache.content_key(directory) == key:  # not edited meanwhile
            cache.store(key, report)
    return report


def load(rules_dir: str | Path | None = None) -> KnowledgeBase:
    """Load, validate and compile a knowledge base; raise KBErrors when it has errors."""
    report = validate(rules_dir)
    if not report.ok:
        raise KBErrors(report.errors)
    return KnowledgeBase(report)
