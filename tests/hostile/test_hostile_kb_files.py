"""Loading a knowledge base stays inside its rules directory and reads only regular files of
bounded size, and never echoes content it did not parse as YAML."""

from __future__ import annotations

import json
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


DROPPINGS = {
    ".#{name}": "emacs-lock",  # a dangling link (user@host.pid:boot) while the file is open in Emacs
    "#{name}#": "emacs-autosave",
    "{name}~": "backup",
    ".{name}.swp": "vim-swap",
    ".{name}": "hidden",
}


@pytest.fixture(scope="module")
def untouched_fingerprint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The fingerprint `validate` gives a copy of the knowledge base without droppings (it depends
    on the files' contents, not where the copy is: one run for the three folders below)."""
    work = tmp_path_factory.mktemp("untouched")
    copy_kb(work / "rules")
    proc = run_cli("validate", "--rules", "rules", "--format", "json", cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(json.loads(proc.stdout)["kb"]["fingerprint"])


@pytest.mark.parametrize("folder", ["recommendations", "sources", "tests"])
def test_hidden_files_and_editor_droppings_are_not_part_of_the_kb(
    tmp_path: Path, folder: str, untouched_fingerprint: str
) -> None:
    """An editor with a knowledge-base file open leaves files beside it; Emacs's lock, a dangling
    link named .#NAME.yaml, was read as a rule ('cannot read: No such file or directory') and every
    command refused the knowledge base. Hidden files and editor droppings are ignored: validate is
    clean, the fingerprint is unchanged, the tests run and a patient is evaluated."""
    kb = copy_kb(tmp_path / "rules")
    name = sorted(p.name for p in (kb / folder).glob("*.yaml") if p.name[0].isalnum())[0]
    for pattern, kind in DROPPINGS.items():
        dropping = kb / folder / pattern.format(name=name)
        if kind == "emacs-lock":
            dropping.symlink_to("editor@host.4242:1700000000")
        else:  # content that would be a broken file if it were read
            dropping.write_text("id: [not, a, rule\n\t{broken: yaml\n", encoding="utf-8")
    proc = run_cli("validate", "--rules", "rules", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["kb"]["fingerprint"] == untouched_fingerprint
    proc = run_cli("test", "--rules", "rules", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("evaluate", "--rules", "rules", str(EXAMPLE), cwd=tmp_path, cache=tmp_path / "cache")
    assert proc.returncode == 0 and json.loads(proc.stdout)["status"] == "evaluated", proc.stderr


def test_each_alias_is_refused_once_where_it_stands(tmp_path: Path) -> None:
    """Review 5: an alias was placed at its anchor (the node it repeats), and an alias bomb
    printed each error once per path that reached the anchor (36 lines for 4). One error per
    `*name`, at its line and column."""
    kb = copy_kb(tmp_path / "rules")
    manifest = kb / "kb.yaml"
    lines = manifest.read_text(encoding="utf-8").splitlines()
    first = len(lines) + 1
    bomb = ["a: &a [1, 2]", "b: &b [*a, *a]", "c: &c [*b, *b]", "d: [*c, *c]"]
    manifest.write_text("\n".join([*lines, *bomb]) + "\n", encoding="utf-8")
    proc = run_cli("validate", "--rules", str(kb), cwd=tmp_path)
    assert_refused(proc, "yaml.alias", "rules/kb.yaml", 1)
    places = [
        line.split(": error[")[0] for line in (proc.stdout + proc.stderr).splitlines() if "error[yaml.alias]" in line
    ]
    expected = []
    for row, text in enumerate(bomb):
        col = text.find("*")
        while col >= 0:
            expected.append(f"rules/kb.yaml:{first + row}:{col + 1}")
            col = text.find("*", col + 1)
    assert sorted(places) == sorted(expected), places
