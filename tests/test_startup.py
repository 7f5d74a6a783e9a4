"""A command starts without importing what only other commands need.

`fsgs-kb explain patient.json` took ~0.45 s, nearly all of it imports: the validator, its JSON
Schemas (jsonschema and its dependencies, ~100 ms), the FHIR converter, Dask's runner and the
decision log's SQLite, whatever the command. They are now imported where they are used (see
tests/test_layering.py for `# deferred:`); this keeps it so, by what is imported rather than by
a timing, which a loaded machine would make flaky.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = (
    "jsonschema",  # the validator's schemas: only a cache miss or `validate` needs them
    "sqlite3",  # the decision log and the Bulk Data index
    "dask",
    "fsgs_kb.engine.check.validate",
    "fsgs_kb.engine.fhir.bulk",
    "fsgs_kb.engine.fhir.convert",
    "fsgs_kb.engine.batch.dask_bag",
    "fsgs_kb.service.decisionlog",
    "fsgs_kb.engine.report.handbook",
)


def imported_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    modules: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return modules


def test_the_command_line_imports_no_heavy_module_at_start() -> None:
    modules = imported_after("import fsgs_kb.cli")
    assert [m for m in HEAVY if m in modules] == []


def imported_by_command(*args: str) -> list[str]:
    """The modules a whole command run imported (written at exit, whatever its exit code)."""
    probe = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: sys.stderr.write('MODULES ' + json.dumps(sorted(sys.modules)) + '\\n'))\n"
        f"sys.argv = ['fsgs-kb', *{list(args)!r}]\n"
        "from fsgs_kb.cli import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    line = next(line for line in done.stderr.splitlines() if line.startswith("MODULES "))
    modules: list[str] = json.loads(line.removeprefix("MODULES "))
    return modules


def test_explain_and_evaluate_of_a_json_record_import_nothing_heavy() -> None:
    """The commands themselves, not only the import: `_fhir_reader` imported the FHIR reader for
    every input format before it looked whether the input was FHIR."""
    imported_by_command("validate")  # the cache filled (this session's cache may be new)
    for command in (("explain", "examples/dose-above-ceiling.json"), ("evaluate", "examples/missing-weight.json")):
        modules = imported_by_command(*command)
        assert "fsgs_kb.engine.report.explain" in modules or command[0] == "evaluate"
        assert [m for m in HEAVY if m in modules] == [], command


def test_a_knowledge_base_from_the_cache_needs_no_validator() -> None:
    """The first load fills the cache (and validates); the second, in a new process, reads it."""
    imported_after("import fsgs_kb; fsgs_kb.load()")
    modules = imported_after("import fsgs_kb; fsgs_kb.load()")
    assert [m for m in HEAVY if m in modules] == []


def test_the_probe_sees_an_import() -> None:
    """The check can fail: the validator imported is seen."""
    assert "jsonschema" in imported_after(
        "import fsgs_kb.engine.check.validate, fsgs_kb.engine.load.schemas as s\ns.validator('rule')"
    )
