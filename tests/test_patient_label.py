"""How a patient id reads in a heading of trace, replay and explain (report/text.py `patient_label`)."""

from __future__ import annotations

import pytest

from fsgs_kb.engine.report.text import patient_label


@pytest.mark.parametrize(
    ("patient_id", "shown"),
    [
        (None, "(no id)"),
        ("", "(no id)"),
        ("   ", "(no id)"),
        ("P1", "P1"),
        ("a\x1bb", "a\\x1bb"),
        ("x" * 10_000, "x" * 60 + "… (10,000 characters)"),
    ],
)
def test_a_patient_id_in_a_heading_is_named_even_when_odd(patient_id: object, shown: str) -> None:
    """trace printed `for patient :` for a blank id, `patient None` for none and a 10 KB id whole."""
    assert patient_label(patient_id) == shown
