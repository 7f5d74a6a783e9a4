"""A JSON array of records, streamed one element at a time without reading the array whole.

Element boundaries come from a scan of strings and brackets, not from a parser, so an element
that is not valid JSON inside is that element's `invalid` result and the elements after it are
still read. A malformed element costs only itself:

- brackets are counted, not matched: an element ends at a comma or `]` outside its own brackets,
  and a stray `}` there is one of its bytes (`{"id": "a"}},` is one bad element, not the array's
  end);
- a string cannot span lines in JSON, so a quote not closed on its line (`{"id": b"},`) ends the
  element there instead of swallowing the elements after it; so does the end of the input inside
  an element (a bracket never closed);
- the scan then resumes at the first later line that starts, no deeper than the line the bad
  element started on, with `{` (the next element) or `]` (the array's end). The bad element is
  one record, from where it started to that line.

An element that cannot be read (bad, or over the size limit, whose bytes are not kept) is hashed
over its bytes as they are dropped (without the whitespace after it): each has an input hash and
a decision id of its own, where all of them shared the hash of no bytes.

Nothing after the array is dropped. An input whose first line is a whole JSON value with more
lines after it is JSON Lines that happens to start with an array (`[1,2]` then a patient per line),
and is read as JSON Lines; content after the closing bracket of any other array is read as JSON
Lines too, one record per line, numbered on from the array's elements.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

import orjson

from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.read.jsonlines import prefixed, read_jsonl
from fsgs_kb.engine.read.record import BOM, CHUNK, MAX_SKIP, Record, TailDigest, too_large
from fsgs_kb.engine.read.shape import MAX_RECORD_BYTES

_TOKEN = re.compile(rb'["\[\]{},]')  # what the scan stops at: a string's quote, a bracket, a comma
# Where a string stops: its closing quote, an escape, a line end (a JSON string cannot span lines).
# Found by search, not by one regex over the whole string: `"(?:[^"\\\n]|\\[^\n])*"` kept a
# backtracking entry per byte of a string not yet closed (~150 MB to scan a 1 MiB one), and was run
# again from the quote at every chunk read (a 400 MB string: minutes, gigabytes).
_STRING_STOP = re.compile(rb'["\\\n]')
_CLOSED, _LINE_END, _MORE = range(3)
_RESUME = re.compile(rb"\n([ \t]*)[{\]]")  # a line that may start the next element or end the array
_NON_WS = re.compile(rb"[^ \t\r\n]")
NOT_CLOSED = KBError("patient.json", "the JSON array is not closed")


class _Element(NamedTuple):
    line: int
    raw: bytes
    problem: KBError | None = None
    oversized: bool = False
    last: bool = False  # the array ends with it (closing bracket, or the input ends)
    digest: str | None = None  # of its bytes, when they are not all in `raw` (bad, or too large)

    def record(self, number: int, end: int) -> Record:
        if self.oversized or len(self.raw) > MAX_RECORD_BYTES:
            digest = self.digest or hashlib.sha256(self.raw.strip()).hexdigest()
            return Record(number, self.line, problem=too_large(f"element {number}"), end=end, digest=digest)
        if self.problem is not None:
            return Record(number, self.line, problem=self.problem, end=end, digest=self.digest)
        raw = self.raw.strip()
        if raw:
            return Record(number, self.line, raw=raw, end=end)
        return Record(number, self.line, problem=KBError("patient.json", "an empty array element"), end=end)


def _string_end(buffer: bytes, i: int) -> tuple[int, int]:
    """Where the string whose inside goes on at buffer[i] stops: (_CLOSED, the offset after its
    closing quote); (_LINE_END, the offset of a line end in it); (_MORE, the offset up to which
    its bytes are read) when the buffer ends inside it (a backslash whose escaped byte is not read
    yet is not counted as read)."""
    while True:
        stop = _STRING_STOP.search(buffer, i)
        if stop is None:
            return _MORE, len(buffer)
        at = stop.start()
        if buffer[at] == 0x22:
            return _CLOSED, at + 1
        if buffer[at] == 0x0A:
            return _LINE_END, at
        if at + 1 == len(buffer):
            return _MORE, at
        if buffer[at + 1] == 0x0A:  # an escaped line end is a line end in the string all the same
            return _LINE_END, at + 1
        i = at + 2


def read_json_array(stream: BinaryIO) -> Iterator[Record]:
    """The elements of a top-level JSON array, one record each (see the module docstring)."""
    return _ArrayScanner(stream).records()


class _ArrayScanner:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.buffer = b""
        self.base = 0  # input offset of buffer[0]
        self.eof = False
        self.lines = 1  # line number at buffer[0]
        self.indent = 0  # leading spaces and tabs of that line before buffer[0]
        self.in_indent = True  # nothing but spaces and tabs on that line before buffer[0]
        self.closed = False  # the array's closing bracket was read
        self.element: TailDigest | None = None  # the bytes of the element being scanned, as they are dropped
        self.start = (0, 1)  # input offset and line of that element

    def _fill(self) -> bool:
        if self.element is not None and self.base - self.start[0] > MAX_RECORD_BYTES + MAX_SKIP:
            message = f"the element at line {self.start[1]} does not end: reading stopped"
            raise KBErrors([KBError("input.unbounded", message, line=self.start[1])])
        more = self.stream.read(CHUNK)
        if not more:
            self.eof = True
            return False
        self.buffer += more
        return True

    def _drop(self, upto: int) -> None:
        newline = self.buffer.rfind(b"\n", 0, upto)
        if newline >= 0:
            self.lines += self.buffer.count(b"\n", 0, upto)
            self.indent, self.in_indent = 0, True
        if self.in_indent:
            head = self.buffer[newline + 1 : upto]
            spaces = len(head) - len(head.lstrip(b" \t"))
            self.indent += spaces
            self.in_indent = spaces == len(head)
        if self.element is not None:
            self.element.update(self.buffer[:upto])
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
        if self._json_lines():
            yield from read_jsonl(prefixed(self.buffer, self.stream))
            return
        self._drop(self.buffer.index(b"[") + 1)
        number = 0
        while (element := self._next_element()) is not None:
            number += 1
            yield element.record(number, self.base)
            if element.last:
                break
        if self.closed:
            yield from self._after(number)

    def _json_lines(self) -> bool:
        """Whether the first line is a whole JSON value and more than whitespace follows it."""
        while b"\n" not in self.buffer and len(self.buffer) <= MAX_RECORD_BYTES and self._fill():
            pass
        newline = self.buffer.find(b"\n")
        if newline < 0 or newline > MAX_RECORD_BYTES:
            return False
        while _NON_WS.search(self.buffer, newline) is None and len(self.buffer) <= 2 * MAX_RECORD_BYTES:
            if not self._fill():
                return False
        if _NON_WS.search(self.buffer, newline) is None:
            return False
        try:
            orjson.loads(self.buffer[:newline].removeprefix(BOM))
        except orjson.JSONDecodeError:
            return False
        return True

    def _after(self, number: int) -> Iterator[Record]:
        """What follows the closing bracket: whitespace, or JSON Lines records numbered on."""
        while (match := _NON_WS.search(self.buffer)) is None:
            self._drop(len(self.buffer))
            if not self._fill():
                return
        self._drop(match.start())
        rest = prefixed(self.buffer, self.stream)
        yield from read_jsonl(rest, number=number, line=self.lines - 1, offset=self.base)

    def _next_element(self) -> _Element | None:
        """The next element, or None at the array's closing bracket."""
        while True:  # skip whitespace before the element
            stripped = self.buffer.lstrip()
            self._drop(len(self.buffer) - len(stripped))
            if self.buffer or not self._fill():
                break
        if not self.buffer:
            return _Element(self.lines, b"", NOT_CLOSED, last=True)
        if self.buffer.startswith(b"]"):
            self._drop(1)
            self.closed = True
            return None
        return self._scan(self.lines, self.indent)

    def _scan(self, start_line: int, indent: int) -> _Element:
        depth, pos, oversized = 0, 0, False
        in_string = False  # pos is inside a string
        self.element, self.start = TailDigest(strip=b" \t\r\n"), (self.base, start_line)
        while True:
            if in_string:
                kind, pos = _string_end(self.buffer, pos)
                if kind == _LINE_END:
                    return self._malformed(start_line, indent, oversized, self._unclosed_string(pos))
                in_string = kind == _MORE
                if not in_string:
                    continue
            else:
                match = _TOKEN.search(self.buffer, pos)
                if match is not None:
                    token, pos = match.group(), match.end()
                    if token == b'"':
                        in_string = True
                    elif token in (b"[", b"{"):
                        depth += 1
                    elif depth and token in (b"]", b"}"):
                        depth -= 1
                    elif token == b"]":  # the array's own closing bracket (a stray '}' is the element's bytes)
                        return self._end(start_line, match, oversized, last=True)
                    elif token == b"," and not depth:
                        return self._end(start_line, match, oversized, last=False)
                    continue
                pos = len(self.buffer)
            if len(self.buffer) > MAX_RECORD_BYTES:  # over the limit: what is read is dropped (hashed)
                oversized = True
                self._drop(pos)
                pos = 0
            if not self._fill():
                return self._malformed(start_line, indent, oversized, None)

    def _end(self, start_line: int, match: re.Match[bytes], oversized: bool, last: bool) -> _Element:
        raw = self.buffer[: match.start()]
        digest = self._element_digest(raw) if oversized else None
        self.element = None
        self._drop(match.end())
        self.closed = last
        return _Element(start_line, raw, oversized=oversized, last=last, digest=digest)

    def _element_digest(self, rest: bytes = b"") -> str | None:
        """The hash of the element's bytes dropped so far and `rest`; the element is done."""
        if self.element is None:
            return None
        self.element.update(rest)
        digest, self.element = self.element.hexdigest(), None
        return digest

    def _line_at(self, at: int) -> int:
        return self.lines + self.buffer.count(b"\n", 0, at)

    def _unclosed_string(self, at: int) -> KBError:
        return KBError(
            "patient.json",
            f"a string on line {self._line_at(at)} is not closed on that line",
            hint='a JSON string cannot span lines; a quote inside one is written \\"',
        )

    def _malformed(self, start_line: int, indent: int, oversized: bool, problem: KBError | None) -> _Element:
        """A bad element (`problem` None: the input ends inside it), up to where the scan resumes."""
        resumed = self._resume(indent)
        if problem is None and resumed:
            problem = KBError("patient.json", f"the element on line {start_line} is not closed")
        digest = self._element_digest()
        return _Element(start_line, b"", problem or NOT_CLOSED, oversized=oversized, last=not resumed, digest=digest)

    def _resume(self, indent: int) -> bool:
        """Drop the rest of a bad element: up to the first line after its first that starts, no
        deeper than `indent`, with '{' or ']' (True), or to the end of the input (False)."""
        while True:
            newline = self.buffer.find(b"\n")
            if newline >= 0:
                for match in _RESUME.finditer(self.buffer, newline):
                    if len(match.group(1)) <= indent:
                        self._drop(match.start() + 1)
                        return True
                newline = self.buffer.rfind(b"\n")
                tail = self.buffer[newline + 1 :]
                keep = len(tail) <= indent and not tail.strip(b" \t")  # may yet start a line to resume at
                self._drop(newline if keep else len(self.buffer))
            else:
                self._drop(len(self.buffer))
            if not self._fill():
                self._drop(len(self.buffer))
                return False
