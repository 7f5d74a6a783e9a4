"""Render problems and validation reports for people (text) and programs (JSON).

This is the only module that formats a KBError, so every command shows problems the same way:
`path:line:col: error[code] message (hint: ...)`.
"""

from __future__ import annotations

import json
from typing import Any

from fsgs_kb.engine.check.checks import Coverage
from fsgs_kb.engine.check.validate import ValidationReport
from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.report.text import escape_control


def format_error(error: KBError) -> str:
    """The one text form of a problem: `where: severity[code] message (hint: …)`."""
    where = error.file or "<input>"
    if error.line is not None:
        where += f":{error.line}:{error.col}"
    elif error.pointer and not error.file:
        where = error.pointer
    text = f"{where}: {error.severity}[{error.code}] {error.message}"
    return escape_control(text + (f" (hint: {error.hint})" if error.hint else ""))


def coverage_line(coverage: Coverage) -> str:
    encoded = ", ".join(coverage.encoded)
    skipped = ", ".join(coverage.not_encoded)
    return (
        f"coverage: {len(coverage.encoded)}/{coverage.total} sentences encoded by rules ({encoded}); "
        f"{len(coverage.not_encoded)} not encoded, with a reason ({skipped}); "
        f"{len(coverage.uncovered)} uncovered"
    )


def validation_text(report: ValidationReport) -> str:
    lines = [format_error(p) for p in report.problems]
    if report.coverage is not None:
        lines.append(coverage_line(report.coverage))
    model = report.load.model
    name = f"{model.manifest.get('id', '?')} {model.manifest.get('version', '?')}" if model.manifest else model.root
    lines.append(
        f"{name}: {len(model.rules)} rules, {len(model.parameters)} parameters, "
        f"{len(model.derived)} derived values: {len(report.errors)} error(s), "
        f"{len(report.warnings)} warning(s)"
    )
    return "\n".join(lines)


def coverage_dict(coverage: Coverage | None) -> dict[str, Any] | None:
    if coverage is None:
        return None
    return {
        "encoded": coverage.encoded,
        "not_encoded": coverage.not_encoded,
        "uncovered": coverage.uncovered,
        "sentences": coverage.total,
    }


def validation_json(report: ValidationReport, identity: dict[str, Any] | None = None) -> str:
    """`identity` (engine.load.paths.kb_identity) says which knowledge base was checked."""
    model = report.load.model
    kb = {"id": model.manifest.get("id"), "version": model.manifest.get("version")} if model.manifest else None
    payload = {
        "ok": report.ok,
        "kb": identity if identity is not None else kb,
        "counts": {"rules": len(model.rules), "parameters": len(model.parameters), "derived": len(model.derived)},
        "errors": [e.to_dict() for e in report.errors],
        "warnings": [w.to_dict() for w in report.warnings],
        "coverage": coverage_dict(report.coverage),
    }
    return json.dumps(payload, indent=2, ensure_ascii=False)
