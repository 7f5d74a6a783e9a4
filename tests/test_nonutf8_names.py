"""A file name that is not UTF-8 (`x\\xff.yaml`) in the knowledge base: Python keeps it with a
lone surrogate (surrogateescape), which no output can encode. The CLI exited 3 with
UnicodeEncodeError ('surrogates not allowed'): the knowledge-base fingerprint encoded the name as
UTF-8, and any output holding it could not be written. Now the fingerprint hashes the name's own
bytes, the text renderers show the byte as `\\xff` (engine/report/text.py), and standard output
writes a lone surrogate left in a JSON document as its escape `\\udcff` (output.py), so every
format is valid UTF-8 and names the file. The real CLI, in a subprocess, in a UTF-8 locale."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NAME = os.fsdecode(b"x\xff.yaml")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONIOENCODING"}
    env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8")
    return subprocess.run([sys.executable, "-m", "fsgs_kb", *args], capture_output=True, timeout=300, env=env, cwd=cwd)


@pytest.fixture
def kb_with_bad_name(kb_copy: Path) -> Path:
    source = kb_copy / "recommendations" / "CSA-DOSE-EXCEEDS.yaml"
    shutil.copy(source, os.fsencode(kb_copy / "recommendations") + b"/x\xff.yaml")
    return kb_copy


@pytest.mark.parametrize("fmt", ["text", "json", "github", "sarif"])
def test_validate_names_the_file_in_every_format(kb_with_bad_name: Path, fmt: str) -> None:
    done = run("validate", "--rules", "rules", "--format", fmt, cwd=kb_with_bad_name.parent)
    out, err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")  # valid UTF-8, both
    assert done.returncode == 1, err
    assert "Traceback" not in err and "error[internal]" not in err
    if fmt == "json":
        errors = json.loads(out)["errors"]
        assert [e["file"] for e in errors] == [f"rules/recommendations/{NAME}"]
    elif fmt == "sarif":
        location = json.loads(out)["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == f"rules/recommendations/{NAME}"
    else:
        assert "rules/recommendations/x\\xff.yaml" in out, out


def test_evaluate_with_that_knowledge_base_is_a_located_error(kb_with_bad_name: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "dose-above-ceiling.json"
    done = run("evaluate", "--rules", "rules", str(example), cwd=kb_with_bad_name.parent)
    err = done.stderr.decode("utf-8")
    assert done.returncode == 2, err
    assert err.startswith("rules/recommendations/x\\xff.yaml:2:5: error[rule.duplicate_id]"), err
