"""Loading a knowledge base stays inside its rules directory and reads only regular files of
bounded size, and never echoes content it did not parse as YAML."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hostile_kb import EXAMPLE, assert_refused, copy_kb, run_cli

SECRET = "hunter2-do-not-print"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the rules directory that a link must not make us read (or print)."""
    target = tmp_path / "private" / "shadow.yaml"
    target.parent.mkdir()
    target.write_text(f"root: {SECRET}\nadmin: {SECRET}\n", encoding="utf-8")
    return target


def test_a_link_to_a_file_outside_is_refused_unread(tmp_path: Path, outside: Path) -> None:
    kb = copy_kb(tmp_path / "rules")
    (kb / "recommendations" / "ZZ-LINK.yaml").symlink_to(outside)
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path)
    assert_refused(proc, "load.outside_rules_dir", "rules/recommendations/ZZ-LINK.yaml", 1)
    assert SECRET not in proc.stdout + proc.stderr
    proc = run_cli("explain", "--rules", "rules", str(EXAMPLE), cwd=tmp_path, cache=tmp_path / "cache")
    assert_refused(proc, "load.outside_rules_dir", "rules/recommendations/ZZ-LINK.yaml", 2)
    assert SECRET not in proc.stdout + proc.stderr


def test_a_linked_folder_outside_is_refused_unread(tmp_path: Path, outside: Path) -> None:
    kb = copy_kb(tmp_path / "rules")
    (outside.parent / "cattran-2003.yaml").write_bytes((kb / "sources" / "cattran-2003.yaml").read_bytes())
    (kb / "tests" / "ZZ.yaml").symlink_to(outside)
    os.rename(kb / "sources", tmp_path / "sources-moved")
    (kb / "sources").symlink_to(outside.parent, target_is_directory=True)
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path)
    assert_refused(proc, "load.outside_rules_dir", "rules/sources/cattran-2003.yaml", 1)
    assert_refused(proc, "load.outside_rules_dir", "rules/sources/shadow.yaml", 1)
    assert SECRET not in proc.stdout + proc.stderr


def test_a_link_to_dev_zero_is_refused_at_once(tmp_path: Path) -> None:
    kb = copy_kb(tmp_path / "rules")
    (kb / "parameters.yaml").unlink()
    (kb / "parameters.yaml").symlink_to("/dev/zero")
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path, timeout=30)
    assert_refused(proc, "load.outside_rules_dir", "rules/parameters.yaml", 1)


@pytest.mark.parametrize("name", ["recommendations/ZZ-FIFO.yaml", "kb.yaml", "tests/ZZ-FIFO.yaml"])
def test_a_fifo_does_not_hang_validate_or_the_cache(tmp_path: Path, name: str) -> None:
    kb = copy_kb(tmp_path / "rules")
    if (kb / name).exists():
        (kb / name).unlink()
    os.mkfifo(kb / name)
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path, timeout=30)
    assert_refused(proc, "load.not_regular_file", f"rules/{name}", 1)
    # a one-patient command computes the cache key from the same files first: no hang there either
    proc = run_cli("explain", "--rules", "rules", str(EXAMPLE), cwd=tmp_path, cache=tmp_path / "cache", timeout=30)
    assert_refused(proc, "load.not_regular_file", f"rules/{name}", 2)


def test_a_link_inside_the_rules_directory_is_read(tmp_path: Path) -> None:
    """Links are not banned: one that stays inside the rules directory is followed."""
    kb = copy_kb(tmp_path / "rules")
    moved = kb / "recommendations" / "CSA-MONITOR-BP.yaml"
    os.rename(moved, kb / "CSA-MONITOR-BP.real")
    moved.symlink_to(Path("..") / "CSA-MONITOR-BP.real")
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path)
    assert proc.returncode == 0 and " 0 error(s)" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("name", "code"),
    [("parameters.yaml", "kb.missing_file"), ("derived.yaml", "kb.missing_file"), ("kb.yaml", "kb.missing_manifest")],
)
def test_a_missing_required_file_is_a_located_error(tmp_path: Path, name: str, code: str) -> None:
    kb = copy_kb(tmp_path / "rules")
    (kb / name).unlink()
    assert_refused(run_cli("validate", "--rules", "rules", cwd=tmp_path), code, "rules", 1)


def test_a_dangling_link_is_a_located_error(tmp_path: Path) -> None:
    kb = copy_kb(tmp_path / "rules")
    (kb / "recommendations" / "ZZ-GONE.yaml").symlink_to("nowhere.yaml")
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path)
    assert_refused(proc, "yaml.io", "rules/recommendations/ZZ-GONE.yaml", 1)
