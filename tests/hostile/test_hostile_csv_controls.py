"""A control character in a CSV cell is that row's located error, as JSON text refuses one.

A NUL, ESC, form feed or any other C0 control character in a cell was taken: `P1\\x00x` became the
patient id (and went into every output that shows it), a NUL in a number cell was "not a number"
only by luck of its column. Each is now the row's `invalid` result naming the column's pointer, the
row and the column, with every such cell listed; the rows around it are evaluated. A tab (cell
whitespace) and a line break in a quoted cell (CSV's way of writing one) are text, as before."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hostile_support import assert_each_record_once, assert_no_traceback, read_results, run

from fsgs_kb.engine.read.records import read_csv

CONTROLS = [chr(c) for c in range(0x20) if chr(c) not in "\t\r\n"]
COLUMNS = {  # a column of each kind the CSV reader types, and a valid cell for it
    "id": "P1",
    "age_years": "40",
    "fsgs.biopsy_proven": "true",
    "fsgs.etiology": "primary",
    "fsgs.secondary_cause": "HIV",
    "ext.note": "12",  # a column the schema does not name is read as JSON
}


def _problems(text: bytes) -> list:
    return [[] if r.problem is None else [r.problem, *r.more] for r in read_csv(io.BytesIO(text))]


@pytest.mark.parametrize("char", CONTROLS, ids=[f"u{ord(c):04x}" for c in CONTROLS])
def test_a_control_character_in_any_cell_is_refused(char: str) -> None:
    header = ",".join(COLUMNS)
    good = ",".join(COLUMNS.values())
    for index, column in enumerate(COLUMNS, start=1):
        cells = list(COLUMNS.values())
        cells[index - 1] = cells[index - 1][:1] + char + cells[index - 1][1:]
        text = f"{header}\n{good}\n{','.join(cells)}\n{good}\n".encode()
        problems = _problems(text)
        assert problems[0] == [] and problems[2] == [], "the rows around it are read"
        assert len(problems[1]) == 1, problems[1]
        problem = problems[1][0]
        pointer = "/" + column.replace(".", "/")
        assert problem.code == "patient.csv" and problem.pointer == pointer, problem
        assert problem.message.startswith(f"{pointer}: the cell in row 2, column {index} holds the control ")
        assert f"\\u{ord(char):04x}" in problem.message and char not in problem.message


def test_every_bad_cell_of_a_row_is_listed() -> None:
    (problems,) = _problems(b"id,age_years,weight_kg\nP\x001,4\x1b0,70\x0c\n")
    assert [(p.pointer, "(NUL)" in p.message or "(ESC)" in p.message) for p in problems] == [
        ("/id", True),
        ("/age_years", True),
        ("/weight_kg", False),
    ]
    assert "(form feed) at character 3" in problems[2].message


def test_a_row_of_control_characters_is_not_an_empty_row() -> None:
    (problems,) = _problems(b"id,age_years\n\x1c,\x1f\n")  # str.strip() takes both as whitespace
    assert [p.code for p in problems] == ["patient.csv", "patient.csv"]


def test_a_tab_and_a_quoted_line_break_are_text() -> None:
    records = list(read_csv(io.BytesIO(b'id,age_years,fsgs.secondary_cause\nP1,\t40\t,"two\r\nlines"\n')))
    assert records[0].problem is None
    assert records[0].data == {"id": "P1", "age_years": 40, "fsgs": {"secondary_cause": "two\r\nlines"}}


def test_a_control_character_in_the_header_makes_each_row_invalid() -> None:
    problems = _problems(b"id,age\x00_years\nP1,40\nP2,41\n")
    assert [len(p) for p in problems] == [1, 1]
    assert problems[0][0].message == "column 2 of the header holds the control character \\u0000"


def test_a_batch_goes_on_past_a_row_with_a_nul(tmp_path: Path) -> None:
    source = tmp_path / "patients.csv"
    source.write_bytes(b"id,age_years\nP1,40\nP\x002,41\nP3,4\x002\nP4,43\n")
    out = tmp_path / "out.jsonl"
    result = run("batch", source, "-o", out, "--workers", "1", "--quiet", timeout=120)
    assert_no_traceback(result)
    assert result.rc == 1, result
    results = read_results(out)
    assert_each_record_once(results, 4)
    assert [r["status"] == "invalid" for r in results] == [False, True, True, False]
    assert [r["patient_id"] for r in results] == ["P1", None, "P3", "P4"]
    assert "\x00" not in out.read_text()
