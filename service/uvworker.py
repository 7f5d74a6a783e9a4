"""uvicorn's settings for `fsgs-kb serve`, so that a stop signal ignored when the command started
stays ignored in every worker from its first instant.

A worker ignores those signals again from the app factory (service/run.py `ignore_inherited`),
but uvicorn installs its own handlers for SIGINT and SIGTERM (`Server.capture_signals`) before it
imports the app: a Ctrl-C reaching a worker still starting (the shell's SIGINT to its whole
process group, right after the supervisor answered its first call) shut that worker down, one
run in five of the two-worker test. `configure_logging` is the one hook uvicorn runs in each
worker before its handlers (and in the supervisor when the settings are made): there, its exit
handler is made to drop the signals the command was started with ignored.

Imported by name (service/run.py): it subclasses uvicorn's Config, which only the optional extra
provides."""

from __future__ import annotations

import os
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.server import Server

from fsgs_kb.service.run import IGNORED_ENV


class Settings(uvicorn.Config):
    def configure_logging(self) -> None:
        super().configure_logging()
        keep_ignored()


def keep_ignored() -> None:
    """uvicorn's exit handler, in this process, drops the stop signals named in $IGNORED_ENV."""
    ignored = {int(name) for name in os.environ.get(IGNORED_ENV, "").split(",") if name}
    original: Any = Server.handle_exit
    if not ignored or getattr(original, "keeps_ignored", False):
        return

    def handle_exit(self: Server, sig: int, frame: FrameType | None) -> None:
        if sig not in ignored:
            original(self, sig, frame)

    handle_exit.keeps_ignored = True  # type: ignore[attr-defined]
    Server.handle_exit = handle_exit  # type: ignore[method-assign]
