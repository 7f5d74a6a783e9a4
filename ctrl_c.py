"""Ctrl-C for the `fsgs-kb` command: exit 130 with one line at any moment, never a Python
traceback, nor click's "Aborted!" with exit 1 (which means findings).

Python turns SIGINT into KeyboardInterrupt from its first instruction on, long before a command
could catch it: Ctrl-C in the first 0.4 s (imports) printed a traceback, and later (loading the
knowledge base, verifying a resume) click's "Aborted!" and exit 1. When the process is the
command (`fsgs-kb`, `python -m fsgs_kb`), importing this module, which the package does first,
makes SIGINT only *noted* while the command starts; `raising()` then lets it raise
KeyboardInterrupt while a command runs (at once if it came while starting), which the command
turns into its line and exit 130 (cli.Group), and notes it again afterwards (a run that has
ended exits with its own code). A library import (`import fsgs_kb` in a program) changes nothing.
A batch run installs its own handler while it writes (engine/batch/job.py `_StopFlag`), which
ends the run cleanly with its summary.

A process started with SIGINT ignored (a shell's background job: `fsgs-kb batch … &` in a script)
has no default handler here, so nothing is noted or raised, and the batch run leaves it ignored
too: such a run ignores SIGINT from start to end (SIGTERM stops it).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

COMMAND_NAMES = {"fsgs-kb", "fsgs-kb.exe"}
_noted: list[int] = []


def _note(signum: int, frame: Any) -> None:
    _noted.append(signum)


def started_as_command() -> bool:
    """Whether this process is the command: the `fsgs-kb` script, or `python -m fsgs_kb` (whose
    argv[0] is "-m" while Python imports the package to find its __main__)."""
    first = sys.argv[0] if sys.argv else ""
    return first == "-m" or os.path.basename(first) in COMMAND_NAMES


def defer_while_starting() -> None:
    """Note SIGINT instead of raising, in the command's main thread, unless someone else handles it."""
    if (
        started_as_command()
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        signal.signal(signal.SIGINT, _note)


@contextmanager
def raising() -> Iterator[None]:
    """While a command runs: SIGINT raises KeyboardInterrupt, at once if it came while the
    command started; noted again afterwards."""
    deferred = signal.getsignal(signal.SIGINT) is _note
    if deferred:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if _noted:
            _noted.clear()
            raise KeyboardInterrupt
        yield
    finally:
        if deferred:
            signal.signal(signal.SIGINT, _note)


defer_while_starting()
