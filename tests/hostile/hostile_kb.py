"""Helpers of the hostile knowledge-base tests: a copy of the bundled knowledge base to break, and
the real command line to run on it (`python -m fsgs_kb`, bounded by a timeout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from fsgs_kb.engine.load.paths import bundled_rules_dir

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "dose-above-ceiling.json"
TIMEOUT_S = 60


def run_cli(
    *args: str, cwd: Path, cache: str | Path = "off", timeout: float = TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process; the validated-KB cache off unless a directory is given."""
    env = {**os.environ, "FSGS_KB_CACHE": str(cache)}
    env.pop("FSGS_KB_RULES", None)
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def copy_kb(target: Path) -> Path:
    shutil.copytree(bundled_rules_dir(), target)
    return target


def set_when(kb: Path, rule_id: str, when: str) -> Path:
    """Replace a rule's `when:` block by `when` (YAML lines indented under `when:`)."""
    path = kb / "recommendations" / f"{rule_id}.yaml"
    text = path.read_text(encoding="utf-8")
    head, rest = text.split("\nwhen:\n", 1)
    path.write_text(head + "\nwhen:\n" + when + rest[rest.index("\nsays:") :], encoding="utf-8")
    return path


def assert_refused(proc: subprocess.CompletedProcess[str], code: str, where: str, exit_code: int) -> None:
    """A clean refusal: the exit code, `where:LINE:COL: error[code]`, and no Python traceback."""
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    assert proc.returncode == exit_code, (proc.returncode, output)
    located = [line for line in output.splitlines() if f"error[{code}]" in line]
    assert located, output
    assert any(line.startswith(where + ":") for line in located), (where, located)
