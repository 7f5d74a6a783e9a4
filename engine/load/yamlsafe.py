"""Load YAML for clinical editors: strict, located, and safe.

PyYAML silently accepts things that change meaning without a word: a duplicate key keeps the
last value, `no` becomes False (YAML 1.1), an unquoted 2024-01-02 becomes a date, `.nan` and
`.inf` (or 1.0e+400) become numbers nothing compares with, and aliases can expand exponentially.
Numbers are read as YAML 1.2 (and JSON) read them: `1e300` is a number, not the text PyYAML's
YAML 1.1 resolver makes of it, and a form the two versions read differently (`0110` is 72 in
YAML 1.1, `1:30` is 90, `0x5A`, `0b1011010`, `9_0`) is refused, because it silently changes a
threshold. Here each of those is an error that points at the line and column, and every node's
position is remembered by JSON pointer so that later stages (schema checks, rule checks) can
point into the YAML too. Nesting deeper than MAX_DEPTH is refused while the document
is composed (`yaml.too_deep`), before any recursive stage could overflow Python's stack. Files
are read by engine.load.files: regular files inside the rules directory, of bounded size.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fsgs_kb.engine.errors import KBError, KBErrors, pointer_join
from fsgs_kb.engine.load.controls import HINT as CONTROL_HINT
from fsgs_kb.engine.load.controls import control_strings
from fsgs_kb.engine.load.files import MAX_FILE_BYTES, RulesFiles
from fsgs_kb.engine.load.syntax import syntax_problem

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "Located",
    "TooDeep",
    "character_problem",
    "compose_yaml",
    "has_surrogate",
    "is_alias",
    "load_yaml",
    "located_error",
    "parse_yaml",
    "collection_tag_problem",
    "read_scalar",
    "surrogate_problem",
    "without_surrogates",
]

MAX_DEPTH = 64  # nested mappings and lists; a knowledge-base file needs about 12
TRUE_FALSE = {"true": True, "false": False}


@dataclass
class Located:
    """A loaded YAML document with the 1-based (line, col) of every value and mapping key."""

    data: Any
    file: str
    values: dict[str, tuple[int, int]] = field(default_factory=dict)
    keys: dict[str, tuple[int, int]] = field(default_factory=dict)

    def where(self, pointer: str, key: bool = False) -> tuple[int, int]:
        """The position of a pointer, or of its nearest located ancestor."""
        table = self.keys if key and pointer in self.keys else self.values
        probe = pointer
        while probe not in table and probe:
            probe = probe.rsplit("/", 1)[0]
            table = self.values
        return table.get(probe, (1, 1))

    def error(
        self,
        code: str,
        message: str,
        pointer: str,
        hint: str | None = None,
        key: bool = False,
        severity: str = "error",
        rule_id: str | None = None,
    ) -> KBError:
        line, col = self.where(pointer, key)
        return KBError(code, message, self.file, line, col, pointer, hint, rule_id, severity)


def located_error(
    docs: dict[str, Located],
    file: str,
    code: str,
    message: str,
    pointer: str,
    hint: str | None = None,
    key: bool = False,
    severity: str = "error",
    rule_id: str | None = None,
) -> KBError:
    """An error at `pointer` in `file`, placed at its line and column when the file was read
    (`docs`), else named by file and pointer alone: what every check of the model reports with."""
    doc = docs.get(file)
    if doc is None:
        return KBError(code, message, file, None, None, pointer, hint, rule_id, severity)
    return doc.error(code, message, pointer, hint, key, severity, rule_id)


def _pos(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def _located_error(
    file: str, code: str, message: str, pos: tuple[int, int], hint: str | None = None, pointer: str = ""
) -> KBError:
    return KBError(code, message, file, pos[0], pos[1], pointer, hint)


def _decode(raw: bytes, file: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise KBErrors(
            [
                _located_error(
                    file,
                    "yaml.encoding",
                    f"byte 0x{raw[exc.start]:02x} is not valid UTF-8",
                    (line, col),
                    "save the file as UTF-8 (most editors: 'Save with encoding')",
                )
            ]
        ) from None


def _check_tabs(text: str, file: str) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        if "\t" in line:
            raise KBErrors(
                [
                    _located_error(
                        file,
                        "yaml.tab",
                        "tab character; YAML indentation must use spaces",
                        (number, line.index("\t") + 1),
                        "replace the tab with spaces",
                    )
                ]
            )


class _Builder:
    """Turn a composed node tree into plain data, recording positions and rejecting traps."""

    def __init__(self, located: Located) -> None:
        self.located = located
        self.seen: set[int] = set()
        self.errors: list[KBError] = []

    def build(self, node: yaml.Node, pointer: str) -> Any:
        if isinstance(node, _AliasNode) or id(node) in self.seen:
            self._fail(
                "yaml.alias",
                "aliases (*name) are not allowed",
                node,
                "write the value out in full; aliases hide what a rule says",
                pointer,
            )
            return None
        self.seen.add(id(node))
        self.located.values[pointer] = _pos(node.start_mark)
        problem = collection_tag_problem(node)
        if problem is not None:
            self._fail(*problem[:2], node, problem[2], pointer)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, pointer)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, pointer_join(pointer, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node, pointer)

    def _fail(self, code: str, message: str, node: yaml.Node, hint: str, pointer: str) -> None:
        self.errors.append(_located_error(self.located.file, code, message, _pos(node.start_mark), hint, pointer))

    def _mapping(self, node: yaml.MappingNode, pointer: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._fail(
                    "yaml.merge", "merge keys (<<) are not allowed", key_node, "write the keys out in full", pointer
                )
                continue
            key = self._scalar(key_node, pointer) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self._fail(
                    "yaml.key",
                    "mapping keys must be plain words",
                    key_node,
                    "quote the key if it is a number or true/false",
                    pointer,
                )
                continue
            child = pointer_join(pointer, key)
            if key in out:
                first = self.located.keys[child]
                self._fail(
                    "yaml.duplicate_key",
                    f"duplicate key '{key}' (first at line {first[0]})",
                    key_node,
                    "remove one of the two; YAML would silently keep the last",
                    child,
                )
                continue
            self.located.keys[child] = _pos(key_node.start_mark)
            out[key] = self.build(value_node, child)
        return out

    def _scalar(self, node: yaml.ScalarNode, pointer: str) -> Any:
        value, problems = read_scalar(node)
        for code, message, hint in problems:
            self._fail(code, message, node, hint, pointer)
        return value


Problem = tuple[str, str, str]  # (code, message, hint) of a scalar that cannot be trusted


def read_scalar(node: yaml.ScalarNode) -> tuple[Any, list[Problem]]:
    """The value of one composed scalar, and what is wrong with it: one reading of every scalar
    for each YAML file we load (the knowledge base, its scenarios, the FHIR map, the service
    configuration), so that `no`, a date or `0110` means the same refusal everywhere."""
    text, tag = node.value, node.tag
    problems: list[Problem] = []
    if has_surrogate(text):
        message, hint = surrogate_problem(text)
        problems.append(("yaml.surrogate", message, hint))
        text = without_surrogates(text)  # nothing after the check (the fingerprint's UTF-8) meets it
    quoted = bool(node.style) and node.style in "'\"|>"  # a plain scalar's: None from PyYAML, "" from libyaml
    if tag != STR and tag != (STR if quoted else _RESOLVER.resolve(yaml.ScalarNode, node.value, (True, False))):
        problems.append(tag_problem(tag, "value"))  # `!!python/name:os.system ''`, `!!null x`, `!!float 5`
        return text, problems
    if quoted:
        return text, problems
    if tag == "tag:yaml.org,2002:bool":
        if text.lower() in TRUE_FALSE:
            return TRUE_FALSE[text.lower()], problems
        problems.append(
            (
                "yaml.boolean",
                f"'{text}' is a YAML 1.1 boolean",
                f'write true or false, or quote it ("{text}") if you mean the word',
            )
        )
        return text, problems
    if tag == "tag:yaml.org,2002:timestamp":
        problems.append(("yaml.date", f"'{text}' would be read as a date", f'quote it: "{text}"'))
        return text, problems
    if tag == "tag:yaml.org,2002:null":
        return None, problems
    if tag in (INT, FLOAT, NUMBER_TRAP):
        if number_tag(text) == INT and not _readable_int(text):
            problems.append(_too_long(text))
            return text, problems
        if number_tag(text) in (INT, FLOAT):
            number = _number(text)
            if isinstance(number, float) and not math.isfinite(number):
                problems.append(_not_finite(text, number))
            return number, problems
        problems.append(number_trap(text))
        return text, problems
    if tag != STR:
        problems.append(tag_problem(tag, "value"))
    return text, problems


STR = "tag:yaml.org,2002:str"
_STANDARD = "tag:yaml.org,2002:"


def tag_problem(tag: str, what: str) -> Problem:
    """The refusal of a tag: one of another program (`!foo`, `!!python/object/apply:os.system`), or
    a standard one that would change what is read (`!!float 5`, `!!null x`, `!!int "5"`). `!!str`
    on a value, `!!map` on a mapping and `!!seq` on a list change nothing and are read."""
    short = "!!" + tag.removeprefix(_STANDARD) if tag.startswith(_STANDARD) else tag
    if tag.removeprefix(_STANDARD) in ("int", "float", "bool", "null", "map", "seq"):
        return (
            "yaml.tag",
            f"the tag {short} would change how this {what} is read",
            "remove the tag: quote text, and write numbers, true/false and null plainly",
        )
    return "yaml.tag", f"unsupported tag {short}", "remove the tag"


def collection_tag_problem(node: yaml.Node) -> Problem | None:
    """A tag on a mapping or a list other than its own (hostile sweep: `title: !!python/object/apply:
    os.system ['echo PWNED']` was read as a plain list, the tag dropped without a word)."""
    if isinstance(node, yaml.MappingNode) and node.tag != "tag:yaml.org,2002:map":
        return tag_problem(node.tag, "mapping")
    if isinstance(node, yaml.SequenceNode) and node.tag != "tag:yaml.org,2002:seq":
        return tag_problem(node.tag, "list")
    return None


INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
NUMBER_TRAP = "tag:fsgs-kb,2024:number-trap"  # a plain scalar YAML 1.1 and 1.2 read differently
_INT_12 = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_LEADING_ZERO = re.compile(r"[-+]?0[0-9]+\Z")
_FLOAT_12 = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_INF_NAN = re.compile(r"(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z")
_OCTAL_12 = re.compile(r"[-+]?0o[0-7]+\Z")
_YAML_11_NUMBERS = [
    regexp
    for tag, regexp in yaml.resolver.Resolver.yaml_implicit_resolvers["1"]
    if tag in (INT, FLOAT)  # PyYAML's own YAML 1.1 forms: whatever it would make a number
]


def number_tag(text: str) -> str | None:
    """The tag of a plain scalar that looks like a number: int or float as YAML 1.2's core schema
    (and JSON) reads it, NUMBER_TRAP for a form YAML 1.1 reads otherwise, None if no number."""
    if _INT_12.match(text):
        return INT
    if _LEADING_ZERO.match(text):
        return NUMBER_TRAP
    if _FLOAT_12.match(text) or _INF_NAN.match(text):
        return FLOAT
    if _OCTAL_12.match(text) or any(regexp.match(text) for regexp in _YAML_11_NUMBERS):
        return NUMBER_TRAP
    return None


def _readable_int(text: str) -> bool:
    """Whether int() can read the integer and a double can hold it: Python refuses more than 4,300
    digits (a ValueError), and every number of a knowledge base is also read as a double
    somewhere (an OverflowError beyond 1.8e308)."""
    if len(text.lstrip("+-")) > sys.float_info.max_10_exp + 1:
        return False
    try:
        float(int(text))
    except (ValueError, OverflowError):
        return False
    return True


def _too_long(text: str) -> Problem:
    """An integer int() or a double cannot hold (hostile sweep: 5,000 nines anywhere, even under an
    unknown key, were `error[internal] ValueError: Exceeds the limit (4300 digits)`, exit 3, and a
    bare ValueError out of fsgs_kb.load(); 4,300 nines as a parameter an OverflowError)."""
    digits = len(text.lstrip("+-"))
    return (
        "yaml.number",
        f"an integer of {digits:,} digits ('{text[:12]}…') is too large to read",
        f"no value here needs more than 16 digits: thresholds stay within ±2^53 ({2**53:,}); quote it if it is text",
    )


def _not_finite(text: str, number: float) -> Problem:
    """`.nan`, `.inf` or a number beyond ±1.8e308, which YAML reads as infinity: nothing compares
    with it exactly, and no result or durable-rules fact holds it (a parameter of .nan failed
    validate with a traceback; a derived value of .inf made durable-rules, given null, disagree
    with the explanation; one times .inf failed every record)."""
    if math.isnan(number):
        message = f"'{text}' (not a number) cannot be a threshold, a value or a result: nothing compares with it"
    elif text.lstrip("+-").startswith("."):
        message = f"'{text}' (infinity) cannot be a threshold, a value or a result"
    else:
        message = (
            f"'{text}' is beyond ±1.8e+308, the range of a double: YAML reads it as infinity, which cannot "
            "be a threshold, a value or a result"
        )
    hint = "write the number meant, within ±1.8e+308: in a unit in which it is smaller, if need be"
    return "yaml.not_finite", message, hint


def _number(text: str) -> int | float:
    if _INT_12.match(text):
        return int(text)
    lowered = text.lower()
    if lowered.endswith(".nan"):
        return float("nan")
    if lowered.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    return float(text)


def _yaml_11_reading(text: str) -> Any:
    """What PyYAML's YAML 1.1 resolver makes of `text` (a short scalar), for the message."""
    try:
        return yaml.safe_load(text) if len(text) <= 64 else None
    except (yaml.YAMLError, ValueError):
        return None


def number_trap(text: str) -> Problem:
    """The refusal of a number form YAML 1.1 and YAML 1.2 read differently: what YAML 1.1 (PyYAML,
    most tools in Python) reads, and the plain decimal to write instead (review: `value: 0110` in
    parameters.yaml became a threshold of 72, `1:30` of 90)."""
    digits = text.lstrip("+-")
    if ":" in text:
        why = "YAML 1.1 reads numbers with colons in base 60, like a time"
    elif digits[:2] in ("0x", "0X"):
        why = "a hexadecimal number"
    elif digits[:2] in ("0b", "0B"):
        why = "a binary number"
    elif digits[:2] == "0o":
        why = "an octal number in YAML 1.2, text in YAML 1.1"
    elif "_" in text:
        why = "YAML 1.1 ignores _ in numbers"
    else:
        why = "YAML 1.1 reads a number with a leading 0 as octal"
    reading = _yaml_11_reading(text)
    if why.endswith("as octal") and isinstance(reading, str):
        why += ", which 8 and 9 are not"
    read = f"the text '{text}'" if reading is None or isinstance(reading, str) else repr(reading)
    if digits[:2] == "0o":
        decimal: Any = int(text.replace("0o", ""), 8)
    elif ":" not in text and digits[:2] not in ("0x", "0X", "0b", "0B"):
        decimal = (text[: len(text) - len(digits)] + (digits.replace("_", "").lstrip("0") or "0")).lstrip("+")
    else:
        decimal = reading if isinstance(reading, (int, float)) and not isinstance(reading, bool) else None
    plain = f" ({decimal})" if decimal is not None else ""
    return (
        "yaml.number",
        f"'{text}' is read as {read} ({why})",
        f'write the number in plain decimal digits{plain}, or quote it ("{text}") if you mean text',
    )


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def surrogate_problem(text: str) -> tuple[str, str]:
    """(what is wrong, how to write it) of a text holding a UTF-16 surrogate: YAML's
    "\\ud83d\\ude00" escapes (JSON's way of writing one character beyond U+FFFF) give two, which
    no UTF-8 file, fingerprint or result can hold (review of session 10: an internal error, no
    location)."""
    pair = _SURROGATE_PAIR.search(text)
    if pair is not None:
        high, low = (ord(c) for c in pair.group())
        char = chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
        return (
            f"\\u{high:04x}\\u{low:04x} is one character written as two UTF-16 surrogates, which YAML keeps apart",
            f'write the character itself ({char}) or as one escape: "\\U{ord(char):08X}"',
        )
    found = _SURROGATE.search(text)
    code = ord(found.group()) if found else 0xD800
    return f"\\u{code:04x} is a UTF-16 surrogate, not a character", "remove it, or write the character it was part of"


def without_surrogates(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


class TooDeep(Exception):
    """Nesting deeper than MAX_DEPTH, at `mark`."""

    def __init__(self, mark: yaml.Mark) -> None:
        self.mark = mark


class _AliasNode(yaml.ScalarNode):
    """Where an alias (*name) stood: refused there, once (composed as the anchored node itself,
    an error was placed at the anchor, and repeated for every path an alias bomb reaches it by)."""


def is_alias(node: yaml.Node) -> bool:
    """Whether a composed node is where an alias stood (refused by every loader of ours)."""
    return isinstance(node, _AliasNode)


class _NumbersResolver(yaml.resolver.Resolver):
    """PyYAML's resolver with numbers read as YAML 1.2 reads them (number_tag): the one place a
    plain scalar becomes a number, for libyaml's composer and PyYAML's alike."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            tag = number_tag(value)
            if tag is not None:
                return tag
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


_RESOLVER = _NumbersResolver()  # what a plain scalar is without a tag (read_scalar)


class _DepthLimitedLoader(_NumbersResolver, yaml.SafeLoader):
    """PyYAML's composer recurses once per nesting level: stop it at MAX_DEPTH, where it is."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()  # type: ignore[no-untyped-call]
            return _AliasNode("tag:yaml.org,2002:null", "", event.start_mark, event.end_mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise TooDeep(self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_CSAFE: Any = getattr(yaml, "CSafeLoader", None)  # PyYAML built with libyaml (the wheels are)
_LIBYAML: Any = None if _CSAFE is None else type("_FastLoader", (_NumbersResolver, _CSAFE), {})
_OPENS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSES = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _compose_fast(text: str) -> yaml.Node | None:
    """The node tree composed by libyaml (about eight times faster than PyYAML's own composer,
    which made validation most of the time of every cold start), or raise `_Refer` when the
    document is not plainly well-formed and shallow: then PyYAML's composer decides, so a
    problem is always reported as it always was, with the same words and place. libyaml's
    composer recurses in C, so the nesting is first counted over its event stream (no
    recursion) and a document anywhere near MAX_DEPTH is never handed to it."""
    loader = _LIBYAML(text)
    try:
        depth = 0
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                raise _Refer  # PyYAML's composer places each alias (_DepthLimitedLoader)
            if isinstance(event, _OPENS):
                depth += 1
                if depth >= MAX_DEPTH - 1:  # PyYAML counts the scalars inside as one level more
                    raise _Refer
            elif isinstance(event, _CLOSES):
                depth -= 1
    except yaml.YAMLError:
        raise _Refer from None
    finally:
        loader.dispose()
    loader = _LIBYAML(text)
    try:
        node: yaml.Node | None = loader.get_single_node()
        return node
    except yaml.YAMLError:
        raise _Refer from None
    finally:
        loader.dispose()


class _Refer(Exception):
    """libyaml stepped aside: PyYAML's composer will read this document."""


def compose_yaml(text: str) -> yaml.Node | None:
    """The node tree of one YAML document: libyaml where it can, else PyYAML's composer; the
    nesting bounded (TooDeep) either way, every other problem a yaml.YAMLError as PyYAML raises it."""
    if _LIBYAML is not None:
        try:
            return _compose_fast(text)
        except _Refer:
            pass
    loader = _DepthLimitedLoader(text)
    try:
        node: yaml.Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


def character_problem(exc: yaml.reader.ReaderError, text: str) -> tuple[str, str, tuple[int, int]]:
    """(what, hint, where) of a character YAML does not allow (PyYAML's reader): a NUL byte was
    reported at 1:1 as 'unacceptable character #x0000: ... in "<unicode string>", position 190'
    (hostile sweep of session 11)."""
    position = min(max(exc.position, 0), len(text))
    before = text[:position]
    where = (before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1)
    code = ord(exc.character) if isinstance(exc.character, str) else int(exc.character)
    name = "a NUL character (U+0000)" if code == 0 else f"the character U+{code:04X}"
    control = " (a control character, invisible in most editors)" if code < 0x20 or 0x7F <= code < 0xA0 else ""
    return (
        f"{name} is not allowed in YAML{control}",
        "delete it; it often comes from pasting out of another program",
        where,
    )


def load_yaml(path: Path, display: str, files: RulesFiles) -> Located:
    """Read one YAML file of a knowledge base (through `files`, which keeps reads inside its
    rules directory); raise KBErrors with located problems when it cannot be read safely or
    cannot be trusted."""
    return parse_yaml(files.read(path, display, MAX_FILE_BYTES), display)


def parse_yaml(raw: bytes, display: str) -> Located:
    """Parse the bytes of one YAML file (shown to the editor as `display`)."""
    text = _decode(raw, display)
    _check_tabs(text, display)
    try:
        node = compose_yaml(text)
    except TooDeep as exc:
        raise KBErrors(
            [
                _located_error(
                    display,
                    "yaml.too_deep",
                    f"nested more than {MAX_DEPTH} levels deep",
                    _pos(exc.mark),
                    "a knowledge-base file needs a dozen levels at most: flatten the structure",
                )
            ]
        ) from None
    except yaml.MarkedYAMLError as exc:
        message, hint, pos = syntax_problem(exc, text)
        raise KBErrors([_located_error(display, "yaml.syntax", message, pos, hint)]) from None
    except yaml.reader.ReaderError as exc:
        message, hint, pos = character_problem(exc, text)
        raise KBErrors([_located_error(display, "yaml.character", message, pos, hint)]) from None
    except yaml.YAMLError as exc:
        raise KBErrors(
            [_located_error(display, "yaml.syntax", str(exc), (1, 1), "check indentation and quotes in this file")]
        ) from None
    located = Located(None, display)
    if node is None:
        raise KBErrors(
            [
                _located_error(
                    display,
                    "yaml.empty",
                    "file is empty",
                    (1, 1),
                    "write the file's content (comments alone are nothing), or remove the file",
                )
            ]
        )
    builder = _Builder(located)
    located.data = builder.build(node, "")
    builder.errors += [  # after the build: every text of the document, keys too
        located.error("yaml.control_character", problem, pointer, CONTROL_HINT, key=key)
        for pointer, key, problem in control_strings(located.data)
    ]
    if builder.errors:
        raise KBErrors(builder.errors)
    return located
