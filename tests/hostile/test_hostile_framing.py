"""One malformed record must cost only itself, through the real `fsgs-kb batch` on real files:
a stray quote in a CSV cell or a JSON array element, content after a JSON array's closing bracket,
a CSV row with several bad cells. The count of results always equals the count of input records
(for CSV, the rows Python's csv module reads), each once and in order."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from hostile_support import assert_each_record_once, assert_no_traceback, good_line, read_results, run

ROOT = Path(__file__).resolve().parents[2]
HEADER = "id,fsgs.etiology,fsgs.secondary_cause\n"


def _batch(tmp_path: Path, name: str, data: bytes, *args: str) -> list[dict]:
    source, out = tmp_path / name, tmp_path / "out.jsonl"
    source.write_bytes(data)
    result = run("batch", source, "-o", out, "--quiet", *args)
    assert_no_traceback(result)
    assert result.rc in (0, 1), result
    return read_results(out)


def _csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))[1:]


def test_csv_quote_inside_an_unquoted_cell_is_text(tmp_path: Path) -> None:
    """`about 5" of text` is one cell (the csv module agrees): the rows after it are still read."""
    text = HEADER + 'q1,primary,about 5" of text\nq2,primary,\nq3,secondary,\nq4,primary,\n'
    results = _batch(tmp_path, "in.csv", text.encode())
    assert_each_record_once(results, len(_csv_rows(text)))
    assert [r["patient_id"] for r in results] == ["q1", "q2", "q3", "q4"]
    assert "invalid" not in [r["status"] for r in results]


def test_csv_stray_quote_before_a_megabyte_of_rows(tmp_path: Path) -> None:
    """Before the fix every row after the stray quote was one row: 1 result, then input.too_large."""
    rows = [f"r{i},primary,{'x' * 400}\n" for i in range(3000)]
    text = HEADER + 'q1,primary,5" tall\n' + "".join(rows)
    results = _batch(tmp_path, "in.csv", text.encode())
    assert_each_record_once(results, 3001)
    assert {r["status"] for r in results} <= {"evaluated", "scope_undetermined", "out_of_scope"}


def test_csv_quote_that_never_closes_costs_only_its_row(tmp_path: Path) -> None:
    """A cell that opens a quote and never closes it: the csv module would make one row of the
    rest of the file; the reader reports that row and reads the rows after its line."""
    text = HEADER + 'q1,primary,\nq2,primary,"never closed\nq3,primary,\nq4,primary,\n'
    results = _batch(tmp_path, "in.csv", text.encode())
    assert_each_record_once(results, 4)
    assert [r["status"] == "invalid" for r in results] == [False, True, False, False]
    assert "never closed" in results[1]["errors"][0]["message"]
    assert [r["line"] for r in results] == [2, 3, 4, 5]
    assert [r["patient_id"] for r in results[2:]] == ["q3", "q4"]


def test_csv_quoted_cells_that_span_lines_stay_one_row(tmp_path: Path) -> None:
    """What RFC 4180 allows keeps working: newlines and doubled quotes inside quoted cells, text
    after a closing quote, CR LF and lone CR line ends (the csv module's rows, one result each)."""
    text = HEADER + 'q1,primary,"two\nlines, ""quoted"""\r\n"q2",primary,"a"b"c\rq3,primary,x\n'
    results = _batch(tmp_path, "in.csv", text.encode())
    assert_each_record_once(results, len(_csv_rows(text)))
    assert [r["patient_id"] for r in results] == [row[0] for row in _csv_rows(text)]
    assert [r["line"] for r in results] == [2, 4, 5]


def test_csv_row_lists_every_bad_cell(tmp_path: Path) -> None:
    """Each bad cell of a row is one error with its JSON pointer, not only the first."""
    text = "id,age_years,weight_kg,fsgs.biopsy_proven\nq1,forty,heavy,maybe\nq2,40,70,true\n"
    results = _batch(tmp_path, "in.csv", text.encode())
    assert_each_record_once(results, 2)
    pointers = [e["pointer"] for e in results[0]["errors"]]
    assert pointers == ["/age_years", "/weight_kg", "/fsgs/biopsy_proven"], results[0]["errors"]
    assert results[1]["status"] != "invalid"


def test_json_lines_after_an_array_are_read(tmp_path: Path) -> None:
    """From stdin a first line starting with '[' made the input an array; what followed the
    array's ']' vanished. A whole JSON value on line 1 with more lines after it is JSON Lines."""
    data = b'[{"id":"a"}]\n{"id":"b"}\n{"id":"c"}\n'
    result = run("batch", "-", "--quiet", input=data)
    assert_no_traceback(result)
    results = [json.loads(line) for line in result.stdout.splitlines()]
    assert_each_record_once(results, 3)
    assert [r["patient_id"] for r in results] == [None, "b", "c"]
    assert results[0]["status"] == "invalid" and result.rc == 1


def test_cohort_after_a_first_line_array_is_not_lost(tmp_path: Path) -> None:
    cohort = (ROOT / "examples" / "cohort.jsonl").read_bytes().splitlines(keepends=True)[:5]
    results = _batch(tmp_path, "patients.txt", b"[1,2]\n" + b"".join(cohort))
    assert_each_record_once(results, 6)
    assert [r["patient_id"] for r in results[1:]] == [json.loads(line)["id"] for line in cohort]


def test_content_after_a_multiline_array_is_read_as_more_records(tmp_path: Path) -> None:
    """A pretty-printed array, then lines: every element, then one record per line after ']'."""
    data = b'[\n  {"id": "a"},\n  {"id": "b"}\n]  \n\n' + good_line("c") + b"\n" + b"junk\n"
    results = _batch(tmp_path, "in.json", data)
    assert_each_record_once(results, 4)
    assert [r["patient_id"] for r in results] == ["a", "b", "c", None]
    assert [r["line"] for r in results] == [2, 3, 6, 7]
    assert results[3]["status"] == "invalid"


def test_array_with_nothing_after_it_is_unchanged(tmp_path: Path) -> None:
    """A one-line array, then only whitespace, is still an array."""
    results = _batch(tmp_path, "in.json", b'[{"id":"a"}, {"id":"b"}]\n\n  \n')
    assert [r["patient_id"] for r in results] == ["a", "b"]


def test_json_array_stray_quote_costs_only_its_element(tmp_path: Path) -> None:
    """Before the fix: 2 results (a, then "the JSON array is not closed"); c and d were gone."""
    data = b'[{"id":"a"},\n{"id": b"},\n{"id":"c"},\n{"id":"d"}]\n'
    results = _batch(tmp_path, "in.json", data)
    assert_each_record_once(results, 4)
    assert [r["patient_id"] for r in results] == ["a", None, "c", "d"]
    assert "line 2" in results[1]["errors"][0]["message"]


def test_pretty_printed_array_stray_quote_costs_only_its_element(tmp_path: Path) -> None:
    records = [json.dumps({"id": name, "fsgs": {"etiology": "primary"}}, indent=2) for name in "abcd"]
    records[1] = records[1].replace('"primary"', '"primary')  # the quote is never closed
    data = ("[\n" + ",\n".join(records) + "\n]\n").encode()
    results = _batch(tmp_path, "in.json", data)
    assert_each_record_once(results, 4)
    assert [r["patient_id"] for r in results] == ["a", None, "c", "d"]
    assert [r["status"] == "invalid" for r in results] == [False, True, False, False]


def test_json_array_element_missing_its_brace_costs_only_itself(tmp_path: Path) -> None:
    data = b'[{"id":"a"},\n{"id":"b",\n{"id":"c"},\n{"id":"d"}]\n'
    results = _batch(tmp_path, "in.json", data)
    assert_each_record_once(results, 4)
    assert [r["patient_id"] for r in results] == ["a", None, "c", "d"]


def _unclosed_then_rows(n: int) -> bytes:
    rows = "".join(f"r{i},primary,{'x' * 400}\n" for i in range(n))
    return (HEADER + 'q1,primary,"never closed\n' + rows).encode()


def test_csv_file_quote_never_closed_before_a_megabyte_of_rows(tmp_path: Path) -> None:
    """Past the 1 MiB record limit the open quote may still close; it never does, so the file is
    read again from the line after the quote's: every row after it gets its result."""
    results = _batch(tmp_path, "in.csv", _unclosed_then_rows(3000))
    assert_each_record_once(results, 3001)
    assert results[0]["status"] == "invalid" and results[0]["errors"][0]["code"] == "patient.csv"
    assert results[-1]["patient_id"] == "r2999" and results[-1]["line"] == 3002


def test_csv_pipe_quote_never_closed_before_a_megabyte_of_rows() -> None:
    """Standard input cannot go back: the rows kept at the limit are framed again, the rest read on."""
    result = run("batch", "-", "--input-format", "csv", "--quiet", input=_unclosed_then_rows(3000))
    assert_no_traceback(result)
    results = [json.loads(line) for line in result.stdout.splitlines()]
    assert_each_record_once(results, 3001)
    assert [r["patient_id"] for r in results[1:]] == [f"r{i}" for i in range(3000)]


def test_csv_file_quoted_cell_past_the_limit_is_one_too_large_row(tmp_path: Path) -> None:
    """A quoted cell that does close, however long, stays one row (too large), not one per line."""
    text = HEADER + 'q1,primary,"' + "a line of a very long note\n" * 50_000 + '"\nq2,primary,\n'
    results = _batch(tmp_path, "in.csv", text.encode())
    assert_each_record_once(results, 2)
    assert results[0]["errors"][0]["code"] == "input.too_large"
    assert results[1]["patient_id"] == "q2" and results[1]["line"] == 50_003
