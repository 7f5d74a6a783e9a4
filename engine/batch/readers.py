"""Read patient records from JSON Lines, a JSON array or CSV, one at a time.

Every input record becomes exactly one `Record`, good or bad: a line that is not JSON, an empty
line, a CSV cell that is not a number. The reader never loads the whole input, so memory stays
flat whatever its size, and it never stops at a bad record.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from fsgs_kb.engine.load.fields import catalogue

FORMATS = ("jsonl", "json", "csv")
CHUNK = 1 << 16


@dataclass
class Record:
    """One input record: its ordinal, where it was in the input, and its content or problem.

    `text` is the raw JSON text (parsed in a worker, to spread the work); `data` a record already
    parsed (JSON array, CSV); `problem` a reason it could not be read at all.
    """

    number: int
    line: int
    text: str | None = None
    data: Any = None
    problem: tuple[str, ...] | None = None  # (code, message[, JSON pointer])
    size: int = 0  # bytes of input consumed, for progress


def sniff_format(name: str | None, head: str) -> str:
    """jsonl unless the name says .csv / .json, or the content starts with '['."""
    lowered = (name or "").lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "json" if head.lstrip().startswith("[") else "jsonl"


def read_jsonl(stream: IO[str]) -> Iterator[Record]:
    for number, raw in enumerate(stream, start=1):
        size = len(raw.encode("utf-8", "surrogateescape")) if not raw.isascii() else len(raw)
        text = raw.rstrip("\r\n")
        if not text.strip():
            yield Record(number, number, problem=("patient.empty", "empty line: no record"), size=size)
        else:
            yield Record(number, number, text=text, size=size)


def read_json_array(stream: IO[str]) -> Iterator[Record]:
    """Stream the elements of a top-level JSON array without reading it whole."""
    decoder = json.JSONDecoder()
    buffer, pos, number, started = "", 0, 0, False
    eof = False
    while True:
        if not eof and len(buffer) - pos < CHUNK:
            more = stream.read(CHUNK)
            eof = not more
            buffer, pos = buffer[pos:] + more, 0
        while pos < len(buffer) and buffer[pos] in " \t\r\n,":
            pos += 1
        if not started:
            if pos >= len(buffer) and eof:
                return
            if pos < len(buffer):
                if buffer[pos] != "[":
                    raise ValueError("a JSON array input must start with '['")
                started, pos = True, pos + 1
            continue
        if pos < len(buffer) and buffer[pos] == "]":
            return
        if pos >= len(buffer):
            if eof:
                number += 1
                yield Record(number, number, problem=("patient.json", "the JSON array is not closed"))
                return
            continue
        try:
            value, end = decoder.raw_decode(buffer, pos)
        except json.JSONDecodeError as exc:
            if not eof:
                more = stream.read(CHUNK)
                eof = not more
                buffer += more
                continue
            number += 1
            yield Record(number, number, problem=("patient.json", f"element {number} is not valid JSON: {exc.msg}"))
            return
        number += 1
        yield Record(number, number, data=value, size=end - pos)
        pos = end


def _csv_value(raw: str, kind: str) -> Any:
    if kind == "number":
        try:
            number = float(raw)
        except ValueError:
            raise ValueError(f"'{raw}' is not a number") from None
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
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def read_csv(stream: IO[str]) -> Iterator[Record]:
    """CSV with dotted column names (cyclosporine.daily_dose.value); empty cell = absent.
    Cells are typed by the patient schema; list cells separate items with ';'."""
    fields = catalogue()
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        return
    for number, row in enumerate(reader, start=1):
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            yield Record(number, line, problem=("patient.empty", "empty row: no record"))
            continue
        if len(row) != len(header):
            yield Record(number, line, problem=("patient.csv", f"row has {len(row)} cells, the header {len(header)}"))
            continue
        record: dict[str, Any] = {}
        problem = None
        for column, cell in zip(header, row, strict=True):
            if cell == "":
                continue
            info = fields.get(column)
            kind = info.type if info else ("string" if column.split(".")[-1] in ("id", "secondary_cause") else "json")
            try:
                value = json.loads(cell) if kind == "json" else _csv_value(cell, kind)
            except ValueError as exc:
                pointer = "/" + column.replace(".", "/")
                problem = problem or ("patient.type", f"{pointer}: {exc}", pointer)  # the first bad cell
                continue
            _set_path(record, column.split("."), value)
        if problem:
            yield Record(number, line, data=record, problem=problem)  # data: only to name the patient
        else:
            yield Record(number, line, data=record, size=sum(len(c) + 1 for c in row))


def read_records(stream: IO[str], fmt: str) -> Iterator[Record]:
    if fmt == "csv":
        return read_csv(stream)
    if fmt == "json":
        return read_json_array(stream)
    return read_jsonl(stream)
