"""Everything the command writes goes through here: its standard output, and the files it is
asked to write (--summary, --junit-xml, the handbook, an export).

A write that fails for a reason outside the program (a full disk, a standard output that is
closed or not writable, a path that cannot be created) becomes one `KBError` here, which the
shell prints as one line and exits 2 for, as for any other input/output problem. Without this a
full disk was an "internal error" (exit 3), and a closed standard output (`>&-`, where Python sets
`sys.stdout` to None) made click drop the result silently and exit 0. A reader that went away
(`| head`, BrokenPipeError) is not a failure: it is left to the shell, which ends quietly.
`batch` hands `stdout_binary()` to the engine, whose output target turns a failed write into
`batch.write_failed` the same way. tests/test_layering.py keeps `cli.py` from writing standard
output any other way.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, TextIO

import click

from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.fresh import create_fresh, write_replacing

STDOUT = "standard output"
_SURROGATE = re.compile("[\ud800-\udfff]")
CLOSED_HINT = "give the command somewhere to write: a file, a pipe, or /dev/null to discard the output"


@contextmanager
def writing(target: str, what: str | None = None, code: str = "cli.output") -> Iterator[None]:
    """Turn an OSError raised while writing `what` to `target` (a path, or STDOUT) into a KBError."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        message = f"cannot write {what}: {reason}" if what else f"cannot write: {reason}"
        raise KBErrors([KBError(code, message, file=target)]) from None


def stdout_text() -> TextIO:
    """Standard output, or a KBError when there is none (it was closed before the command started)."""
    if sys.stdout is None:
        raise KBErrors(
            [
                KBError(
                    "cli.output",
                    "closed before the command started: the output has nowhere to go",
                    file=STDOUT,
                    hint=CLOSED_HINT,
                )
            ]
        )
    return sys.stdout


def stdout_binary() -> BinaryIO:
    """Standard output for bytes (batch results), with the same check as `stdout_text`."""
    return stdout_text().buffer


def echo(text: str = "", *, nl: bool = True, color: bool | None = None) -> None:
    """`click.echo` to standard output (the stream click picks for it), failures turned into a KBError.

    A lone surrogate left in the text (a file name that is not UTF-8, kept by Python as
    surrogateescape, inside a JSON document: the text renderers already show it as `\\xff`,
    engine/report/text.py) is written as its JSON escape `\\udcff`: no output can encode it
    (UnicodeEncodeError, or an invalid UTF-8 byte), and the escape keeps a JSON document valid."""
    if not text.isascii():
        text = _SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
    stdout_text()  # click.echo drops the text silently when there is no standard output
    with writing(STDOUT):
        click.echo(text, nl=nl, color=color)


def descriptor_binary(fd: int, name: str) -> BinaryIO:
    """A descriptor the shell opened, named as a path (`-o /dev/fd/3 3>>log`), for bytes: written
    through a copy of the descriptor, so the shell's O_APPEND and offset hold (opening the path
    again would open the file afresh, and truncate it); a KBError when it is not open."""
    if fd == 1:
        return stdout_binary()
    with writing(name):
        return os.fdopen(os.dup(fd), "wb")


def _temporary(path: str) -> str:
    """The temporary file beside `path` that `replace_file` renames over it (a short name: any
    legal `path` keeps it legal)."""
    return os.path.join(os.path.dirname(os.path.realpath(path)), f".fsgs-kb-write.{os.getpid()}.tmp")


def _in_place(path: str) -> bool:
    """Whether `path` is written where it is (a FIFO, a device), not replaced by a renamed file."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False  # nothing there yet


def check_writable(path: str, what: str, code: str) -> None:
    """Before a long run whose report goes to `path` at its end: a KBError now when it could not
    be written then (no such directory, no permission, a name too long), `path` itself untouched."""
    if _in_place(path):
        return  # a FIFO is opened when there is something to write (opening it waits for a reader)
    temporary = _temporary(path)
    with writing(path, what, code):
        os.close(create_fresh(temporary))
        os.unlink(temporary)


def replace_file(path: str, text: str, what: str, code: str) -> None:
    """Write `text` to `path` whole or not at all: into a temporary file beside it, renamed over
    it (through a link: over the file it names), so a run that fails leaves the previous file
    as it was; a FIFO or a device is written in place."""
    if _in_place(path):
        with writing(path, what, code), open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    temporary = _temporary(path)
    try:
        with writing(path, what, code):
            with open(create_fresh(temporary), "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, os.path.realpath(path))
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)


def _stream(path: str) -> bool:
    """Whether `path` names a stream to write into, not a file to replace: a FIFO, a device or a
    socket (through a link too: /dev/stdout), or anything under /dev or /proc."""
    real = os.path.realpath(path)
    if real.startswith(("/dev/", "/proc/")):
        return True
    return _in_place(path)


def write_report(path: str, text: str, what: str, code: str) -> None:
    """Write a report file the user named (--junit-xml): a new file renamed over `path`
    (engine/fresh.py), so a symbolic link planted there is replaced, never written through; a
    stream (a FIFO, /dev/stdout, /dev/full) is written in place."""
    with writing(path, what, code):
        if _stream(path):
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            write_replacing(path, text)
