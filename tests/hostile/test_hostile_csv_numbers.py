"""A CSV number cell is read as the JSON reader reads a number, in ASCII digits only.

Python's int() and float() also take `7_0`, fullwidth `７０`, Arabic-Indic `٧٠` and Unicode
spaces around digits: the same values in a JSON record are refused, so a CSV row that holds them
is `invalid`, naming the column and the cell, never read as 70."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hostile_support import assert_no_traceback, read_results, run

from fsgs_kb.engine.read.records import read_csv

NOT_NUMBERS = {
    "underscore": "7_0",
    "fullwidth": "７０",
    "arabic-indic": "٧٠",
    "no-break-space-and-em-space": "\u00a070\u2003",
    "thousands-underscore": "1_000",
    "plus-sign": "+70",
    "bare-fraction": ".5",
    "trailing-point": "70.",
    "leading-zero": "070",
    "hex": "0x10",
    "nan": "NaN",
    "infinity": "Infinity",
    "overflow": "1e400",
}


def _row(cell: str, column: str = "weight_kg") -> tuple[dict | None, list]:
    text = f"id,{column}\nP1,{cell}\n".encode()
    (record,) = list(read_csv(io.BytesIO(text)))
    problems = [] if record.problem is None else [record.problem, *record.more]
    return record.data, problems


@pytest.mark.parametrize("name", sorted(NOT_NUMBERS))
def test_a_cell_json_would_refuse_is_the_rows_located_error(name: str) -> None:
    cell = NOT_NUMBERS[name]
    _, problems = _row(cell)
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.code == "patient.type" and problem.pointer == "/weight_kg"
    assert problem.message.startswith(f"/weight_kg: {cell!r} is not "), problem.message


@pytest.mark.parametrize(
    ("cell", "value"),
    [("70", 70), ("70.5", 70.5), ("1e2", 100.0), ("0.7E+2", 70.0), (" 70 ", 70), ("\t70", 70), ("-0", 0)],
)
def test_a_json_number_is_read_as_json_reads_it(cell: str, value: float) -> None:
    data, problems = _row(cell, "age_years")
    assert not problems and data is not None
    got = data["age_years"]
    assert got == value and type(got) is type(value)


def test_an_integer_beyond_64_bits_is_refused_not_rounded() -> None:
    _, problems = _row("18446744073709551617")
    assert [p.message for p in problems] == ["/weight_kg: '18446744073709551617' is an integer beyond 64 bits"]
    _, problems = _row("9" * 100_000)  # beyond int()'s 4,300-digit limit: refused, no ValueError of int()
    assert problems[0].message.endswith("is an integer beyond 64 bits")


def test_batch_refuses_the_sweeps_cells_with_a_hint(tmp_path: Path) -> None:
    """The sweep's rows through the real CLI: each is `invalid`, every bad cell named; the row
    with ASCII spaces around plain digits is read (70 and 45)."""
    source = tmp_path / "nums.csv"
    source.write_text(
        "id,weight_kg,age_years\nP1,7_0,4_5\nP2,７０,４５\nP3,٧٠,45\nP4,\u00a070\u2003,45\nP5, 70 ,45\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    result = run("batch", source, "-o", out, "--include-input", "--quiet")
    assert_no_traceback(result)
    assert result.rc == 1, result
    got = read_results(out)
    assert [r["status"] for r in got[:4]] == ["invalid"] * 4
    assert [[e["pointer"] for e in r["errors"]] for r in got[:4]] == [
        ["/weight_kg", "/age_years"],
        ["/weight_kg", "/age_years"],
        ["/weight_kg"],
        ["/weight_kg"],
    ]
    assert got[3]["errors"][0]["message"] == "/weight_kg: '\\xa070\\u2003' is not a number"
    assert all("ASCII digits" in e["hint"] for r in got[:4] for e in r["errors"])
    assert got[4]["status"] != "invalid"
    assert got[4]["decision"]["input"]["weight_kg"] == 70 and got[4]["decision"]["input"]["age_years"] == 45
