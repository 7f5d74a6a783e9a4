"""Golden tests: broken knowledge-base variants and the exact output of `fsgs-kb validate`.

Each tests/kb_invalid/NN-name.yaml describes one defect as edits of a copy of the bundled
knowledge base; NN-name.expected holds the exit code and the exact output. Run with
FSGS_UPDATE_GOLDENS=1 to rewrite the expected files after an intended change (then review them).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from support import RULES

from fsgs_kb.cli import main

CASES_DIR = Path(__file__).parent / "kb_invalid"
CASES = sorted(CASES_DIR.glob("*.yaml"))
FINGERPRINT = re.compile(r"fingerprint [0-9a-f]{12}")  # any edit of the knowledge base changes it


def apply_edit(root: Path, edit: dict[str, Any]) -> None:
    if "write" in edit:  # a whole file's new text
        (root / edit["write"]).write_text(edit["text"], encoding="utf-8")
        return
    if "copy" in edit:
        shutil.copy(root / edit["copy"], root / edit["to"])
        return
    path = root / edit["file"]
    if "append_comment_bytes" in edit:
        with path.open("a", encoding="utf-8") as handle:
            handle.write("# padding\n" * (edit["append_comment_bytes"] // 10 + 1))
        return
    text = path.read_text(encoding="utf-8")
    assert text.count(edit["find"]) == 1, f"{edit['find']!r} must occur exactly once in {edit['file']}"
    path.write_bytes(text.replace(edit["find"], edit["replace"]).encode(edit.get("encoding", "utf-8")))


@pytest.mark.parametrize("case_file", CASES, ids=[c.stem for c in CASES])
def test_broken_knowledge_base(case_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(RULES, tmp_path / "rules")
    for edit in yaml.safe_load(case_file.read_text(encoding="utf-8"))["edits"]:
        apply_edit(tmp_path / "rules", edit)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["validate", "--rules", "rules"])
    actual = FINGERPRINT.sub("fingerprint …", f"exit: {result.exit_code}\n{result.output}")
    expected_file = case_file.with_suffix(".expected")
    if os.environ.get("FSGS_UPDATE_GOLDENS"):
        expected_file.write_text(actual, encoding="utf-8")
    assert "Traceback" not in actual
    assert actual == expected_file.read_text(encoding="utf-8")


def test_every_defect_is_an_error_or_warning() -> None:
    """A golden file whose validate run came out clean would test nothing."""
    for case_file in CASES:
        text = case_file.with_suffix(".expected").read_text(encoding="utf-8")
        assert "error[" in text or "warning[" in text, case_file.name


def test_every_error_says_how_to_fix_it() -> None:
    """An editor reads what is wrong and what to write instead: every error and warning line of
    every golden carries a hint (an enum, a type, an empty file, a misshapen expression had none)."""
    bare = [
        f"{case_file.name}: {line}"
        for case_file in CASES
        for line in case_file.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
        if re.search(r"(error|warning)\[", line) and "(hint: " not in line
    ]
    assert not bare, "\n".join(bare)
