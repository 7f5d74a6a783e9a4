"""Opening a batch output truncates it only when there is something to cut.

On ext4 (`auto_da_alloc`, the default), a file truncated to zero has all its pages written back
when it is closed, in the closing process: `fsgs-kb batch -o NEW` truncated its new, empty output
and then spent 0.26 s in close() at the end of a 20,000-record full-detail run (840 MB), about a
tenth of a two-worker run's time. These tests watch the real `os.ftruncate` calls (recorded, then
passed through) while a real OutputFile opens real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fsgs_kb.engine.batch.files import OutputFile


@pytest.fixture
def truncations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.ftruncate

    def watched(fd: int, length: int) -> None:
        calls.append(length)
        real(fd, length)

    monkeypatch.setattr(os, "ftruncate", watched)
    return calls


def _open(path: Path, resume: bool = False) -> OutputFile:
    output = OutputFile(str(path), None, {"test": "truncate"})
    output.open(resume)
    return output


def test_a_new_output_is_not_truncated(tmp_path: Path, truncations: list[int]) -> None:
    output = _open(tmp_path / "new.jsonl")
    output.close()
    assert truncations == []
    assert (tmp_path / "new.jsonl").read_bytes() == b""


def test_an_empty_existing_output_is_not_truncated(tmp_path: Path, truncations: list[int]) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    _open(tmp_path / "empty.jsonl").close()
    assert truncations == []


def test_an_output_holding_old_results_is_emptied(tmp_path: Path, truncations: list[int]) -> None:
    old = tmp_path / "old.jsonl"
    old.write_bytes(b'{"record":1}\n' * 100)
    _open(old).close()
    assert truncations == [0]
    assert old.read_bytes() == b"", "a run without --resume starts its output afresh"
