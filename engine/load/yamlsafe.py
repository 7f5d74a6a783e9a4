"""Load YAML for clinical editors: strict, located, and safe.

PyYAML silently accepts things that change meaning without a word: a duplicate key keeps the
last value, `no` becomes False (YAML 1.1), an unquoted 2024-01-02 becomes a date, and aliases can
expand exponentially. Here each of those is an error that points at the line and column, and
every node's position is remembered by JSON pointer so that later stages (schema checks, rule
checks) can point into the YAML too. Nesting deeper than MAX_DEPTH is refused while the document
is composed (`yaml.too_deep`), before any recursive stage could overflow Python's stack. Files
are read by engine.load.files: regular files inside the rules directory, of bounded size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fsgs_kb.engine.errors import KBError, KBErrors, pointer_join
from fsgs_kb.engine.load.controls import HINT as CONTROL_HINT
from fsgs_kb.engine.load.controls import control_strings
from fsgs_kb.engine.load.files import MAX_FILE_BYTES, RulesFiles

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "Located",
    "TooDeep",
    "compose_yaml",
    "has_surrogate",
    "is_alias",
    "load_yaml",
    "located_error",
    "parse_yaml",
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
        text, tag = node.value, node.tag
        if has_surrogate(text):
            message, hint = surrogate_problem(text)
            self._fail("yaml.surrogate", message, node, hint, pointer)
            text = without_surrogates(text)  # nothing after the check (the fingerprint's UTF-8) meets it
        if node.style and node.style in "'\"|>":  # a plain scalar's style: None from PyYAML, "" from libyaml
            return text
        if tag == "tag:yaml.org,2002:bool":
            if text.lower() in TRUE_FALSE:
                return TRUE_FALSE[text.lower()]
            self._fail(
                "yaml.boolean",
                f"'{text}' is a YAML 1.1 boolean",
                node,
                f'write true or false, or quote it ("{text}") if you mean the word',
                pointer,
            )
            return text
        if tag == "tag:yaml.org,2002:timestamp":
            self._fail("yaml.date", f"'{text}' would be read as a date", node, f'quote it: "{text}"', pointer)
            return text
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
            return yaml.safe_load(text)
        if tag != "tag:yaml.org,2002:str":
            self._fail("yaml.tag", f"unsupported tag {tag}", node, "remove the tag", pointer)
        return text


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


class _DepthLimitedLoader(yaml.SafeLoader):
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


_LIBYAML: Any = getattr(yaml, "CSafeLoader", None)  # PyYAML built with libyaml (the wheels are)
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
        mark = exc.problem_mark or exc.context_mark
        pos = _pos(mark) if mark else (1, 1)
        message = f"{exc.problem or 'invalid YAML'}" + (f" ({exc.context})" if exc.context else "")
        raise KBErrors(
            [_located_error(display, "yaml.syntax", message, pos, "check indentation and quotes around this place")]
        ) from None
    except yaml.YAMLError as exc:
        raise KBErrors([_located_error(display, "yaml.syntax", str(exc), (1, 1))]) from None
    located = Located(None, display)
    if node is None:
        raise KBErrors([_located_error(display, "yaml.empty", "file is empty", (1, 1))])
    builder = _Builder(located)
    located.data = builder.build(node, "")
    builder.errors += [  # after the build: every text of the document, keys too
        located.error("yaml.control_character", problem, pointer, CONTROL_HINT, key=key)
        for pointer, key, problem in control_strings(located.data)
    ]
    if builder.errors:
        raise KBErrors(builder.errors)
    return located
