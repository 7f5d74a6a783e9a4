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
