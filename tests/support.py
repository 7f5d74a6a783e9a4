"""Paths the tests share (a module, not conftest: two conftest.py files must never be imported by
name, since tests/ and tests/hostile/ each have one)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RULES = ROOT / "rules"  # the checkout's knowledge base: what the tests test (conftest.py sets $FSGS_KB_RULES)


def install_in_new_venv(project: Path, tmp_path: Path, editable: bool = False) -> Path:
    """`pip install [-e] PROJECT` into a new venv at tmp_path/venv; returns the venv.

    The venv reuses this environment's dependencies (durable-rules builds a C core: slow to
    reinstall) through a link farm that leaves out this environment's own fsgs_kb, installed or
    editable, which would otherwise shadow the one under test."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("fsgs_kb", "__editable__", "_fsgs_kb")) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    Path(site, "_deps.pth").write_text(str(deps) + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q"]
        + ["--no-deps", "--no-build-isolation", *(["-e"] if editable else []), str(project)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    return venv
