"""Scenario runs as JUnit XML (`fsgs-kb test --junit-xml FILE`), the report CI systems read.

One <testcase> per scenario case: classname is the scenario file (`tests.CSA-DOSE-WITHIN`),
name the case, file and line where it is written; a failing case has one <failure> whose text
lists every mismatch. Text from the knowledge base or records is escaped (XML 1.0 cannot hold
most control characters at all).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from fsgs_kb.engine.report.text import escape_control
from fsgs_kb.engine.scenarios.check import CaseResult


def _classname(file: str) -> str:
    """`tests.CSA-DOSE-WITHIN` for rules/tests/CSA-DOSE-WITHIN.yaml, wherever the rules are."""
    return f"tests.{Path(file).stem}"


def junit_xml(results: list[CaseResult], kb: dict[str, Any]) -> bytes:
    failures = sum(1 for r in results if not r.passed)
    seconds = sum(r.seconds for r in results)
    suites = ET.Element(
        "testsuites", tests=str(len(results)), failures=str(failures), errors="0", time=f"{seconds:.3f}"
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="fsgs-kb scenarios",
        tests=str(len(results)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{seconds:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for key in ("id", "version", "fingerprint", "path"):
        ET.SubElement(properties, "property", name=f"kb.{key}", value=escape_control(str(kb.get(key))))
    for outcome in results:
        case = outcome.case
        element = ET.SubElement(
            suite,
            "testcase",
            classname=escape_control(_classname(case.file)),
            name=escape_control(case.name),
            file=escape_control(case.file),
            line=str(case.line),
            time=f"{outcome.seconds:.3f}",
        )
        if not outcome.passed:
            failure = ET.SubElement(element, "failure", message=escape_control(outcome.failures[0]))
            lines = [f"{case.file}:{case.line}: {case.id}"] + (["note: " + case.note] if case.note else [])
            failure.text = "\n".join(escape_control(line) for line in lines + outcome.failures)
    ET.indent(suites)
    text: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return text + b"\n"
