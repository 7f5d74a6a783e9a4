"""Schema patterns keep their JSON Schema (ECMA-262) meaning: `$` is the end of the text.

Python's `$` also matches before a final newline, so the rule id "CSA-DOSE-EXCEEDS\\n" and the
version "0.3.4\\n" passed the schemas (hostile sweep); golden 94 covers validate, these the other
users of the patterns (the service configuration's schema, the audit's FHIR-part check).
"""

from __future__ import annotations

import json

import pytest

from fsgs_kb.engine.audit.shape import _conforms
from fsgs_kb.engine.load.paths import schema_dir
from fsgs_kb.engine.load.schemas import schema_regex, validator


def test_dollar_is_the_end_of_the_text() -> None:
    assert schema_regex("^[A-Z]+$").search("AB")
    assert not schema_regex("^[A-Z]+$").search("AB\n")
    assert schema_regex("^a[$]b\\$$").search("a$b$")  # a $ in a class or escaped is a dollar sign


def every_pattern() -> list[str]:
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern" and isinstance(value, str):
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted(schema_dir().glob("*.schema.json")):
        walk(json.loads(path.read_text(encoding="utf-8")))
    return sorted(set(found))


@pytest.mark.parametrize("pattern", every_pattern())
def test_no_schema_pattern_takes_a_trailing_newline(pattern: str) -> None:
    """For each anchored pattern, a text it takes stops matching once a newline is added."""
    if not pattern.endswith("$"):
        pytest.skip("not anchored at the end")
    samples: dict[str, str | None] = {
        "^https?://[^/?#\\s]+(/[^?#\\s]*)?$": "https://example.org/fhir",
        "^https?://[^/?#\\s]+$": "https://example.org",
        "^[A-Za-z_][A-Za-z0-9_]*$": "Name_1",
        "^https?://[^?#\\s]+/$": "https://example.org/",
        "^https?://[^\\s]+$": "https://example.org/x",
        "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)$": "0.3.4",
        "^[0-9]{4}-[0-9]{2}-[0-9]{2}$": "2026-12-01",
        "^(T|S[0-9]+)$": "S5",
        "^[a-z][a-z0-9_]*$": "dose_weight_basis",
        "^[0-9]+\\.[0-9]+\\.[0-9]+$": "1.0.0",
        "^[a-z][A-Za-z0-9_]*(\\.[a-z][A-Za-z0-9_]*)*$": "cyclosporine.daily_dose",
        "^[a-z][a-z0-9_-]*$": "dose-unit",
        "^[a-z][a-z0-9-]*$": "fsgs-csa",
        "^[0-9a-f]{64}$": "0" * 64,
        "^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*$": "CSA-DOSE-EXCEEDS",
        "^(/([^~/]|~[01])*)+$": None,  # a JSON pointer: a newline is a character a key may hold
        "^[a-z0-9][a-z0-9-]*$": "cattran-2003",
        "^10\\.[0-9]+/\\S+$": "10.1016/x",
        "^[0-9]+$": "12345",
    }
    assert pattern in samples, f"add a sample text for the new pattern {pattern!r}"
    sample = samples[pattern]
    if sample is None:
        return
    assert schema_regex(pattern).search(sample)
    assert not schema_regex(pattern).search(sample + "\n")
    assert not _conforms(sample + "\n", {"type": "string", "pattern": pattern}, {})


def test_the_schema_validator_refuses_a_trailing_newline() -> None:
    errors = list(validator("manifest").iter_errors({"id": "fsgs-csa\n"}))
    assert any(e.validator == "pattern" and list(e.absolute_path) == ["id"] for e in errors)
