"""The validated-KB cache is bounded: after each store the least recently used entries beyond
MAX_ENTRIES or MAX_CACHE_BYTES go, and only files that are the cache's own ever go (the
directory may be writable by someone else). `fsgs-kb cache info` / `cache clear` show and empty it.

Real files in tmp_path, a real validation report stored under made-up keys, and the real CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import fsgs_kb
from fsgs_kb.engine import cache
from fsgs_kb.engine.check.report import ValidationReport
from fsgs_kb.engine.kb import KnowledgeBase

HOUR = 3600


def key(number: int) -> str:
    return hashlib.sha256(f"entry {number}".encode()).hexdigest()


def stored(directory: Path) -> set[str]:
    """The keys of the regular entry files in the directory."""
    return {
        path.stem
        for path in directory.iterdir()
        if cache.ENTRY_NAME.fullmatch(path.name) and path.is_file() and not path.is_symlink()
    }


def set_age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


@pytest.fixture
def report(kb: KnowledgeBase) -> ValidationReport:
    return kb.report


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(directory))
    return directory


def test_the_least_recently_used_go_first_and_a_hit_refreshes(
    cache_dir: Path, report: ValidationReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "MAX_ENTRIES", 4)
    for number in range(4):
        cache.store(key(number), report)
        set_age(cache_dir / f"{key(number)}.json", 1000 - number)  # 0 the oldest, 3 the newest
    assert stored(cache_dir) == {key(n) for n in range(4)}
    assert cache.load_cached(key(0)) is not None  # a hit: 0 is now the most recently used
    cache.store(key(4), report)
    assert stored(cache_dir) == {key(0), key(2), key(3), key(4)}  # 1 was the least recently used
    cache.store(key(5), report)
    assert stored(cache_dir) == {key(0), key(3), key(4), key(5)}
    for number in (0, 3, 4, 5):
        assert cache.load_cached(key(number)) is not None


def test_the_real_load_stores_within_the_bound(
    kb_copy: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, report: ValidationReport
) -> None:
    """Through `load`: the entry of the knowledge base just loaded survives a full cache, even
    when the others look newer (touched under a clock ahead of this one)."""
    monkeypatch.setattr(cache, "MAX_ENTRIES", 3)
    for number in range(3):
        cache.store(key(number), report)
        set_age(cache_dir / f"{key(number)}.json", -1000 + number)  # 0 the newest, in the future
    fsgs_kb.load(kb_copy)
    own = cache.content_key(kb_copy)
    assert own is not None
    assert len(stored(cache_dir)) == 3 and own in stored(cache_dir)
    assert key(2) not in stored(cache_dir)


def test_the_byte_limit(cache_dir: Path, report: ValidationReport, monkeypatch: pytest.MonkeyPatch) -> None:
    cache.store(key(0), report)
    size = (cache_dir / f"{key(0)}.json").stat().st_size
    assert size > 1000
    monkeypatch.setattr(cache, "MAX_CACHE_BYTES", size * 5 // 2)  # room for two entries, not three
    set_age(cache_dir / f"{key(0)}.json", 100)
    for number in range(1, 4):
        cache.store(key(number), report)
        set_age(cache_dir / f"{key(number)}.json", 100 - number)
        total = sum(path.stat().st_size for path in cache_dir.glob("*.json"))
        assert total <= cache.MAX_CACHE_BYTES
    assert stored(cache_dir) == {key(2), key(3)}


def test_only_what_is_ours_is_removed(cache_dir: Path, report: ValidationReport, tmp_path: Path) -> None:
    cache.store(key(0), report)
    outside = tmp_path / "precious.json"
    outside.write_text("precious", encoding="utf-8")
    outside_dir = tmp_path / "precious-dir"
    outside_dir.mkdir()
    (outside_dir / "kept").write_text("kept", encoding="utf-8")
    link_to_file = cache_dir / f"{key(1)}.json"
    link_to_file.symlink_to(outside)
    link_to_dir = cache_dir / f"{key(2)}.json"
    link_to_dir.symlink_to(outside_dir)
    directory = cache_dir / f"{key(3)}.json"
    directory.mkdir()
    (directory / "inside").write_text("inside", encoding="utf-8")
    old_pickle = cache_dir / f"{key(4)}.pickle"
    old_pickle.write_bytes(b"an entry of the former format")
    foreign = [cache_dir / name for name in ("notes.txt", f"{key(5).upper()}.json", f"{key(6)[:63]}.json", "x.pickle")]
    for path in foreign:
        path.write_text("not ours", encoding="utf-8")
    fresh = [cache_dir / ".entry-0123456789abcdef.tmp", cache_dir / ".secret-0123456789abcdef.tmp"]
    stale = [cache_dir / ".entry-fedcba9876543210.tmp", cache_dir / ".secret-fedcba9876543210.tmp"]
    for path in fresh + stale:
        path.write_bytes(b"half written")
    for path in stale:
        set_age(path, 2 * HOUR)
    set_age(fresh[0], HOUR - 60)
    secret = (cache_dir / cache.SECRET_FILE).read_bytes()

    cache.store(key(7), report)  # any store prunes; everything is within the bound

    assert not os.path.lexists(link_to_file) and outside.read_text(encoding="utf-8") == "precious"
    assert not os.path.lexists(link_to_dir) and (outside_dir / "kept").read_text(encoding="utf-8") == "kept"
    assert directory.is_dir() and (directory / "inside").exists()
    assert not old_pickle.exists()
    assert all(path.read_text(encoding="utf-8") == "not ours" for path in foreign)
    assert all(path.exists() for path in fresh), "a concurrent writer's temporary file was removed"
    assert not any(path.exists() for path in stale)
    assert (cache_dir / cache.SECRET_FILE).read_bytes() == secret
    assert stored(cache_dir) == {key(0), key(7)}
    assert cache.load_cached(key(0)) is not None and cache.load_cached(key(7)) is not None


def test_a_directory_named_like_an_entry_survives_the_bound(
    cache_dir: Path, report: ValidationReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither removed nor counted: the newest thing in the directory, it takes no entry's place."""
    monkeypatch.setattr(cache, "MAX_ENTRIES", 2)
    cache.store(key(0), report)
    set_age(cache_dir / f"{key(0)}.json", 1000)
    planted = cache_dir / f"{key(9)}.json"
    planted.mkdir()
    cache.store(key(1), report)
    assert planted.is_dir()
    assert stored(cache_dir) == {key(0), key(1)}


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="only root can give a file away")
def test_another_users_files_are_left_alone(
    cache_dir: Path, report: ValidationReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "MAX_ENTRIES", 1)
    cache.store(key(0), report)
    theirs = [cache_dir / f"{key(1)}.json", cache_dir / f"{key(2)}.pickle", cache_dir / ".entry-00ff00ff00ff00ff.tmp"]
    for path in theirs:
        path.write_bytes(b"theirs")
        set_age(path, 2 * HOUR)
        os.chown(path, 65534, 65534)
    cache.store(key(3), report)
    assert all(path.read_bytes() == b"theirs" for path in theirs)
    assert stored(cache_dir) == {key(1), key(3)}


def test_pruning_never_fails(tmp_path: Path, report: ValidationReport, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache directory that is missing or not a directory: no exception, nothing stored."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "missing"))
    cache.prune(tmp_path / "missing")
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x", encoding="utf-8")
    monkeypatch.setenv(cache.CACHE_ENV, str(not_a_directory))
    cache.store(key(0), report)
    cache.prune(not_a_directory)
    assert not_a_directory.read_text(encoding="utf-8") == "x"


PRUNER = """
import sys, time
from pathlib import Path
from fsgs_kb.engine import cache
cache.MAX_ENTRIES = 1
directory, ready, go = (Path(arg) for arg in sys.argv[1:4])
ready.touch()
while not go.exists():
    time.sleep(0.001)
cache.prune(directory)
"""


def test_concurrent_pruners_do_not_crash(tmp_path: Path) -> None:
    """Processes pruning one directory at once unlink the same names: each one that finds a name
    gone carries on, none fails, and the bound holds."""
    directory = tmp_path / "cache"
    directory.mkdir()
    for number in range(3000):
        (directory / f"{key(number)}.json").write_bytes(b"x")
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PRUNER, str(directory), str(tmp_path / f"ready-{n}"), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    try:
        while not all((tmp_path / f"ready-{n}").exists() for n in range(4)):
            assert all(process.poll() is None for process in processes), "a pruner ended before the start"
            time.sleep(0.01)
        go.touch()
        results = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert [process.returncode for process in processes] == [0, 0, 0, 0], results
    assert all(err == "" for _, err in results), results
    assert len(stored(directory)) == 1


# ---- the command ---------------------------------------------------------------------------------


def fsgs(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", *args], capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )


def info(env: dict[str, str]) -> dict[str, object]:
    run = fsgs("cache", "info", "--format", "json", env=env)
    assert run.returncode == 0, run.stderr
    data: dict[str, object] = json.loads(run.stdout)
    return data


def test_cache_info_and_clear(kb_copy: Path, tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    env = {cache.CACHE_ENV: str(directory)}
    assert info(env)["entries"] == 0  # no directory yet: an empty cache
    assert fsgs("validate", "--rules", str(kb_copy), env=env).returncode == 0
    state = info(env)
    assert state["directory"] == str(directory) and state["enabled"] is True
    assert state["entries"] == 1 and state["bytes"] == sum(p.stat().st_size for p in directory.glob("*.json"))
    assert state["max_entries"] == cache.MAX_ENTRIES and state["max_bytes"] == cache.MAX_CACHE_BYTES
    (directory / f"{key(1)}.pickle").write_bytes(b"old")
    (directory / "notes.txt").write_text("not ours", encoding="utf-8")
    text = fsgs("cache", "info", env=env)
    assert text.returncode == 0 and str(directory) in text.stdout and "entries: 1 of at most 64" in text.stdout
    assert "1 leftover file(s)" in text.stdout

    cleared = fsgs("cache", "clear", env=env)
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.startswith(f"removed 2 file(s), {state['bytes'] + 3} bytes"), cleared.stdout
    state = info(env)
    assert state["entries"] == 0 and state["bytes"] == 0 and state["leftovers"] == 0
    assert sorted(path.name for path in directory.iterdir()) == ["notes.txt", "secret.key"]
    again = fsgs("cache", "clear", env=env)
    assert again.returncode == 0 and again.stdout.startswith("removed 0 file(s)")


def test_cache_off(tmp_path: Path) -> None:
    """FSGS_KB_CACHE=off: info says so, clear removes nothing (not even from the default place)."""
    default = tmp_path / "xdg" / "fsgs-kb"
    default.mkdir(parents=True)
    entry = default / f"{key(0)}.json"
    entry.write_text("an entry", encoding="utf-8")
    env = {cache.CACHE_ENV: "off", "XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)}
    text = fsgs("cache", "info", env=env)
    assert text.returncode == 0 and "off" in text.stdout, text.stderr
    state = info(env)
    assert state["enabled"] is False and state["directory"] is None and state["entries"] == 0
    cleared = fsgs("cache", "clear", env=env)
    assert cleared.returncode == 0 and "nothing removed" in cleared.stdout, cleared.stderr
    assert entry.read_text(encoding="utf-8") == "an entry"


@pytest.mark.parametrize("setting", ["OFF", "off ", " Off\t", "relative/cache"])
def test_off_in_any_case_and_a_relative_path_turn_the_cache_off(tmp_path: Path, setting: str) -> None:
    """`OFF` or `off ` made a directory of that name in the working directory and cached there
    (hostile sweep); a relative path would do the same wherever a command runs. Now each turns the
    cache off, says why, and a command run with it writes nothing in the working directory."""
    env = {cache.CACHE_ENV: setting, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)}
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "validate"], capture_output=True, text=True, timeout=300,
        env={**os.environ, **env}, cwd=work,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert list(work.iterdir()) == [] and not (tmp_path / "xdg").exists()
    state = info(env)
    assert state["enabled"] is False and state["directory"] is None
    said = "FSGS_KB_CACHE=off" if setting.strip().lower() == "off" else "'relative/cache' is not an absolute path"
    assert said in str(state["off_reason"])
    assert said in fsgs("cache", "info", env=env).stdout


def test_info_warns_of_a_directory_others_can_write_in(tmp_path: Path) -> None:
    """The HMAC guards every entry, but a cache directory writable by others without the sticky
    bit lets them remove or replace entries: `cache info` says so (and not for 0700, nor 1777)."""
    directory = tmp_path / "cache"
    directory.mkdir()
    env = {cache.CACHE_ENV: str(directory)}
    for mode, warned in (
        (0o777, "its group and others (mode 0777"),
        (0o775, "its group (mode 0775"),
        (0o1777, None),
        (0o700, None),
    ):
        directory.chmod(mode)
        state = info(env)
        text = fsgs("cache", "info", env=env).stdout
        if warned is None:
            assert state["warnings"] == [] and "warning" not in text, oct(mode)
        else:
            assert len(state["warnings"]) == 1 and warned in str(state["warnings"]), state
            assert f"  warning: the cache directory is writable by {warned}" in text, text
    directory.chmod(0o700)


def test_an_unreadable_cache_directory_is_an_io_error(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x", encoding="utf-8")
    for command in ("info", "clear"):
        run = fsgs("cache", command, env={cache.CACHE_ENV: str(not_a_directory)})
        assert run.returncode == 2 and "error[cli.cache]" in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
    assert not_a_directory.read_text(encoding="utf-8") == "x"


@pytest.mark.parametrize("command", [["cache"], ["cache", "info"], ["cache", "clear"]])
def test_cache_commands_list_their_exit_codes(command: list[str]) -> None:
    run = fsgs(*command, "--help", env={})
    assert run.returncode == 0 and "Exit codes:" in run.stdout


def test_the_suite_never_writes_the_users_cache() -> None:
    """conftest points FSGS_KB_CACHE at a temporary directory of this run, which every command a
    test starts inherits."""
    setting = Path(os.environ[cache.CACHE_ENV]).resolve()
    assert setting.is_relative_to(Path(tempfile.gettempdir()).resolve())
    assert setting.name.startswith("fsgs-kb-test-cache-")
