"""Read patient records from bytes: JSON Lines, a JSON array, CSV, or one JSON document.

Every input record becomes exactly one `Record`, good or bad, and the reader never stops at a
bad one: a line that is not UTF-8 or not JSON, an empty line, an oversized line, a malformed
array element, a CSV cell of the wrong type. Framing (where a record starts and ends) happens
in the parent (jsonlines.py, jsonarray.py, csvframe.py); parsing (`parse_json`) happens where the
record is evaluated, so batch workers share the work. Memory stays flat: nothing holds more than
one record beyond a bound.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, BinaryIO

import orjson

from fsgs_kb.engine.errors import KBError, pointer_join
from fsgs_kb.engine.load.fields import catalogue
from fsgs_kb.engine.read.csvframe import CsvFramer
from fsgs_kb.engine.read.jsonarray import read_json_array
from fsgs_kb.engine.read.jsonlines import prefixed, read_jsonl
from fsgs_kb.engine.read.jsontext import duplicate_key, loads
from fsgs_kb.engine.read.record import BOM, Record, skip_document, skip_line, too_large
from fsgs_kb.engine.read.shape import MAX_DEPTH, MAX_INT, MAX_RECORD_BYTES, shape_problem

__all__ = [  # the readers' one door: what moved to record.py, jsonlines.py, jsonarray.py is still here
    "BOM",
    "FHIR_FORMATS",
    "FORMATS",
    "Record",
    "oversized_document",
    "parse_json",
    "read_csv",
    "read_document",
    "read_documents",
    "read_json_array",
    "read_jsonl",
    "read_records",
    "record_value",
    "skip_document",
    "skip_line",
    "SNIFF_BYTES",
    "sniff_format",
    "too_large",
]
FORMATS = ("jsonl", "json", "csv")
FHIR_FORMATS = ("fhir", "fhir-bundles", "fhir-bulk")  # read by engine.fhir.records; named here, light to import


def parse_json(raw: bytes, max_bytes: int = MAX_RECORD_BYTES, max_depth: int = MAX_DEPTH) -> tuple[Any, KBError | None]:
    """(value, None) for a JSON document within the limits, else (None, the problem)."""
    if len(raw) > max_bytes:
        return None, too_large("the record", max_bytes)
    try:
        value = loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, _json_problem(exc, raw)
    problem, keys = shape_problem(value, max_depth)
    if problem is not None:
        return None, problem
    duplicate = _duplicate_key(raw, keys)
    if duplicate is not None:
        return None, duplicate
    return value, None


def _json_problem(exc: json.JSONDecodeError, raw: bytes) -> KBError:
    message = exc.msg
    place = _place(exc.lineno, exc.colno)
    if "UTF-8" in message:  # orjson checks the encoding first and says column 1 whatever the place
        return _utf8_problem(raw)
    if "surrogate" in message:  # an escape such as \ud800 with no pair: valid UTF-8, yet no character
        return KBError(
            "input.encoding",
            f"a \\u escape at {place} is half of a surrogate pair: it stands for no character",
            hint="write the character itself (UTF-8), or both halves of its pair: \\ud83d\\ude00",
        )
    if "depth limit" in message or "recursion" in message:
        return KBError("input.too_deep", "nested too deeply to be a patient record")
    if "infinity" in message:
        return KBError("input.number_too_large", f"a number at {place} is too large")
    if "BOM" in message:
        message = "starts with a byte order mark inside the record"
    return KBError("patient.json", f"not valid JSON at {place}: {message}")


def _place(line: int, col: int) -> str:
    """Where in a record: its column on a one-line record (a JSON line), else line and column
    (a pretty-printed document, where a column alone does not say which line)."""
    return f"column {col}" if line <= 1 else f"line {line}, column {col}"


def _utf8_problem(raw: bytes) -> KBError:
    """The first byte that is not UTF-8, by line and column (in characters, as JSON errors are)."""
    try:
        raw.decode("utf-8")
        start = 0  # not reached: orjson found it not UTF-8
    except UnicodeDecodeError as exc:
        start = exc.start
    line_start = raw.rfind(b"\n", 0, start) + 1
    col = len(raw[line_start:start].decode("utf-8")) + 1
    byte = f" (byte 0x{raw[start]:02x})" if start < len(raw) else ""
    place = _place(raw.count(b"\n", 0, start) + 1, col)
    return KBError("input.encoding", f"not valid UTF-8 text at {place}{byte}", hint="save the input as UTF-8")


def _duplicate_key(raw: bytes, keys: int) -> KBError | None:
    key = duplicate_key(raw, keys)
    if key is None:
        return None
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


SNIFF_BYTES = 64  # how much of an input's start `sniff_format` is given (batch peeks at it; replay reads it)


def sniff_format(name: str | None, head: bytes) -> str:
    """csv or jsonl as the name says (.csv; .jsonl, .ndjson), else json if the content starts
    with '[' (the array reader still reads JSON Lines whose first line is an array as JSON
    Lines), else jsonl. `head`: the first SNIFF_BYTES of the input."""
    lowered = (name or "").lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "json" if head.removeprefix(BOM).lstrip().startswith(b"[") else "jsonl"


# A number cell is read as the JSON reader reads a number, in ASCII digits only. float() and
# int() also take `1_000`, fullwidth `７０`, Arabic-Indic `٧٠`, `+70`, `.5` and any Unicode space
# around them: a cell written so is no JSON number, and a program that wrote it may not mean the
# number Python makes of it. Spaces and tabs around a cell are allowed (`70, 45` after a comma).
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_CELL_SPACE = " \t"
_MAX_INT_DIGITS = len(str(MAX_INT))  # more digits than this is beyond 64 bits (and int() may refuse it)
# A C0 control character in a cell (NUL, ESC, a form feed...) is refused, as JSON text refuses one in a
# string: no clinical value holds one, and taken, a NUL went into a patient id and every output showing
# it. A tab (cell whitespace) and a line break (in a quoted cell: CSV's own way of writing one) are text.
_CELL_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_CONTROL_NAMES = {
    "\x00": "NUL",
    "\x1b": "ESC",
    "\x07": "BEL",
    "\x08": "backspace",
    "\x0b": "vertical tab",
    "\x0c": "form feed",
}


class CellError(ValueError):
    """A cell its column's type cannot take, with a hint on how to write it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


_NUMBER_HINT = "write a number as JSON does, in ASCII digits: 70, 70.5, -1, 1e3 (no _, no + or leading 0)"


def _csv_number(raw: str) -> int | float:
    """The number a cell of a number column holds: an integer for an integer's text (exact, within
    64 bits, as the JSON reader takes it), else a float; ValueError for any other text."""
    text = raw.strip(_CELL_SPACE)
    match = _JSON_NUMBER.fullmatch(text)
    if match is None:
        raise CellError(f"{raw!r} is not a number", _NUMBER_HINT)
    if match.group(1) is None and match.group(2) is None:
        if len(text.lstrip("-")) > _MAX_INT_DIGITS or not -MAX_INT < int(text) < MAX_INT:
            raise CellError(f"{raw!r} is an integer beyond 64 bits")
        return int(text)
    number = float(text)
    if not math.isfinite(number):
        raise CellError(f"{raw!r} is not a finite number")
    return number


def _csv_value(raw: str, kind: str) -> Any:
    if kind == "number":
        return _csv_number(raw)
    if kind == "boolean":
        lowered = raw.strip(_CELL_SPACE).lower()
        if lowered not in ("true", "false"):
            raise CellError(f"{raw!r} is not true or false")
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
    in bytes as the csv module frames them (engine/read/csvframe.py), so each row is decoded on
    its own: a row that is not UTF-8, too large, or whose cells conflict is that row's `invalid`
    result, with every bad cell listed. A UTF-8 byte order mark (Excel writes one) is skipped."""
    fields = catalogue()
    rows = CsvFramer(stream).rows()
    first = next(rows, None)
    if first is None:
        return
    header = _csv_cells(first.raw.removeprefix(BOM)) if first.problem is None else []
    header_problem = first.problem or _header_problem(header)
    for number, row in enumerate(rows, start=1):
        if row.problem is None:
            record = _csv_record(number, row.line, header, row.raw, fields, header_problem)
        else:  # a row too large to keep is hashed over all its bytes, as an oversized JSON line is
            record = Record(number, row.line, problem=row.problem, digest=row.digest)
        if record.problem is not None:
            # an unreadable row's result is traceable by the hash of its own bytes (without its line
            # end, as a JSON line's), not by that of no bytes, which every bad row once shared (one
            # decision id for all of them); a row that is read is hashed as the record it makes
            record.raw = row.raw.rstrip(b"\r\n")
        record.end = row.end
        yield record


def _csv_cells(raw: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(raw.decode("utf-8", "surrogateescape"), newline="")), [])


def _header_problem(header: list[str]) -> KBError | None:
    seen: set[str] = set()
    for index, column in enumerate(header, start=1):
        if column in seen:
            return KBError("patient.csv", f"the header names column {column!r} twice")
        seen.add(column)
        found = _CELL_CONTROL.search(column)
        if found is not None:  # a column so named would be read as a field no schema has, or as another
            return KBError(
                "patient.csv",
                f"column {index} of the header holds the control character \\u{ord(found.group()):04x}",
                hint="name each column with its field (dotted: cyclosporine.daily_dose.value)",
            )
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
    except UnicodeDecodeError:  # said as a JSON record's is (its byte was counted from 0 here)
        problem = _utf8_problem(raw)
        return Record(number, line, problem=replace(problem, message=f"row {number}: {problem.message}"))
    try:
        rows = csv.reader(io.StringIO(text, newline=""))
        row, beyond = next(rows, []), next(rows, None)
    except csv.Error as exc:
        return Record(number, line, problem=KBError("patient.csv", f"row {number}: {exc}"))
    if beyond is not None:  # the framer and the csv module disagree: never drop the rest silently
        return Record(number, line, problem=KBError("patient.csv", f"row {number} holds more than one CSV row"))
    if not any(cell.strip() or _CELL_CONTROL.search(cell) for cell in row):  # str.strip() takes \x1c-\x1f
        return Record(number, line, problem=KBError("patient.empty", "empty row: no record"))
    if len(row) != len(header):
        cells = KBError("patient.csv", f"row has {len(row)} cells, the header {len(header)}")
        return Record(number, line, problem=cells)
    record: dict[str, Any] = {}
    problems: list[KBError] = []
    for index, (column, cell) in enumerate(zip(header, row, strict=True), start=1):
        if cell == "":
            continue
        control = _cell_control(cell, number, index, column)
        if control is not None:
            problems.append(control)
            continue
        if "" in column.split("."):  # read as JSON under the pointer "/" it said "/: not valid JSON"
            unnamed = "has no name" if not column else f"is named {column!r}, with an empty part"
            problems.append(
                KBError(
                    "patient.csv",
                    f"column {index} of the header {unnamed}, yet this row has {cell!r} in it",
                    hint="name each column that holds values with its field (dotted: cyclosporine.daily_dose.value)",
                )
            )
            continue
        info = fields.get(column)
        kind = info.type if info else ("string" if column.split(".")[-1] in ("id", "secondary_cause") else "json")
        pointer = "/" + column.replace(".", "/")
        try:
            value = _csv_json(cell) if kind == "json" else _csv_value(cell, kind)
            _set_path(record, column.split("."), value)
        except ValueError as exc:
            hint = exc.hint if isinstance(exc, CellError) else None
            problems.append(KBError("patient.type", f"{pointer}: {exc}", pointer=pointer, hint=hint))
    if not problems:
        return Record(number, line, data=record)
    return Record(number, line, data=record, problem=problems[0], more=tuple(problems[1:]))


def _cell_control(cell: str, number: int, index: int, column: str) -> KBError | None:
    """The problem of a cell holding a control character (_CELL_CONTROL), named by row and column."""
    found = _CELL_CONTROL.search(cell)
    if found is None:
        return None
    char = found.group()
    name = f" ({_CONTROL_NAMES[char]})" if char in _CONTROL_NAMES else ""
    pointer = "/" + column.replace(".", "/") if column and "" not in column.split(".") else ""
    return KBError(
        "patient.csv",
        f"{pointer + ': ' if pointer else ''}the cell in row {number}, column {index} holds the control character "
        f"\\u{ord(char):04x}{name} at character {found.start() + 1}",
        pointer=pointer,
        hint="remove it: no value of a patient record holds one (a tab, or a line break in a quoted cell, is text)",
    )


def _csv_json(cell: str) -> Any:
    value, problem = parse_json(cell.encode("utf-8"))
    if problem is not None:
        raise ValueError(problem.message)
    return value


def read_document(stream: BinaryIO) -> Iterator[Record]:
    """One JSON document (a patient file or standard input) as one record."""
    raw = stream.read(MAX_RECORD_BYTES + 1)
    if len(raw) > MAX_RECORD_BYTES:  # hashed over all its bytes: two oversized files, two decision ids
        skipped, digest = skip_document(stream, raw.removeprefix(BOM))
        yield oversized_document(digest, len(raw) + skipped)
    else:
        # the file's last line ending is not part of the record: the raw bytes an unreadable
        # record's hash is taken over are the same as batch frames them from a line
        yield Record(1, 1, raw=raw.removeprefix(BOM).rstrip(b"\r\n"), end=len(raw))


def oversized_document(digest: str, end: int) -> Record:
    """The record of one document over the size limit: its problem, and the hash of all its bytes
    (without a byte order mark and its last line end, as a document within the limit is hashed)."""
    return Record(1, 1, problem=too_large("the input"), end=end, digest=digest)


def read_documents(stream: BinaryIO) -> Iterator[Record]:
    """A file of results or patients as people and tools write them: one JSON document (an
    object, pretty-printed as `evaluate` prints it), a JSON array of them, or JSON Lines. An array
    is streamed element by element as batch reads it, each at its own line: parsed whole, an array
    over the size limit was read as JSON Lines (its lines no records) and one bad element made
    every element a line of JSON Lines."""
    head = stream.read(MAX_RECORD_BYTES + 1)
    if sniff_format(None, head) == "json":
        yield from read_json_array(prefixed(head, stream))
        return
    if len(head) <= MAX_RECORD_BYTES and head.strip():
        value, problem = parse_json(head.removeprefix(BOM))
        if problem is None and value is not None:
            yield Record(1, 1, raw=head.removeprefix(BOM), end=len(head))
            return
    yield from read_jsonl(prefixed(head, stream))


def read_records(stream: BinaryIO, fmt: str) -> Iterator[Record]:
    if fmt == "csv":
        return read_csv(stream)
    if fmt == "json":
        return read_json_array(stream)
    return read_jsonl(stream)
