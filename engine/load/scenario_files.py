"""Scenario tests as data: the clinical editors' own test cases, in rules/tests/*.yaml.

A scenario file holds named cases; each case is a patient (whole, or changes over a named base
patient from rules/tests/_bases.yaml) and what must happen: rules that fire, do not fire, or are
undetermined (optionally with the missing fields), the status, or invalid-record errors. The
same files run under `pytest` (ids `RULE-ID::case`) and, for editors, under `fsgs-kb test`.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsgs_kb.engine.errors import KBError, KBErrors, pointer_join, pointer_parts
from fsgs_kb.engine.load.files import RulesFiles, exists, misnamed_error, misnamed_yaml, yaml_files
from fsgs_kb.engine.load.loader import display_path
from fsgs_kb.engine.load.scenario_checks import bases_problems, scenario_problems
from fsgs_kb.engine.load.yamlsafe import Located, load_yaml

BASES_FILE = "_bases.yaml"


@dataclass(kw_only=True)
class Case:
    """One scenario: where it is written, the patient it builds and what it expects."""

    file: str
    line: int
    group: str
    name: str
    note: str
    patient: Any
    expect: dict[str, Any]
    # where the patient is written: (document, pointer of the patient in it), the case's own
    # changes first, then its base patient
    origins: tuple[tuple[Located, str], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.group}::{self.name}"

    def written_at(self, pointer: str) -> str | None:
        """FILE:LINE:COL where the value at a pointer of the patient is written (the deepest
        place that writes it: the case's `patient:`, else its base in tests/_bases.yaml), so an
        error of the record built from them names the line to change; None when neither does."""
        best: tuple[int, str] | None = None
        for doc, prefix in self.origins:
            probe = pointer
            while probe and prefix + probe not in doc.values:
                probe = probe.rsplit("/", 1)[0]
            if probe and (best is None or len(probe) > best[0]):
                line, col = doc.values[prefix + probe]
                best = (len(probe), f"{doc.file}:{line}:{col}")
        return best[1] if best else None


def merge(base: Any, changes: Any) -> Any:
    """Deep-merge mappings; anything else in `changes` replaces what the base had."""
    if isinstance(base, dict) and isinstance(changes, dict):
        out = copy.deepcopy(base)
        for key, value in changes.items():
            out[key] = merge(out.get(key), value) if key in out else copy.deepcopy(value)
        return out
    return copy.deepcopy(changes)


def remove_pointer(record: Any, pointer: str) -> None:
    """Delete the value at a JSON pointer (a case's `remove:` list), if it is there."""
    parts = pointer_parts(pointer)
    node = record
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if parts and isinstance(node, dict):
        node.pop(parts[-1], None)


def load_cases(tests_dir: Path, root: Path | None = None, rule_ids: Collection[str] | None = None) -> list[Case]:
    """Every case of every scenario file; raise KBErrors with every problem of every file
    (engine.load.scenario_checks), each located, when any has one.

    `rule_ids`: the knowledge base's rules, which the cases may name (None: not checked).
    Files are read only inside `root`, the rules directory (by default the parent of tests/)."""
    files = RulesFiles(tests_dir.parent if root is None else root)
    errors: list[KBError] = [misnamed_error(p, display_path(p)) for p in misnamed_yaml(tests_dir)]
    bases = _bases(tests_dir / BASES_FILE, files, errors)
    cases: list[Case] = []
    for path in yaml_files(tests_dir):
        if path.name == BASES_FILE:
            continue
        try:
            doc = load_yaml(path, display_path(path), files)
        except KBErrors as exc:
            errors.extend(exc.errors)
            continue
        problems = scenario_problems(doc, rule_ids, bases)
        errors.extend(problems)
        if not problems and bases is not None:
            cases.extend(_cases_of(doc, path.stem, bases))
    if errors:
        raise KBErrors(errors)
    return cases


def _bases(path: Path, files: RulesFiles, errors: list[KBError]) -> dict[str, tuple[Any, Located]] | None:
    """The base patients by name, each with its file ({} without a bases file); None when the file has problems
    (added to `errors`), so that cases naming a base are not reported again."""
    if not exists(path):
        return {}
    try:
        doc = load_yaml(path, display_path(path), files)
    except KBErrors as exc:
        errors.extend(exc.errors)
        return None
    problems = bases_problems(doc)
    errors.extend(problems)
    return None if problems else {name: (patient, doc) for name, patient in doc.data["bases"].items()}


def _cases_of(doc: Located, group: str, bases: dict[str, tuple[Any, Located]]) -> list[Case]:
    """The cases of a file that has no problems (its shape checked by its schema)."""
    out: list[Case] = []
    for i, raw in enumerate(doc.data["cases"]):
        base_name = raw.get("base")
        origins: tuple[tuple[Located, str], ...] = ((doc, pointer_join("/cases", i, "patient")),)
        if base_name:
            base, base_doc = bases[base_name]
            patient = merge(base, raw.get("patient", {}))
            origins += ((base_doc, pointer_join("/bases", base_name)),)
        else:
            patient = copy.deepcopy(raw.get("patient"))
        for target in raw.get("remove", []):
            remove_pointer(patient, target)
        if isinstance(patient, dict) and "id" not in patient:
            patient["id"] = f"{group}::{raw['name']}"
        line = doc.where(pointer_join("/cases", i))[0]
        note = raw.get("note", "")
        out.append(
            Case(
                file=doc.file,
                line=line,
                group=group,
                name=raw["name"],
                note=note,
                patient=patient,
                expect=raw["expect"],
                origins=origins,
            )
        )
    return out


def rule_ids_tested(cases: list[Case]) -> set[str]:
    """Rules some case expects something of (fired, not fired or undetermined)."""
    out: set[str] = set()
    for case in cases:
        for key in ("fired", "not_fired", "advice", "caveats"):
            out |= set(case.expect.get(key, []))
        out |= set(case.expect.get("undetermined", {}) or [])
    return out
