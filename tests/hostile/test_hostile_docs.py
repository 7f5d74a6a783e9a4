"""`docs -o DIR` writes only inside DIR: a symbolic link planted there is replaced, never
written through."""

from __future__ import annotations

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
