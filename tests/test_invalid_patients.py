"""Golden tests: invalid patient records are rejected with exact pointers, codes and messages."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

CASES_FILE = Path(__file__).parent / "invalid_patients" / "cases.yaml"
EXPECTED_FILE = CASES_FILE.with_name("expected.yaml")
CASES = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))["cases"]


def _errors(result: dict[str, Any]) -> list[str]:
    return [
        f"{e['pointer']} [{e['code']}] {e['message']}" + (f" (hint: {e['hint']})" if "hint" in e else "")
        for e in result["errors"]
    ]


@pytest.fixture(scope="module")
def expected(kb: Any) -> dict[str, list[str]]:
    """The golden file; with FSGS_UPDATE_GOLDENS=1 it is first rewritten from current behaviour."""
    if os.environ.get("FSGS_UPDATE_GOLDENS"):
        fresh = {case["name"]: _errors(kb.evaluate(case["record"])) for case in CASES}
        EXPECTED_FILE.write_text(yaml.safe_dump(fresh, allow_unicode=True, width=200, sort_keys=False), "utf-8")
    loaded: dict[str, list[str]] = yaml.safe_load(EXPECTED_FILE.read_text(encoding="utf-8"))
    return loaded


def test_there_are_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_invalid_record(case: dict[str, Any], kb: Any, expected: dict[str, list[str]]) -> None:
    result = kb.evaluate(case["record"])
    assert result["status"] == "invalid"
    assert result["rules"] == [] and result["advice"] == []
    assert _errors(result) == expected[case["name"]]
