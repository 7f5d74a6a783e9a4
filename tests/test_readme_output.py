"""The README shows real output: its `explain` block is what the command prints today (an
outside review found it two releases stale). After an intended change, paste the command's
output into the block (the assertion message says which command)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INTRO = "not apply, `--format json` gives the same tree for tools):\n\n```\n"


def test_the_readme_explain_block_is_real_output() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(INTRO) + len(INTRO)
    shown = text[start : text.index("```", start)]
    command = [sys.executable, "-m", "fsgs_kb", "explain", "examples/relapse-after-remission.json"]
    env = {k: v for k, v in os.environ.items() if k != "FSGS_KB_RULES"}  # as a reader runs it: found from here
    printed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert shown == printed.stdout + printed.stderr, (
        "README is stale: paste `fsgs-kb explain examples/relapse-after-remission.json`"
    )
