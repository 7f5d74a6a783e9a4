"""The output's CRC-32 (engine/batch/checksum.py): zlib-ng where the `speed` extra is installed,
zlib otherwise, and the same value either way, so that a resume record written by one install is
checked by the other. The resume record's value is also combined from chunk CRCs by the parent
(`crc32_combine`), which must equal the CRC of the bytes joined."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from generate import iter_cohort

from fsgs_kb.engine.batch.checksum import CRC32_IMPLEMENTATION, crc32, crc32_combine, crc32_combine_python

ROOT = Path(__file__).resolve().parent.parent
SIZES = (0, 1, 7, 15, 16, 17, 63, 64, 255, 4096 + 7, 42_033, 1 << 20)


def test_the_test_install_computes_with_zlib_ng() -> None:
    """The test extra installs zlib-ng: the suite exercises the fast path the bench measures."""
    assert importlib.util.find_spec("zlib_ng") is not None, "the test extra installs zlib-ng"
    assert CRC32_IMPLEMENTATION == "zlib-ng"


@pytest.mark.parametrize("size", SIZES)
def test_crc32_is_zlibs_crc32(size: int) -> None:
    data = random.Random(size).randbytes(size)
    assert crc32(data) == zlib.crc32(data)
    start = zlib.crc32(b"a line before\n")
    assert crc32(data, start) == zlib.crc32(data, start), "continued from a running value"
    assert crc32(bytearray(data)) == zlib.crc32(data) and crc32(memoryview(data)) == zlib.crc32(data)


@pytest.mark.parametrize("left", SIZES[:8])
@pytest.mark.parametrize("right", SIZES)
def test_crc32_combine_is_the_crc32_of_the_bytes_joined(left: int, right: int) -> None:
    rng = random.Random(left * 1_000_003 + right)
    a, b = rng.randbytes(left), rng.randbytes(right)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    assert crc32_combine_python(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def _batch(
    source: Path, out: Path, *extra: str, without_zlib_ng: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if without_zlib_ng is not None:  # a package of that name that cannot be imported: zlib-ng not installed
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(without_zlib_ng), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "batch", str(source), "-o", str(out), "--workers", "2", "--quiet", *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=180,
    )


def test_a_resume_record_written_without_zlib_ng_is_checked_with_it(tmp_path: Path) -> None:
    """A run on an install without the extra, resumed on one with it (and a forged result refused
    by the other): the recorded CRC means the same bytes whichever library took it."""
    blocked = tmp_path / "blocked"
    (blocked / "zlib_ng").mkdir(parents=True)
    (blocked / "zlib_ng" / "__init__.py").write_text('raise ImportError("zlib-ng is not installed here")\n')
    probe = subprocess.run(
        [sys.executable, "-c", "from fsgs_kb.engine.batch.checksum import CRC32_IMPLEMENTATION as c; print(c)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(blocked)},
        cwd=ROOT,
    )
    assert probe.stdout.strip() == "zlib", probe

    patients = list(iter_cohort(260, seed=5, invalid_rate=0.0))
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in patients[:130]), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    first = _batch(source, out, without_zlib_ng=blocked)
    assert first.returncode == 0, first.stderr
    recorded = json.loads((tmp_path / "out.jsonl.fsgs-kb.json").read_text())["state"]["output_crc32"]
    assert recorded == zlib.crc32(out.read_bytes())

    source.write_text("".join(json.dumps(p) + "\n" for p in patients), encoding="utf-8")
    resumed = _batch(source, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    whole = tmp_path / "whole.jsonl"
    assert _batch(source, whole).returncode == 0
    assert out.read_bytes() == whole.read_bytes()

    # one result changed at the same length: the other install refuses to resume from it
    text = out.read_bytes()
    at = text.index(b'"status":"') + len(b'"status":"')
    forged = text[:at] + bytes([text[at] ^ 0x01]) + text[at + 1 :]
    out.write_bytes(forged)
    source.write_text("".join(json.dumps(p) + "\n" for p in patients + patients[:5]), encoding="utf-8")
    refused = _batch(source, out, "--resume", without_zlib_ng=blocked)
    assert refused.returncode == 2, refused.stderr
    assert "error[batch.resume]" in refused.stderr and "CRC-32" in refused.stderr, refused.stderr
    assert out.read_bytes() == forged
