"""Ctrl-C at any moment of `fsgs-kb batch` (review 5 F8): exit 130 with one line, never a Python
traceback (while the command starts) nor click's "Aborted!" with exit 1, which means findings
(while it loads the knowledge base, opens its input or verifies a resume); the output is left
resumable. Each test sends SIGINT once the command has visibly reached the moment it tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from hostile_support import (
    assert_each_record_once_in,
    base_env,
    good_line,
    jsonl,
    run,
    sigint_as_at_a_terminal,
    wait_until,
)


class Command:
    """`python -m fsgs_kb ARGS` in the background; stderr to a file, read while it runs."""

    def __init__(self, *args: object, cwd: Path) -> None:
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fsgs_kb", *map(str, args)],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            env=base_env(),
            preexec_fn=sigint_as_at_a_terminal,
        )

    @property
    def err(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, what: str, seen) -> None:
        """Block until `seen()` (observed progress), failing if the command ends first."""
        assert wait_until(lambda: not self.running() or seen(), timeout=60), f"never saw {what}"
        assert self.running(), f"ended (exit {self.proc.returncode}) before {what}: {self.err[-300:]!r}"

    def interrupt(self) -> tuple[int, list[str]]:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return self.proc.returncode, self.err.splitlines()

    def mapped(self, needle: str) -> bool:
        try:
            return needle in Path(f"/proc/{self.proc.pid}/maps").read_text()
        except OSError:
            return False

    def has_open(self, path: Path) -> bool:
        try:
            fds = os.listdir(f"/proc/{self.proc.pid}/fd")
            return any(os.readlink(f"/proc/{self.proc.pid}/fd/{fd}") == str(path) for fd in fds)
        except OSError:
            return False


def _interrupted_line(lines: list[str]) -> str:
    assert not any("Traceback" in line or "Aborted!" in line for line in lines), lines
    errors = [line for line in lines if "error[" in line]
    assert errors == [errors[0]] and "error[cli.interrupted]" in errors[0], lines
    return errors[0]


def test_ctrl_c_while_the_command_starts_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """SIGINT while Python imports the package (its first extension module is mapped: the
    package's own import has begun), before any handler of the command could exist."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl([good_line("P1")]))
    command = Command("batch", source, "-o", tmp_path / "out.jsonl", "--quiet", cwd=tmp_path)
    command.wait_for("an extension module of a dependency mapped", lambda: command.mapped("/site-packages/"))
    rc, lines = command.interrupt()
    assert rc == 130, lines
    assert len(lines) == 1 and lines[0].startswith("fsgs-kb batch: error[cli.interrupted]"), lines
    assert _interrupted_line(lines) == lines[0]
    assert not (tmp_path / "out.jsonl").exists()


def test_ctrl_c_once_the_knowledge_base_is_loaded_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """SIGINT after the knowledge base line, while the command waits to open its input (a FIFO
    nobody writes yet): before the run's own handler, where click said "Aborted!", exit 1."""
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    command = Command("batch", fifo, cwd=tmp_path)
    command.wait_for("the knowledge base line", lambda: "knowledge base " in command.err)
    rc, lines = command.interrupt()
    assert rc == 130, lines
    assert lines[0].startswith("knowledge base ") and len(lines) == 2, lines
    assert _interrupted_line(lines).startswith("fsgs-kb batch: ")


def test_ctrl_c_while_a_resume_is_verified_exits_130_and_leaves_the_output_resumable(tmp_path: Path) -> None:
    """SIGINT once `--resume` has opened the output and reads it through to verify it (a full-detail
    output of tens of megabytes); the output stays as it was, and resuming it again finishes it."""
    n = 1500
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl([good_line(f"P{i:05d}") for i in range(n)]))
    out = tmp_path / "out.jsonl"
    first = run("batch", source, "-o", out, "--detail", "full", "--workers", "2", "--quiet", timeout=300)
    assert first.rc == 0, first
    before = out.read_bytes()
    command = Command("batch", source, "-o", out, "--detail", "full", "--resume", "--quiet", cwd=tmp_path)
    command.wait_for("the output opened", lambda: command.has_open(out))
    rc, lines = command.interrupt()
    assert rc == 130, lines
    _interrupted_line(lines)
    assert out.read_bytes() == before
    again = run("batch", source, "-o", out, "--detail", "full", "--resume", "--quiet", timeout=300)
    assert again.rc == 0, again
    assert out.read_bytes() == before
    assert_each_record_once_in(out, n)
