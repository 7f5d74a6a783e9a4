"""Fuzz the readers in-process, many examples: arbitrary bytes in every input format give one
record per record the format defines, and no exception, ever (the subprocess fuzz in
test_hostile_fuzz.py checks the same end to end, with fewer examples)."""

from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from fsgs_kb.engine.read import csvframe
from fsgs_kb.engine.read.records import parse_json, read_csv, read_documents, read_json_array, read_jsonl

PIECES = [b"{", b"}", b"[", b"]", b",", b'"', b"\\", b"\n", b"\r", b'"id"', b":", b"\xff", b"\xef\xbb\xbf", b"1e999"]
chunks = st.one_of(st.binary(max_size=300), st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join))


@settings(max_examples=300, deadline=None, database=None)
@given(data=chunks)
def test_jsonl_gives_one_record_per_line_and_never_raises(data: bytes) -> None:
    records = list(read_jsonl(io.BytesIO(data)))
    pieces = data.split(b"\n")
    assert [r.number for r in records] == list(range(1, len(pieces) - (pieces[-1] == b"") + 1))
    for record in records:
        if record.problem is None:
            parse_json(record.raw)  # never raises: a value or a problem


@settings(max_examples=300, deadline=None, database=None)
@given(data=chunks)
def test_json_array_and_csv_and_documents_never_raise(data: bytes) -> None:
    for reader in (read_json_array, read_csv, read_documents):
        records = list(reader(io.BytesIO(data)))
        assert [r.number for r in records] == list(range(1, len(records) + 1))


@settings(max_examples=200, deadline=None, database=None)
@given(items=st.lists(st.one_of(st.just(b'{"id": "ok"}'), st.just(b'{"id": tru}'), st.just(b"[1, {]}")), max_size=8))
def test_a_malformed_array_element_costs_only_itself(items: list[bytes]) -> None:
    records = list(read_json_array(io.BytesIO(b"[" + b", ".join(items) + b"]")))
    assert len(records) == len(items)
    for item, record in zip(items, records, strict=True):
        assert (record.problem is None and parse_json(record.raw)[1] is None) == (item == b'{"id": "ok"}')


def _framed(data: bytes, chunk: int) -> list[csvframe.CsvRow]:
    saved, csvframe.CHUNK = csvframe.CHUNK, chunk  # small reads put every state on a chunk's edge
    try:
        return list(csvframe.CsvFramer(io.BytesIO(data)).rows())
    finally:
        csvframe.CHUNK = saved


@settings(max_examples=1500, deadline=None, database=None)
@given(text=st.text(alphabet='a,"\r\n', max_size=40), chunk=st.sampled_from([1, 2, 3, 7, 1 << 16]))
def test_csv_rows_are_framed_as_the_csv_module_reads_them(text: str, chunk: int) -> None:
    """Each framed row is exactly one of the csv module's rows, in order, none lost or merged, on
    its own line; a quoted cell that never closes is one bad row and the lines after it are read."""
    data = text.encode()
    rows = _framed(data, chunk)
    line, start = 1, 0
    for row in rows:
        assert row.line == line, (text, rows)
        covered = data[start : row.end]  # every byte in exactly one row, the rows in input order
        assert row.problem is not None or row.raw == covered, (text, rows)
        if row.problem is None:
            assert len(list(csv.reader(io.StringIO(row.raw.decode(), newline="")))) == 1, (text, row)
        line, start = line + covered.count(b"\n") + covered.endswith(b"\r"), row.end
    assert start == len(data), (text, rows)
    if not any(row.problem for row in rows):
        got = [next(csv.reader(io.StringIO(row.raw.decode(), newline=""))) for row in rows]
        assert got == list(csv.reader(io.StringIO(text, newline=""))), (text, rows)


@settings(max_examples=200, deadline=None, database=None)
@given(
    items=st.one_of(  # a missing brace and a stray one later balance out: no scan can tell them apart
        st.lists(st.sampled_from([b'{"id": "ok"}', b'{"id": ok"}', b'{"id": "ok}', b'{"id": "ok"']), max_size=8),
        st.lists(st.sampled_from([b'{"id": "ok"}', b'{"id": ok"}', b'{"id": "ok}', b'{"id": "ok"}}']), max_size=8),
    )
)
def test_a_stray_quote_or_brace_in_an_element_on_its_own_line_costs_only_itself(items: list[bytes]) -> None:
    records = list(read_json_array(io.BytesIO(b"[" + b",\n".join(items) + b"]\n")))
    if items and items[-1] in (b'{"id": ok"}', b'{"id": "ok}'):
        return  # the array's ']' is inside the last element's unclosed string: nothing can end it
    assert len(records) == len(items), (items, records)
    for item, record in zip(items, records, strict=True):
        assert (record.problem is None and parse_json(record.raw)[1] is None) == (item == b'{"id": "ok"}')
