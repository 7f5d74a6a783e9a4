"""git revisions are never options: `git:REV` is resolved to a commit before git sees it, and
what a revision holds is unpacked only as plain files (no links followed out)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hostile_kb import ROOT, assert_refused, copy_kb, run_cli

COHORT = ROOT / "examples" / "cohort.jsonl"


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with the knowledge base in rules/ (two commits) and a file to protect."""
    repo = tmp_path_factory.mktemp("repo")
    git(repo, "init", "-q")
    copy_kb(repo / "rules")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    (repo / "victim.txt").write_text("precious\n", encoding="utf-8")
    return repo


@pytest.mark.parametrize("revision", ["--output=victim.txt", "--list", "-p", "", "no-such-branch", "HEAD:rules"])
def test_diff_refuses_what_is_not_a_commit(repo: Path, revision: str) -> None:
    proc = run_cli("diff", f"git:{revision}", "rules", cwd=repo)
    assert_refused(proc, "diff.bad_revision", f"git:{revision}", 2)
    assert (repo / "victim.txt").read_text(encoding="utf-8") == "precious\n"


def test_impact_refuses_an_option_as_revision(repo: Path) -> None:
    proc = run_cli("impact", "git:--output=victim.txt", "rules", str(COHORT), cwd=repo)
    assert_refused(proc, "diff.bad_revision", "git:--output=victim.txt", 2)
    proc = run_cli("impact", "rules", "git:--output=victim.txt", str(COHORT), cwd=repo)
    assert_refused(proc, "diff.bad_revision", "git:--output=victim.txt", 2)
    assert (repo / "victim.txt").read_text(encoding="utf-8") == "precious\n"


def test_a_real_revision_still_works(repo: Path) -> None:
    proc = run_cli("diff", "git:HEAD~1", "rules", cwd=repo)
    assert proc.returncode == 0 and "no change" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("target", ["/etc/passwd", "../../victim.txt", "../kb.yaml"])
def test_a_committed_symlink_is_refused(tmp_path: Path, target: str) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    copy_kb(repo / "rules")
    (repo / "victim.txt").write_text("root:x:0:0:precious\n", encoding="utf-8")
    (repo / "rules" / "recommendations" / "ZZ-LINK.yaml").symlink_to(target)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a link")
    proc = run_cli("diff", "git:HEAD", "rules", cwd=repo)
    assert_refused(proc, "load.not_regular_file", "git:HEAD:rules/recommendations/ZZ-LINK.yaml", 2)
    assert "root:" not in proc.stdout + proc.stderr
