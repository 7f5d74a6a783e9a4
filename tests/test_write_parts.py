"""A worker writes its block as the lines it made (pwritev, engine/batch/workers.py), unjoined.

Held here on real files: the bytes are the joined block's, at the given offset, for more buffers
than one pwritev takes; a write cut short by the file-size limit (a partial pwritev, then EFBIG)
continues from the exact byte where it stopped; and the block's CRC-32, taken line by line, is
the joined block's."""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import zlib
from pathlib import Path

from fsgs_kb.engine.batch.workers import IOV_MAX, advance, write_parts_at


def _parts(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    parts = []
    for i in range(n):
        parts += (bytes([65 + i % 26]) * rng.choice((0, 1, 7, 300, 4096, 42_000)), b"\n")
    return parts


def test_the_parts_land_as_the_joined_block_at_the_offset(tmp_path: Path) -> None:
    parts = _parts(IOV_MAX + 300, seed=1)  # two pwritev calls at least, with empty lines among them
    path = tmp_path / "out"
    path.write_bytes(b"#" * 1000)
    fd = os.open(path, os.O_WRONLY)
    try:
        write_parts_at(fd, parts, 1000)
        write_parts_at(fd, [b"head", b"\n"], 0)
    finally:
        os.close(fd)
    joined = b"".join(parts)
    assert path.read_bytes() == b"head\n" + b"#" * 995 + joined


CHILD = """
import os, sys
sys.path.insert(0, sys.argv[3])
from test_write_parts import _parts
from fsgs_kb.engine.batch.workers import write_parts_at
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
try:
    write_parts_at(fd, _parts(400, seed=2), int(sys.argv[2]))
except OSError as exc:
    print(exc.errno)
"""


def test_a_write_cut_short_continues_where_it_stopped(tmp_path: Path) -> None:
    """RLIMIT_FSIZE: the kernel writes up to the limit (a partial pwritev), then refuses (EFBIG):
    every byte before the limit is the block's own, none skipped or repeated."""
    limit = 1_000_003
    path = tmp_path / "out"

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), "5", str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        preexec_fn=cap,  # noqa: PLW1509 - the limit binds the child only
        timeout=60,
    )
    assert done.stdout.strip() == "27", done  # EFBIG, after a partial write
    joined = b"".join(_parts(400, seed=2))
    assert len(joined) > limit
    data = path.read_bytes()
    assert len(data) == limit
    assert data[5:] == joined[: limit - 5]


def test_a_short_write_continues_from_the_next_unwritten_byte() -> None:
    """What `write_parts_at` does after pwritev wrote `written` bytes of many buffers: the rest is
    exactly the block from that byte (a short write of a regular file is rare; a full disk or a
    file-size limit ends the write with an error, as the test above drives)."""
    rng = random.Random(3)
    for _ in range(300):
        parts = [rng.randbytes(rng.choice((1, 2, 5, 64))) for _ in range(rng.randint(1, 12))]
        joined = b"".join(parts)
        pending = [memoryview(part) for part in parts]
        at = 0
        while pending:
            written = rng.randint(0, len(joined) - at)
            advance(pending, written)
            at += written
            assert b"".join(pending) == joined[at:]


def test_the_crc_of_the_parts_is_the_crc_of_the_block() -> None:
    import fsgs_kb
    from fsgs_kb.engine.batch.workers import evaluate_chunk
    from fsgs_kb.engine.read.records import Record

    kb = fsgs_kb.load()
    raws = [
        b'{"id": "A"}',
        b"not json",
        Path(__file__).resolve().parent.parent.joinpath("examples/dose-above-ceiling.json").read_bytes(),
    ]
    records = [Record(i + 1, i + 1, raw=raw.replace(b"\n", b" ")) for i, raw in enumerate(raws)]
    joined = evaluate_chunk(kb, records, None, {"detail": "full"})
    parts = evaluate_chunk(kb, records, None, {"detail": "full"}, unjoined=True)
    assert parts.parts is not None and parts.blob == b""
    assert b"".join(parts.parts) == joined.blob
    assert parts.crc == joined.crc == zlib.crc32(joined.blob)
    assert parts.size == joined.size == len(joined.blob)
    assert (parts.by_status, parts.by_rule) == (joined.by_status, joined.by_rule)
