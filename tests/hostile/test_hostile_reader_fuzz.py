"""Fuzz the readers in-process, many examples: arbitrary bytes in every input format give one
record per record the format defines, and no exception, ever (the subprocess fuzz in
test_hostile_fuzz.py checks the same end to end, with fewer examples)."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

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
