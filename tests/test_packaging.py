"""The package installs one import name, `fsgs_kb`, and nothing another distribution can shadow.

A shared data environment may hold other tools with a top-level `cli.py` or `engine/`; before,
installing one of them after fsgs-kb made `fsgs-kb validate` run that tool instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from support import ROOT, install_in_new_venv

FSGS_KB = Path(sys.executable).parent / "fsgs-kb"


def test_the_wheel_installs_fsgs_kb_alone(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("fsgs_kb-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["fsgs_kb"]
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"fsgs_kb"}
    for data in (
        "fsgs_kb/rules/kb.yaml",
        "fsgs_kb/rules/fhir-map.yaml",
        "fsgs_kb/schema/patient.schema.json",
        "fsgs_kb/schema/cds-config.schema.json",
        "fsgs_kb/py.typed",
    ):
        assert data in names
    for package in sorted(p.parent for p in (ROOT / "engine").rglob("__init__.py")):  # every subpackage ships
        assert f"fsgs_kb/{package.relative_to(ROOT).as_posix()}/__init__.py" in names, package
    assert not [n for n in names if n.startswith("fsgs_kb/tests/") or n.startswith("fsgs_kb/bench/")]
    modules = {str(p.relative_to(ROOT)) for d in ("engine", "service") for p in ROOT.glob(f"{d}/**/*.py")}
    modules |= {"cli.py", "__init__.py"}
    missing = sorted(m for m in modules if f"fsgs_kb/{m}" not in names)
    assert not missing, f"modules the wheel leaves out (add their package to pyproject): {missing}"


def test_a_foreign_cli_and_engine_do_not_shadow_the_command(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    (foreign / "engine").mkdir(parents=True)
    (foreign / "cli.py").write_text("def main():\n    print('WRONG TOOL')\n")
    (foreign / "engine" / "__init__.py").write_text("raise ImportError('the foreign engine was imported')\n")
    env = {**os.environ, "PYTHONPATH": str(foreign)}
    proc = subprocess.run(
        [str(FSGS_KB), "validate"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "WRONG TOOL" not in proc.stdout and "0 error(s)" in proc.stdout


def test_an_editable_install_gives_a_working_command(tmp_path: Path) -> None:
    """`pip install -e .` (the default editable mode) must map fsgs_kb onto the checkout."""
    venv = install_in_new_venv(ROOT, tmp_path, editable=True)
    proc = subprocess.run(
        [str(venv / "bin" / "fsgs-kb"), "validate"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0 and "0 error(s)" in proc.stdout, proc.stdout + proc.stderr
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import fsgs_kb, os; print(os.path.dirname(fsgs_kb.__file__))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert Path(where.stdout.strip()) == ROOT  # the editor's checkout itself, not a copy
