"""Render problems and validation reports for people (text) and programs (JSON).

This is the only module that formats a KBError, so every command shows problems the same way:
`path:line:col: error[code] message (hint: ...)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fsgs_kb.engine.check.report import Coverage, ValidationReport
from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.report.colour import PLAIN, Palette
from fsgs_kb.engine.report.identity import kb_line
from fsgs_kb.engine.report.text import escape_control
from fsgs_kb.engine.version import __version__


def _where(error: KBError) -> str:
    where = error.file or "fsgs-kb"  # a problem of no file or record: the program says it, as tools do
    if error.line is not None:
        where += f":{error.line}" + (f":{error.col}" if error.col is not None else "")
    elif error.pointer and not error.file:
        where = error.pointer
    return where


def format_error(error: KBError, paint: Palette = PLAIN) -> str:
    """The one text form of a problem: `where: severity[code] message (hint: …)`; `paint`
    colours the severity on a terminal (after escaping, so data never carries escapes)."""
    label = escape_control(f"{error.severity}[{error.code}]")
    role = "error" if error.severity == "error" else "warning"
    message = escape_control(f" {error.message}" + (f" (hint: {error.hint})" if error.hint else ""))
    return f"{escape_control(_where(error))}: {paint(label, role)}{message}"


def coverage_line(coverage: Coverage) -> str:
    encoded = ", ".join(coverage.encoded)
    skipped = ", ".join(coverage.not_encoded)
    return (
        f"coverage: {len(coverage.encoded)}/{coverage.total} sentences encoded by rules ({encoded}); "
        f"{len(coverage.not_encoded)} not encoded, with a reason ({skipped}); "
        f"{len(coverage.uncovered)} uncovered"
    )


def validation_text(report: ValidationReport, paint: Palette = PLAIN) -> str:
    lines = [format_error(p, paint) for p in report.problems]
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


def _github_escape(text: str, in_property: bool = False) -> str:
    """Workflow-command escaping: %, CR and LF always; : and , in properties as well."""
    text = escape_control(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))
    return text.replace(":", "%3A").replace(",", "%2C") if in_property else text


def validation_github(report: ValidationReport, identity: dict[str, Any]) -> str:
    """GitHub Actions annotations (`::error file=…,line=…,col=…,title=…::message`), one a problem,
    framed by the knowledge-base line and the summary as plain log lines."""
    lines = [kb_line(identity)]
    for problem in report.problems:
        level = "error" if problem.severity == "error" else "warning"
        props = [f"file={_github_escape(problem.file or '', True)}"] if problem.file else []
        if problem.line is not None:
            props += [f"line={problem.line}", f"col={problem.col}"]
        props.append(f"title={_github_escape(f'{problem.severity}[{problem.code}]', True)}")
        message = problem.message + (f" (hint: {problem.hint})" if problem.hint else "")
        if not problem.file and problem.pointer:
            message = f"{problem.pointer}: {message}"
        lines.append(f"::{level} {','.join(props)}::{_github_escape(message)}")
    lines.append(validation_text(report).splitlines()[-1])
    return "\n".join(lines)


SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def validation_sarif(report: ValidationReport, identity: dict[str, Any]) -> str:
    """SARIF 2.1.0 (code scanning): one result per problem, rules by problem code, the
    knowledge base in the run's properties. Locations are relative to the working directory."""
    codes = sorted({p.code for p in report.problems})
    results = []
    for problem in report.problems:
        result: dict[str, Any] = {
            "ruleId": problem.code,
            "ruleIndex": codes.index(problem.code),
            "level": "error" if problem.severity == "error" else "warning",
            "message": {"text": problem.message + (f" (hint: {problem.hint})" if problem.hint else "")},
        }
        if problem.file:
            location: dict[str, Any] = {"artifactLocation": {"uri": Path(problem.file).as_posix()}}
            if problem.line is not None:
                location["region"] = {"startLine": problem.line, "startColumn": problem.col}
            result["locations"] = [{"physicalLocation": location}]
        if problem.pointer:
            result["properties"] = {"pointer": problem.pointer}
        results.append(result)
    run = {
        "tool": {
            "driver": {
                "name": "fsgs-kb",
                "version": __version__,
                "rules": [{"id": code, "name": code.replace(".", "_")} for code in codes],
            }
        },
        "results": results,
        "properties": {"kb": identity, "ok": report.ok},
    }
    return json.dumps({"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}, indent=2, ensure_ascii=False)
