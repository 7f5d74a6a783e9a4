"""`fsgs-kb serve` stopped as asked exits as `fsgs-kb --help` says (130 for SIGINT, 143 for SIGTERM)
after a clean shutdown, with no error line, with one worker or several; started with SIGINT ignored
(a shell's background job) it keeps ignoring it, as `batch` does. Before: one worker and SIGTERM
was killed by the signal uvicorn re-raised, one worker and SIGINT exited 130 but printed
`error[cli.interrupted]`, two workers exited 0, and uvicorn's handlers answered an ignored SIGINT.

Real `fsgs-kb serve` subprocesses, as in test_cds_hooks.py."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from cds_support import Server, write_config


def config(ehr: Any, tmp_path: Path) -> Path:
    """Beside the test EHR's key file, with a decision log of its own."""
    name = f"cds-{tmp_path.name}.yaml"
    return write_config(ehr.work / name, ehr.issuers(), decision_log=str(tmp_path / "decisions.sqlite"))


def stopped(server: Server, signum: int, group: bool = False) -> int:
    (os.killpg if group else os.kill)(server.proc.pid, signum)
    code = server.proc.wait(timeout=30)
    server.stop()
    return code


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_exits_128_plus_the_signal_with_no_error_line(
    ehr: Any, tmp_path: Path, workers: int, signum: int
) -> None:
    server = Server(config(ehr, tmp_path), workers=workers)
    assert server.client.get("/healthz").status_code == 200
    assert stopped(server, signum) == 128 + signum
    text = server.log_text()
    assert "error[" not in text and "Traceback" not in text, text
    assert f"fsgs-kb stopped by {signal.Signals(signum).name}" in text


@pytest.mark.parametrize("workers", [1, 2])
def test_started_with_sigint_ignored_it_keeps_ignoring_it(ehr: Any, tmp_path: Path, workers: int) -> None:
    """SIGINT to the whole process group (as Ctrl-C in the shell that started it sends it): the
    supervisor and every worker go on serving; SIGTERM still stops it."""
    server = Server(config(ehr, tmp_path), workers=workers, ignore_sigint=True)
    os.killpg(server.proc.pid, signal.SIGINT)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # uvicorn would be shutting down (or restarting workers) by now
        assert server.proc.poll() is None, server.log_text()
        assert server.client.get("/healthz").status_code == 200
        time.sleep(0.1)  # polling interval over a fixed observation window
    text = server.log_text()
    assert "SIGINT" not in text and "Shutting down" not in text and "died" not in text, text
    assert stopped(server, signal.SIGTERM) == 128 + signal.SIGTERM


def test_a_sigint_while_the_workers_start_is_ignored_too(ehr: Any, tmp_path: Path) -> None:
    """Started with SIGINT ignored, two workers: the shell's SIGINT reaches each worker while it is
    still starting (held there by the startgate drill, after uvicorn put in its own handlers and
    before the app is loaded). It shut such a worker down, one run of the test above in five;
    uvicorn's exit handler now drops the signals the command was started with ignored."""
    gate = tmp_path / "gate"
    server = Server(
        config(ehr, tmp_path),
        workers=2,
        ignore_sigint=True,
        wait=False,
        env={"FSGS_KB_FAULT": f"startgate:{gate}"},
    )
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("gate.*.waiting"))) < 2:  # both workers held where they start
        assert server.proc.poll() is None and time.monotonic() < deadline, server.log_text()
        time.sleep(0.02)
    os.killpg(server.proc.pid, signal.SIGINT)
    gate.touch()
    server.wait_ready()
    while server.log_text().count("Application startup complete") < 2:  # both came up, or said why not
        assert time.monotonic() < deadline and "Shutting down" not in server.log_text(), server.log_text()
        time.sleep(0.02)
    assert server.client.get("/healthz").status_code == 200
    text = server.log_text()
    assert "Shutting down" not in text and "died" not in text and "SIGINT" not in text, text
    assert stopped(server, signal.SIGTERM) == 128 + signal.SIGTERM
