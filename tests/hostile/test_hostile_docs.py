"""`docs -o DIR` and `export fhir -o DIR` write only inside DIR: a symbolic link (or a FIFO)
planted at a name they write is replaced, never written through (engine/fresh.py,
write_replacing, the one writer of both)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hostile_kb import run_cli


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_text("precious\n", encoding="utf-8")
    return path


def test_a_planted_page_link_is_replaced_not_followed(tmp_path: Path, victim: Path) -> None:
    out = tmp_path / "site"
    (out / "rules").mkdir(parents=True)
    (out / "index.html").symlink_to(victim)
    (out / "rules" / "CSA-DOSE-EXCEEDS.html").symlink_to(victim)
    proc = run_cli("docs", "-o", str(out), cwd=tmp_path, cache=tmp_path / "cache")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert victim.read_text(encoding="utf-8") == "precious\n"
    for page in (out / "index.html", out / "rules" / "CSA-DOSE-EXCEEDS.html"):
        assert not page.is_symlink() and "<html" in page.read_text(encoding="utf-8")


def test_a_planted_folder_link_is_refused(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "rules").symlink_to(elsewhere, target_is_directory=True)
    proc = run_cli("docs", "-o", str(out), cwd=tmp_path, cache=tmp_path / "cache")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "rules is not a plain folder" in proc.stderr
    assert list(elsewhere.iterdir()) == [] and list(out.iterdir()) == [out / "rules"]


def test_markdown_replaces_a_planted_link(tmp_path: Path, victim: Path) -> None:
    out = tmp_path / "md"
    out.mkdir()
    (out / "handbook.md").symlink_to(victim)
    proc = run_cli("docs", "--format", "md", "-o", str(out), cwd=tmp_path, cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert not (out / "handbook.md").is_symlink() and (out / "handbook.md").read_text(encoding="utf-8").startswith("#")


def test_markdown_to_a_link_to_standard_output_writes_there(tmp_path: Path) -> None:
    """`docs --format md -o /dev/stdout` (here through a link to it, so that a failure replaces only
    the link, not the system's /dev/stdout): the handbook is written into the stream, as a shell
    redirection would, not by a file renamed over the name, which replaced /dev/stdout itself."""
    link = tmp_path / "to-stdout.md"
    link.symlink_to("/dev/stdout")
    proc = run_cli("docs", "--format", "md", "-o", str(link), cwd=tmp_path, cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == "/dev/stdout"
    assert "\n# " in proc.stdout or proc.stdout.lstrip().startswith("#"), proc.stdout[:500]


@pytest.fixture(scope="module")
def export_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The file name `export fhir` gives the bundled knowledge base's Bundle."""
    out = tmp_path_factory.mktemp("clean-export")
    proc = run_cli("export", "fhir", "-o", str(out), cwd=out)
    assert proc.returncode == 0, proc.stderr
    (written,) = out.iterdir()
    return written.name


@pytest.mark.parametrize("planted", ["link", "fifo"])
def test_export_replaces_a_link_or_fifo_planted_at_its_file(
    tmp_path: Path, victim: Path, export_name: str, planted: str
) -> None:
    """`export fhir -o DIR` wrote through a link at DIR/<kb>-<version>.fhir-bundle.json (the
    victim overwritten, exit 0) and blocked forever opening a FIFO there."""
    out = tmp_path / "export"
    out.mkdir()
    target = out / export_name
    if planted == "link":
        target.symlink_to(victim)
    else:
        os.mkfifo(target)
    proc = run_cli("export", "fhir", "-o", str(out), cwd=tmp_path, cache=tmp_path / "cache", timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert target.is_file() and not target.is_symlink()
    assert '"resourceType": "Bundle"' in target.read_text(encoding="utf-8")
    assert [p.name for p in out.iterdir()] == [export_name], "no temporary file left"


def test_export_over_a_directory_at_its_file_is_one_error(tmp_path: Path, export_name: str) -> None:
    out = tmp_path / "export"
    (out / export_name / "inside").mkdir(parents=True)
    proc = run_cli("export", "fhir", "-o", str(out), cwd=tmp_path, cache=tmp_path / "cache", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{export_name}: error[cli.export] cannot write the export" in proc.stderr, proc.stderr
    assert [p.name for p in out.iterdir()] == [export_name], "no temporary file left"
    assert [p.name for p in (out / export_name).iterdir()] == ["inside"]
