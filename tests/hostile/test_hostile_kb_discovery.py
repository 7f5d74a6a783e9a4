"""A knowledge base found by looking upward from the working directory decides every result of
the run; one that anybody could have put there (another user's, or writable by everyone, as in
a shared /tmp) is refused unless named explicitly, as git refuses a repository of dubious
ownership. Review of issue 13: `/tmp/X/rules` silently drove a run started in `/tmp/X/job1`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def run(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FSGS_KB_RULES"}
    command = [sys.executable, "-m", "fsgs_kb", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def planted(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    job = tmp_path / "job1"
    job.mkdir()
    return job


def test_a_knowledge_base_writable_by_everyone_is_not_used_unasked(planted: Path) -> None:
    rules = planted.parent / "rules"
    assert run("validate", cwd=planted).returncode == 0  # the user's own: found and used
    rules.chmod(0o777)
    refused = run("validate", cwd=planted)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "error[cli.rules_untrusted]" in refused.stderr and "is writable by every user" in refused.stderr
    assert f"pass --rules {rules}" in refused.stderr and "Traceback" not in refused.stderr
    example = ROOT / "examples" / "dose-above-ceiling.json"
    assert run("evaluate", example, cwd=planted).returncode == 2  # every command, not validate alone
    assert run("validate", "--rules", rules, cwd=planted).returncode == 0  # named explicitly: the user's choice


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file away needs root")
def test_a_knowledge_base_of_another_user_is_not_used_unasked(planted: Path) -> None:
    rules = planted.parent / "rules"
    os.chown(rules / "kb.yaml", 4321, 4321)
    refused = run("validate", cwd=planted)
    assert refused.returncode == 2 and "belongs to another user (uid 4321)" in refused.stderr, refused.stderr
