"""Fuzz the batch reader with arbitrary bytes: whatever the file holds, `fsgs-kb batch` exits 0 or 1,
prints no traceback and writes exactly one result per input line.

"Line" is what JSON Lines defines and the reader (engine/read/records.py) implements: a line
ends at "\\n" (a "\\r" before it is dropped; a lone "\\r" is not a line break); an empty or
blank line is a record (invalid, `patient.empty`); a last line without a terminator is a record;
an empty file has none. Each example is a subprocess, so the example count stays small and shrinking is off.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hostile_support import (
    HOSTILE_DEEP,
    escaped_exception,
    good_line,
    read_results,
    run,
)
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

FRAGMENTS = [
    good_line(),
    b'{"id": "x"}',
    b"\n",
    b"\r\n",
    b"\r",
    b"   ",
    b"\xff",
    b"\xc3",  # a truncated two-byte sequence
    b"\xef\xbb\xbf",  # a byte-order mark
    b"\x00",
    b"{",
    b"[",
    b"]",
    b'"\\ud800"',
    b"1" + b"0" * 5000,
    HOSTILE_DEEP,
]
inputs = st.one_of(st.binary(max_size=400), st.lists(st.sampled_from(FRAGMENTS), max_size=12).map(b"".join))


def expected_lines(data: bytes) -> int:
    """Lines as JSON Lines counts them: terminated by \\n; a final unterminated one counts."""
    pieces = data.split(b"\n")
    return len(pieces) - (1 if pieces[-1] == b"" else 0)


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: each step would be another subprocess
    suppress_health_check=[HealthCheck.too_slow],
    report_multiple_bugs=False,
)
@given(data=inputs)
@example(data=good_line() + b"\n" + b'{"id": "U\xff"}\n' + good_line() + b"\n")
@example(data=b"a\rb\r\n\n" + HOSTILE_DEEP)
def test_batch_gives_one_result_per_input_line(data: bytes) -> None:
    """Any bytes in, exit 0/1, no traceback, record numbers exactly 1..(number of input lines)."""
    with tempfile.TemporaryDirectory(prefix="fsgs-fuzz-") as scratch:
        source, out = Path(scratch) / "in.jsonl", Path(scratch) / "out.jsonl"
        source.write_bytes(data)
        result = run("batch", source, "-o", out, "--input-format", "jsonl", "--workers", "1", "--quiet")
        shown = data[:120]
        exception = escaped_exception(result.err)
        assert exception is None, f"traceback ({exception}) for input {shown!r}"
        assert result.rc in (0, 1), f"{result} for input {shown!r}"
        numbers = [r.get("record") for r in read_results(out)] if out.exists() else []
        assert numbers == list(range(1, expected_lines(data) + 1)), f"records {numbers[:10]} for input {shown!r}"
