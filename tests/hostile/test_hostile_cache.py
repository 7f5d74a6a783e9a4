"""No code from data: whatever is planted in the validated-KB cache directory, the next command
runs no code from it and gives the same result as without a cache.

Entries are HMAC-signed JSON; a planted pickle, a tampered or forged entry, a replayed entry, a
FIFO or a link is a miss, and the knowledge base is simply validated again."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_kb import EXAMPLE, copy_kb, run_cli

FORMAT = b"fsgs-kb-cache 4"  # pinned: a new format is a deliberate change (4: Rule.complements, scope cases)
CEILING = (
    b'"Parameter","max_daily_dose","Highest total daily cyclosporine dose under which the review calls the drug safe",'
)


def raise_ceiling(body: bytes) -> bytes:
    """The dose ceiling 5 → 50 mg/kg/day in an entry: 357 mg/day at 70 kg would no longer exceed."""
    changed = body.replace(CEILING + b"5,", CEILING + b"50,")
    assert changed != body
    return changed


class _Plant:
    """Unpickling this creates the marker file: proof that code from the cache ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A working directory with a copy of the knowledge base, and `explain` without any cache."""
    work = tmp_path_factory.mktemp("cache-work")
    copy_kb(work / "rules")
    proc = run_cli("explain", "--rules", "rules", str(EXAMPLE), cwd=work)
    assert proc.returncode == 0, proc.stderr
    return work, proc.stdout


def explain(work: Path, cache: Path) -> str:
    proc = run_cli("explain", "--rules", "rules", str(EXAMPLE), cwd=work, cache=cache)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def filled(work: Path, cache: Path, expected: str) -> Path:
    """Fill `cache` with a genuine entry; return the entry."""
    assert explain(work, cache) == expected
    entries = list(cache.glob("*.json"))
    assert len(entries) == 1
    return entries[0]


def sign(secret: bytes, key: str, body: bytes) -> bytes:
    mac = hmac.new(secret, FORMAT + b"\n" + key.encode() + b"\n" + body, hashlib.sha256).hexdigest().encode()
    return FORMAT + b"\n" + mac + b"\n" + body


def test_an_entry_is_signed_data_not_a_pickle(clean: tuple[Path, str], tmp_path: Path) -> None:
    work, expected = clean
    entry = filled(work, tmp_path / "cache", expected)
    header, mac, body = entry.read_bytes().split(b"\n", 2)
    assert header == FORMAT and len(mac) == 64
    assert isinstance(json.loads(body), list)
    secret = tmp_path / "cache" / "secret.key"
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.stat().st_size == 32
    assert explain(work, tmp_path / "cache") == expected  # and it is used


def test_planted_pickles_never_run(clean: tuple[Path, str], tmp_path: Path) -> None:
    work, expected = clean
    cache = tmp_path / "cache"
    entry = filled(work, cache, expected)
    marker = tmp_path / "MARKER"
    payload = pickle.dumps(_Plant(marker))
    for path in [entry, entry.with_suffix(".pickle"), *(cache / n for n in ("secret.key.pickle", "index.pickle"))]:
        path.write_bytes(payload)
    assert explain(work, cache) == expected
    assert not marker.exists()
    # signed with the real secret, a pickle is still only bytes that are not JSON: a miss
    secret = (cache / "secret.key").read_bytes()
    entry.write_bytes(sign(secret, entry.stem, payload))
    assert explain(work, cache) == expected
    assert not marker.exists()


def test_a_tampered_entry_is_not_used(clean: tuple[Path, str], tmp_path: Path) -> None:
    work, expected = clean
    cache = tmp_path / "cache"
    entry = filled(work, cache, expected)
    raw = entry.read_bytes()
    tampered = raise_ceiling(raw)  # the signature left as it was
    entry.write_bytes(tampered)
    assert explain(work, cache) == expected
    # a forged signature under a secret of the attacker's own
    entry.write_bytes(sign(os.urandom(32), entry.stem, tampered.split(b"\n", 2)[2]))
    assert explain(work, cache) == expected
    # a wrong format version, and garbage
    entry.write_bytes(raw.replace(FORMAT, b"fsgs-kb-cache 1", 1))
    assert explain(work, cache) == expected
    entry.write_bytes(b"\x00" * 1000)
    assert explain(work, cache) == expected


def test_a_secret_others_can_read_disables_the_cache(clean: tuple[Path, str], tmp_path: Path) -> None:
    """With a readable secret anyone could forge entries: such a secret is never used."""
    work, expected = clean
    cache = tmp_path / "cache"
    entry = filled(work, cache, expected)
    secret_file = cache / "secret.key"
    secret_file.chmod(0o644)
    forged = sign(secret_file.read_bytes(), entry.stem, raise_ceiling(entry.read_bytes().split(b"\n", 2)[2]))
    entry.write_bytes(forged)
    assert explain(work, cache) == expected
    assert entry.read_bytes() == forged  # nothing was stored either: the cache is off
    secret_file.chmod(0o600)  # the control: had the secret been private, the forgery would have worked
    assert explain(work, cache) != expected


def test_a_secret_that_is_a_link_disables_the_cache(clean: tuple[Path, str], tmp_path: Path) -> None:
    work, expected = clean
    cache = tmp_path / "cache"
    entry = filled(work, cache, expected)
    known = tmp_path / "known.key"
    known.write_bytes(b"k" * 32)
    known.chmod(0o600)
    (cache / "secret.key").unlink()
    (cache / "secret.key").symlink_to(known)
    entry.write_bytes(sign(b"k" * 32, entry.stem, raise_ceiling(entry.read_bytes().split(b"\n", 2)[2])))
    assert explain(work, cache) == expected


def test_an_entry_replayed_under_another_key_is_not_used(clean: tuple[Path, str], tmp_path: Path) -> None:
    """A genuine entry of one knowledge base copied to the name of another: the MAC covers the key."""
    work, expected = clean
    cache = tmp_path / "cache"
    entry = filled(work, cache, expected)
    other = copy_kb(tmp_path / "other")
    manifest = other / "kb.yaml"
    manifest.write_text(manifest.read_text(encoding="utf-8").replace("title: ", "title: Other ", 1), "utf-8")
    proc = run_cli("explain", "--rules", str(other), str(EXAMPLE), cwd=work, cache=cache)
    other_output = proc.stdout
    assert proc.returncode == 0 and other_output != expected
    other_entry = next(p for p in cache.glob("*.json") if p != entry)
    other_entry.write_bytes(entry.read_bytes())
    proc = run_cli("explain", "--rules", str(other), str(EXAMPLE), cwd=work, cache=cache)
    assert proc.stdout == other_output


def test_fifos_and_links_in_the_cache_do_not_hang_or_leak(clean: tuple[Path, str], tmp_path: Path) -> None:
    work, expected = clean
    cache = tmp_path / "cache"
    entry = filled(work, cache, expected)
    name = entry.name
    entry.unlink()
    os.mkfifo(cache / name)
    assert explain(work, cache) == expected  # no hang on the FIFO, and it was replaced, not written into
    assert (cache / name).is_file()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    (cache / name).unlink()
    (cache / name).symlink_to(victim)
    assert explain(work, cache) == expected
    assert victim.read_text(encoding="utf-8") == "precious"  # the link was replaced, not followed


def test_cache_off_writes_nothing(clean: tuple[Path, str], tmp_path: Path) -> None:
    work, expected = clean
    env = {**os.environ, "FSGS_KB_CACHE": "off", "XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "explain", "--rules", "rules", str(EXAMPLE)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout == expected
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give the secret to another user")
def test_a_secret_owned_by_someone_else_is_not_used(clean: tuple[Path, str], tmp_path: Path) -> None:
    work, expected = clean
    cache = tmp_path / "cache"
    entry = filled(work, cache, expected)
    secret_file = cache / "secret.key"
    entry.write_bytes(sign(secret_file.read_bytes(), entry.stem, raise_ceiling(entry.read_bytes().split(b"\n", 2)[2])))
    os.chown(secret_file, 65534, 65534)
    assert explain(work, cache) == expected


@pytest.mark.parametrize("xdg", [None, "relative/cache"])
def test_a_home_directory_that_does_not_exist_is_not_made(
    clean: tuple[Path, str], tmp_path: Path, xdg: str | None
) -> None:
    """A service account's HOME=/nonexistent (and no cache setting, or a relative XDG_CACHE_HOME,
    which the XDG spec says to ignore): the cache is off, said by `cache info`; the command made
    /nonexistent/.cache/fsgs-kb, a home directory included, and a relative XDG path in the
    working directory."""
    work, expected = clean
    home = tmp_path / "nonexistent"
    env = {k: v for k, v in os.environ.items() if k not in ("FSGS_KB_CACHE", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    if xdg:
        env["XDG_CACHE_HOME"] = xdg
    run = [sys.executable, "-m", "fsgs_kb"]
    proc = subprocess.run(
        [*run, "explain", "--rules", "rules", str(EXAMPLE)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout == expected, proc.stderr
    assert not home.exists() and not (work / "relative").exists()
    info = subprocess.run([*run, "cache", "info"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert f"the home directory {home} does not exist" in info.stdout + info.stderr, info
