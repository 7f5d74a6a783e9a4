"""Security: a revision spec is not a git option, a rules directory cannot reach outside itself,
the validated-KB cache cannot run code, and `docs` does not write through planted symlinks."""

from __future__ import annotations

import os
import pickle
import re
import resource
import subprocess
from pathlib import Path

import pytest
from hostile_support import KB_REJECT_EXIT, assert_no_traceback, base_env, good_line, jsonl, run

SECRET = "SECRET-LINE-42"


# --- git:REV must never become a git option --------------------------------------------------


def _git_command(command: str, spec: str, repo: Path) -> list[object]:
    if command == "diff":
        return ["diff", spec, "rules"]
    patients = repo.parent / f"{repo.name}-patients.jsonl"
    patients.write_bytes(jsonl([good_line("P1")]))
    return ["impact", spec, "rules", patients]


@pytest.mark.parametrize("existing", [True, False], ids=["existing-file", "new-file"])
@pytest.mark.parametrize("command", ["diff", "impact"])
def test_git_spec_cannot_smuggle_output_option(tmp_path: Path, git_repo: Path, command: str, existing: bool) -> None:
    """`git:--output=FILE` reached `git archive` as an option: it truncated or created FILE."""
    target = tmp_path / "victim.txt"
    if existing:
        target.write_text("KEEP ME\n")
    result = run(*_git_command(command, f"git:--output={target}", git_repo), cwd=git_repo)
    if existing:
        assert target.read_text() == "KEEP ME\n", "git wrote to the --output target"
    else:
        assert not target.exists(), "git created the --output target"
    assert result.rc == 2, result
    assert_no_traceback(result)


@pytest.mark.parametrize("command", ["diff", "impact"])
def test_git_spec_that_is_an_option_is_a_usage_error(git_repo: Path, command: str) -> None:
    """`git:--list` is not a revision: exit 2 with a message, not a tar-parsing traceback."""
    result = run(*_git_command(command, "git:--list", git_repo), cwd=git_repo)
    assert_no_traceback(result)
    assert result.rc == 2, result


# --- a rules directory is read as plain files inside it ---------------------------------------


def test_symlink_out_of_rules_dir_is_refused_without_leaking(tmp_path: Path, kb_copy: Path) -> None:
    """A rule file that is a symlink to a file elsewhere must be refused by name, unread: today its
    content is parsed and echoed back in error messages (a file-disclosure primitive)."""
    outside = tmp_path / "outside.yaml"
    original = (kb_copy / "recommendations" / "CSA-DOSE-EXCEEDS.yaml").read_text()
    outside.write_text(re.sub(r"(?m)^kind: .*$", f"kind: {SECRET}", original).replace("CSA-DOSE-EXCEEDS", "ZZ-LEAK"))
    link = kb_copy / "recommendations" / "ZZ-LINK.yaml"
    link.symlink_to(outside)
    result = run("validate", "--rules", kb_copy)
    assert SECRET not in result.both, "the symlink target's content leaked into the output"
    assert "ZZ-LINK.yaml" in result.both, "the symlink is not named"
    assert result.rc == KB_REJECT_EXIT, result
    assert_no_traceback(result)


def test_fifo_in_rules_dir_does_not_hang_validate(kb_copy: Path) -> None:
    """Opening a FIFO blocks forever: validate must refuse it (named, as a finding) within 10 s."""
    os.mkfifo(kb_copy / "recommendations" / "ZZ-FIFO.yaml")
    try:
        result = run("validate", "--rules", kb_copy, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("validate still blocked on the FIFO after 10 s", pytrace=False)
    assert "ZZ-FIFO.yaml" in result.both, "the FIFO is not named"
    assert result.rc == KB_REJECT_EXIT, result
    assert_no_traceback(result)


def _limit_memory() -> None:  # 1 GiB of address space: reading /dev/zero must fail fast, not eat RAM
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def test_symlink_to_dev_zero_is_refused_quickly(kb_copy: Path) -> None:
    """/dev/zero reports size 0 and never ends: a size check before reading does not stop it."""
    (kb_copy / "recommendations" / "ZZ-ZERO.yaml").symlink_to("/dev/zero")
    try:
        result = run("validate", "--rules", kb_copy, timeout=10, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail("validate still reading /dev/zero after 10 s", pytrace=False)
    assert_no_traceback(result)
    assert "ZZ-ZERO.yaml" in result.both, "the link is not named"
    assert result.rc == KB_REJECT_EXIT, result


# --- the validated-KB cache must not be a code-execution path ---------------------------------


class _Payload:
    """Unpickling this creates the marker file: proof that the cache ran attacker code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_poisoned_cache_does_not_execute(tmp_path: Path, kb_copy: Path) -> None:
    """The cache lives in a user-writable directory (FSGS_KB_CACHE): anyone who can write there
    must not get code run by the next `fsgs-kb` invocation. Each cache file is overwritten with a
    pickle whose loading creates a marker file."""
    cache = tmp_path / "cache"
    env = base_env(FSGS_KB_CACHE=str(cache))
    patient = tmp_path / "p.json"
    patient.write_bytes(good_line())
    assert run("validate", "--rules", kb_copy, env=env).rc == 0
    assert run("evaluate", "--rules", kb_copy, patient, env=env).rc == 0
    planted = [p for p in cache.rglob("*") if p.is_file()]
    if not planted:
        pytest.skip("no cache file is written: nothing to poison")
    marker = tmp_path / "PWNED"
    for path in planted:
        path.write_bytes(pickle.dumps(_Payload(marker)))
    results = [run("validate", "--rules", kb_copy, env=env), run("evaluate", "--rules", kb_copy, patient, env=env)]
    assert not marker.exists(), f"unpickling the planted cache ran code ({len(planted)} file(s) planted)"
    for result in results:
        assert_no_traceback(result)
        assert result.rc == 0, result


# --- docs writes its pages, not whatever a planted link points at ------------------------------


def test_docs_does_not_write_through_planted_symlink(tmp_path: Path) -> None:
    """`docs -o DIR` into a shared directory: a planted index.html -> elsewhere must not redirect
    the write (the outside file stays byte-for-byte the same)."""
    site = tmp_path / "site"
    site.mkdir()
    outside = tmp_path / "precious.txt"
    outside.write_text("precious contents\n")
    (site / "index.html").symlink_to(outside)
    result = run("docs", "-o", site)
    assert outside.read_text() == "precious contents\n", "docs wrote through the planted symlink"
    assert_no_traceback(result)
