"""`test --junit-xml` writes its report outside the knowledge base it tests, never through a link
(hostile sweep g: `--junit-xml RULES/recommendations/CSA-DOSE-EXCEEDS.yaml` replaced the rule with
the report, printed "passed" and exited 0; the next validate failed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_kb import copy_kb, run_cli


@pytest.mark.parametrize("where", ["recommendations/CSA-DOSE-EXCEEDS.yaml", "new-report.xml", "link"])
def test_a_report_inside_the_knowledge_base_is_refused_before_the_run(tmp_path: Path, where: str) -> None:
    kb = copy_kb(tmp_path / "jx")
    before = {p: p.read_bytes() for p in kb.rglob("*") if p.is_file()}
    if where == "link":  # a link outside naming a file inside
        report = tmp_path / "report.xml"
        report.symlink_to(kb / "kb.yaml")
    else:
        report = kb / where
    proc = run_cli("test", "--rules", str(kb), "-k", "DOSE", "--junit-xml", str(report), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr)
    assert f"{report}: error[cli.junit] --junit-xml names a path inside the knowledge base under test" in proc.stderr
    assert "passed" not in proc.stdout, proc.stdout  # refused before running
    assert {p: p.read_bytes() for p in kb.rglob("*") if p.is_file()} == before
    assert run_cli("validate", "--rules", str(kb), cwd=tmp_path).returncode == 0


def test_a_link_at_the_report_path_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n", encoding="utf-8")
    report = tmp_path / "junit.xml"
    report.symlink_to(victim)
    proc = run_cli("test", "-k", "DOSE", "--junit-xml", str(report), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert not report.is_symlink() and report.read_text(encoding="utf-8").startswith("<?xml")
