"""A link planted at the predictable name of a temporary file a run writes and then renames:
the resume record's (`OUTPUT.fsgs-kb.json.PID.tmp`) and the summary's (`.fsgs-kb-write.PID.tmp`
beside it). Opened with a plain "w", the record or summary was written through the link into
its target; each is now made fresh (engine.fresh.create_fresh), the target left as it was."""

from __future__ import annotations

import json
from pathlib import Path

from hostile_support import (
    assert_each_record_once,
    assert_no_traceback,
    good_line,
    jsonl,
    read_results,
    run_with_own_pid,
)

VICTIM = b"somebody else's file\n"


def test_a_symbolic_link_at_the_resume_records_temporary_is_not_written_through(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(jsonl([good_line(f"P{i}") for i in range(3)]))
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    done = run_with_own_pid(
        f'ln -s {victim} "out.jsonl.fsgs-kb.json.$$.tmp"',
        "batch",
        "in.jsonl",
        "-o",
        "out.jsonl",
        "--quiet",
        cwd=tmp_path,
    )
    assert done.rc == 0, done
    assert_no_traceback(done)
    assert victim.read_bytes() == VICTIM
    assert_each_record_once(read_results(tmp_path / "out.jsonl"), 3)
    record = json.loads((tmp_path / "out.jsonl.fsgs-kb.json").read_text())
    assert record["state"]["output_bytes"] == (tmp_path / "out.jsonl").stat().st_size
    assert not list(tmp_path.glob("*.tmp")), list(tmp_path.iterdir())


def test_a_hard_link_at_the_summarys_temporary_is_not_written_through(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(jsonl([good_line(f"P{i}") for i in range(2)]))
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    done = run_with_own_pid(
        f'ln {victim} ".fsgs-kb-write.$$.tmp"',
        "batch",
        "in.jsonl",
        "-o",
        "out.jsonl",
        "--summary",
        "summary.json",
        "--quiet",
        cwd=tmp_path,
    )
    assert done.rc == 0, done
    assert victim.read_bytes() == VICTIM
    assert json.loads((tmp_path / "summary.json").read_text())
    assert not list(tmp_path.glob(".*.tmp")), list(tmp_path.iterdir())
