"""Read patient records from bytes: JSON Lines, a JSON array, CSV, or one JSON document.

Every input record becomes exactly one `Record`, good or bad, and the reader never stops at a
bad one: a line that is not UTF-8 or not JSON, an empty line, an oversized line, a malformed
array element, a CSV cell of the wrong type. Framing (where a record starts and ends) happens
here, in the parent; parsing (`parse_json`) happens where the record is evaluated, so batch
workers share the work. Memory stays flat: nothing holds more than one record beyond a bound.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson

from fsgs_kb.engine.errors import KBError, KBErrors, pointer_join
from fsgs_kb.engine.load.fields import catalogue
from fsgs_kb.engine.read.shape import MAX_RECORD_BYTES, shape_problem

FORMATS = ("jsonl", "json", "csv")
CHUNK = 1 << 16
MAX_SKIP = 256 << 20  # an oversized line is skipped to its end; one that never ends stops the run
BOM = b"\xef\xbb\xbf"
_STRING_OR_KEY = re.compile(rb'"(?:[^"\\]|\\.)*"(\s*:)?')
_ARRAY_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]|"')


@dataclass(slots=True)
class Record:
    """One input record: its ordinal, the input line it starts on, and its bytes or problem.

    `raw` is the record's JSON text (parsed later, by `parse_json`); `data` a record the reader
    already built (CSV, FHIR); `problem` why it cannot be evaluated; `end` the input offset after it.
    FHIR input only: `sources` says, per field pointer, which resource filled it or why it is empty,
    `set_aside` (always with `sources`) which resources were not used and why, `conversion` how the record was made
    (evaluation date, map), and `origin` where in the input it came from (file:line); the result
    carries all four."""

    number: int
    line: int
    raw: bytes = b""
    data: Any = None
    problem: KBError | None = None
    end: int = 0
    sources: dict[str, Any] | None = None
    conversion: dict[str, Any] | None = None
    origin: str | None = None
    set_aside: list[dict[str, Any]] | None = None


def too_large(what: str, limit: int = MAX_RECORD_BYTES) -> KBError:
    return KBError(
        "input.too_large",
        f"{what} is larger than {limit:,} bytes",
        hint="a patient record is a few kilobytes: is this the right input?",
    )


def parse_json(raw: bytes, max_bytes: int = MAX_RECORD_BYTES) -> tuple[Any, KBError | None]:
    """(value, None) for a JSON document within the limits, else (None, the problem)."""
    if len(raw) > max_bytes:
        return None, too_large("the record", max_bytes)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, _json_problem(exc)
    problem, keys = shape_problem(value)
    if problem is not None:
        return None, problem
    if raw.count(b":") > keys:  # colons beyond the keys: in strings, or a key given twice
        duplicate = _duplicate_key(raw, keys)
        if duplicate is not None:
            return None, duplicate
    return value, None


def _json_problem(exc: json.JSONDecodeError) -> KBError:
    message = exc.msg
    if "UTF-8" in message or "surrogate" in message:
        return KBError("input.encoding", f"not valid UTF-8 text at column {exc.colno}", hint="save the input as UTF-8")
    if "depth limit" in message or "recursion" in message:
        return KBError("input.too_deep", "nested too deeply to be a patient record")
    if "infinity" in message:
        return KBError("input.number_too_large", f"a number at column {exc.colno} is too large")
    if "BOM" in message:
        message = "starts with a byte order mark inside the record"
    return KBError("patient.json", f"not valid JSON at column {exc.colno}: {message}")


def _duplicate_key(raw: bytes, keys: int) -> KBError | None:
    if sum(1 for m in _STRING_OR_KEY.finditer(raw) if m.group(1)) == keys:
        return None
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [k for k, _ in items]
        found.extend(k for i, k in enumerate(names) if k in names[:i])
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)
    key = found[0] if found else "?"
    return KBError(
        "input.duplicate_key",
        f"key {json.dumps(key)} appears twice in one object",
        pointer=pointer_join("", key),
        hint="a record names each field once; which value was meant is unknowable",
    )


def record_value(record: Record) -> tuple[Any, KBError | None]:
    """(value, None) for a record that holds a patient (parsed now if it is JSON text), else
    (whatever the reader could build, to name the patient; the problem)."""
    if record.problem is not None:
        return record.data, record.problem
    if record.data is not None:
        return record.data, None
    return parse_json(record.raw)


def sniff_format(name: str | None, head: bytes) -> str:
    """jsonl unless the name says .csv / .json, or the content starts with '['."""
    lowered = (name or "").lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "json" if head.removeprefix(BOM).lstrip().startswith(b"[") else "jsonl"


def read_jsonl(stream: BinaryIO) -> Iterator[Record]:
    offset = 0
    number = 0
    while True:
        raw = stream.readline(MAX_RECORD_BYTES + 1)
        if not raw:
            return
        offset += len(raw)
        number += 1
        if number == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        if len(raw) > MAX_RECORD_BYTES and not raw.endswith(b"\n"):
            offset += _skip_line(stream, number)
            yield Record(number, number, problem=too_large(f"line {number}"), end=offset)
            continue
        text = raw.rstrip(b"\r\n")
        if not text.strip():
            yield Record(number, number, problem=KBError("patient.empty", "empty line: no record"), end=offset)
        else:
            yield Record(number, number, raw=text, end=offset)


def _skip_line(stream: BinaryIO, number: int) -> int:
    """Consume the rest of an oversized line; stop the run if it never ends (e.g. /dev/zero)."""
    skipped = 0
    while True:
        more = stream.readline(CHUNK)
        skipped += len(more)
        if not more or more.endswith(b"\n"):
            return skipped
        if skipped > MAX_SKIP:
            raise KBErrors(
                [
                    KBError(
                        "input.unbounded", f"line {number} goes on for more than {MAX_SKIP >> 20} MiB: reading stopped"
                    )
                ]
            )


def read_json_array(stream: BinaryIO) -> Iterator[Record]:
    """Stream the elements of a top-level JSON array, one record each, without reading it whole.

    Element boundaries come from a scan of strings and brackets, so an element that is not valid
    JSON inside is that element's `invalid` result and the elements after it are still read."""
    scanner = _ArrayScanner(stream)
    yield from scanner.records()


class _ArrayScanner:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.buffer = b""
        self.base = 0  # input offset of buffer[0]
        self.eof = False
        self.lines = 1  # line number at buffer[0]

    def _fill(self) -> bool:
        more = self.stream.read(CHUNK)
        if not more:
            self.eof = True
            return False
        self.buffer += more
        return True

    def _drop(self, upto: int) -> None:
        self.lines += self.buffer.count(b"\n", 0, upto)
        self.base += upto
        self.buffer = self.buffer[upto:]

    def records(self) -> Iterator[Record]:
        while not self.buffer.lstrip().removeprefix(BOM).lstrip() and self._fill():
            pass
        head = self.buffer.removeprefix(BOM).lstrip()
        if not head:
            return
        if not head.startswith(b"["):
            yield Record(1, 1, problem=KBError("patient.json", "a JSON array input must start with '['"), end=0)
            return
        self._drop(self.buffer.index(b"["))
        self._drop(1)
        number = 0
        while True:
            element = self._next_element()
            if element is None:
                return
            start_line, raw, closed, oversized = element
            number += 1
            end = self.base
            if oversized:
                yield Record(number, start_line, problem=too_large(f"element {number}"), end=end)
            elif not closed:
                yield Record(
                    number, start_line, problem=KBError("patient.json", "the JSON array is not closed"), end=end
                )
                return
            elif raw.strip():
                yield Record(number, start_line, raw=raw.strip(), end=end)
            else:
                yield Record(number, start_line, problem=KBError("patient.json", "an empty array element"), end=end)
            if self._closing:
                return

    def _next_element(self) -> tuple[int, bytes, bool, bool] | None:
        """(line, bytes, closed, oversized) of the next element, or None after the array's end."""
        self._closing = False
        while True:  # skip whitespace before the element
            stripped = self.buffer.lstrip()
            self._drop(len(self.buffer) - len(stripped))
            if self.buffer or not self._fill():
                break
        if not self.buffer:
            return None if self.eof and self.base == 0 else (self.lines, b"", False, False)
        if self.buffer.startswith(b"]"):
            self._drop(1)
            return None
        start_line = self.lines
        depth, pos, oversized = 0, 0, False
        while True:
            match = _ARRAY_TOKEN.search(self.buffer, pos)
            if match is None or (match.group() == b'"' and not self.eof):
                if pos > MAX_RECORD_BYTES or len(self.buffer) > MAX_RECORD_BYTES:
                    oversized = True
                    cut = match.start() if match is not None else len(self.buffer)
                    self._drop(cut)
                    pos = 0
                if not self._fill():
                    return start_line, b"", False, oversized
                continue
            token = match.group()
            pos = match.end()
            if token in (b"[", b"{"):
                depth += 1
            elif token in (b"]", b"}"):
                if depth == 0:  # the array's own closing bracket
                    raw = self.buffer[: match.start()]
                    self._drop(match.end())
                    self._closing = True
                    return start_line, raw, True, oversized or len(raw) > MAX_RECORD_BYTES
                depth -= 1
            elif token == b"," and depth == 0:
                raw = self.buffer[: match.start()]
                self._drop(match.end())
                return start_line, raw, True, oversized or len(raw) > MAX_RECORD_BYTES
            elif token == b'"':  # an unterminated string at the end of the input
                self._drop(len(self.buffer))
                return start_line, b"", False, oversized


def _csv_value(raw: str, kind: str) -> Any:
    if kind == "number":
        try:
            number = float(raw)
        except ValueError:
            raise ValueError(f"'{raw}' is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"'{raw}' is not a finite number")
        return int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() else number
    if kind == "boolean":
        lowered = raw.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError(f"'{raw}' is not true or false")
        return lowered == "true"
    if kind == "array":
        return [item.strip() for item in raw.replace("|", ";").split(";") if item.strip()]
    return raw


def _set_path(record: dict[str, Any], keys: list[str], value: Any) -> None:
    node = record
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ValueError(f"column {'.'.join(keys)} and column {'.'.join(keys[: i + 1])} both hold a value")
        node = child
    if isinstance(node.get(keys[-1]), dict):
        raise ValueError(f"column {'.'.join(keys)} and a column below it both hold a value")
    node[keys[-1]] = value


def read_csv(stream: BinaryIO) -> Iterator[Record]:
    """CSV with dotted column names (cyclosporine.daily_dose.value); empty cell = absent.

    Cells are typed by the patient schema; list cells separate items with ';'. Rows are framed
    in bytes (a row ends at a newline outside quotes), so each row is decoded on its own: a row
    that is not UTF-8, too large, or whose cells conflict is that row's `invalid` result. A UTF-8
    byte order mark (Excel writes one) is skipped."""
    fields = catalogue()
    rows = _csv_rows(stream)
    first = next(rows, None)
    if first is None:
        return
    _, header_bytes, _, header_problem = first
    header = _csv_cells(header_bytes.removeprefix(BOM)) if header_problem is None else []
    header_problem = header_problem or _header_problem(header)
    for number, (line, raw, end, problem) in enumerate(rows, start=1):
        if problem is None:
            record = _csv_record(number, line, header, raw, fields, header_problem)
        else:
            record = Record(number, line, problem=problem)
        record.end = end
        yield record


def _csv_rows(stream: BinaryIO) -> Iterator[tuple[int, bytes, int, KBError | None]]:
    """(first line, bytes, end offset, problem) of each CSV row: a row ends at a newline that is
    outside quotes, i.e. after an even number of quote characters (RFC 4180 doubles them)."""
    offset, line = 0, 0
    while True:
        start_line = line + 1
        parts: list[bytes] = []
        size = quotes = 0
        while True:
            chunk = stream.readline(CHUNK)
            if not chunk:
                break
            offset += len(chunk)
            line += chunk.endswith(b"\n")
            quotes += chunk.count(b'"')
            size += len(chunk)
            if size <= MAX_RECORD_BYTES:
                parts.append(chunk)
            elif size > MAX_RECORD_BYTES + MAX_SKIP:
                raise KBErrors([KBError("input.unbounded", f"row at line {start_line} does not end: reading stopped")])
            if chunk.endswith(b"\n") and quotes % 2 == 0:
                break
        if not size:
            return
        problem = too_large(f"the row at line {start_line}") if size > MAX_RECORD_BYTES else None
        yield start_line, b"".join(parts), offset, problem


def _csv_cells(raw: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(raw.decode("utf-8", "surrogateescape"), newline="")), [])


def _header_problem(header: list[str]) -> KBError | None:
    seen: set[str] = set()
    for column in header:
        if column in seen:
            return KBError("patient.csv", f"the header names column {column!r} twice")
        seen.add(column)
        if not column.isascii() and any("\udc80" <= c <= "\udcff" for c in column):
            return KBError("input.encoding", "the header is not valid UTF-8 text")
    return None


def _csv_record(
    number: int, line: int, header: list[str], raw: bytes, fields: Any, header_problem: KBError | None
) -> Record:
    if header_problem is not None:
        return Record(number, line, problem=header_problem)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Record(
            number, line, problem=KBError("input.encoding", f"row {number} is not UTF-8 text (byte {exc.start})")
        )
    try:
        row = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as exc:
        return Record(number, line, problem=KBError("patient.csv", f"row {number}: {exc}"))
    if not any(cell.strip() for cell in row):
        return Record(number, line, problem=KBError("patient.empty", "empty row: no record"))
    if len(row) != len(header):
        cells = KBError("patient.csv", f"row has {len(row)} cells, the header {len(header)}")
        return Record(number, line, problem=cells)
    record: dict[str, Any] = {}
    problem = None
    for column, cell in zip(header, row, strict=True):
        if cell == "":
            continue
        info = fields.get(column)
        kind = info.type if info else ("string" if column.split(".")[-1] in ("id", "secondary_cause") else "json")
        pointer = "/" + column.replace(".", "/")
        try:
            value = _csv_json(cell) if kind == "json" else _csv_value(cell, kind)
            _set_path(record, column.split("."), value)
        except ValueError as exc:
            problem = problem or KBError("patient.type", f"{pointer}: {exc}", pointer=pointer)  # the first bad cell
    return Record(number, line, data=record, problem=problem)


def _csv_json(cell: str) -> Any:
    value, problem = parse_json(cell.encode("utf-8"))
    if problem is not None:
        raise ValueError(problem.message)
    return value


def read_document(stream: BinaryIO) -> Iterator[Record]:
    """One JSON document (a patient file or standard input) as one record."""
    raw = stream.read(MAX_RECORD_BYTES + 1)
    if len(raw) > MAX_RECORD_BYTES:
        yield Record(1, 1, problem=too_large("the input"), end=len(raw))
    else:
        yield Record(1, 1, raw=raw.removeprefix(BOM), end=len(raw))


def read_documents(stream: BinaryIO) -> Iterator[Record]:
    """A file of results or patients as people and tools write them: one JSON document (an
    object, pretty-printed as `evaluate` prints it, or an array of them) or JSON Lines."""
    head = stream.read(MAX_RECORD_BYTES + 1)
    if len(head) <= MAX_RECORD_BYTES:
        value, problem = parse_json(head.removeprefix(BOM)) if head.strip() else (None, None)
        if problem is None and isinstance(value, list):
            yield from (Record(i, i, data=item) for i, item in enumerate(value, start=1))
            return
        if problem is None and value is not None:
            yield Record(1, 1, raw=head.removeprefix(BOM), end=len(head))
            return
    yield from read_jsonl(io.BufferedReader(_Prefixed(head, stream)))


class _Prefixed(io.RawIOBase):
    """Bytes already read, then the rest of the stream: lets a reader look ahead and go back."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = memoryview(head)
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def read_records(stream: BinaryIO, fmt: str) -> Iterator[Record]:
    if fmt == "csv":
        return read_csv(stream)
    if fmt == "json":
        return read_json_array(stream)
    return read_jsonl(stream)
