"""Scenario tests as data: the clinical editors' own test cases, in rules/tests/*.yaml.

A scenario file holds named cases; each case is a patient (whole, or changes over a named base
patient from rules/tests/_bases.yaml) and what must happen: rules that fire, do not fire, or are
undetermined (optionally with the missing fields), the status, or invalid-record errors. The
same files run under `pytest` (ids `RULE-ID::case`) and, for editors, under `fsgs-kb test`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsgs_kb.engine.errors import KBError, KBErrors, pointer_join
from fsgs_kb.engine.load.files import RulesFiles, exists, yaml_files
from fsgs_kb.engine.load.loader import display_path
from fsgs_kb.engine.load.yamlsafe import Located, load_yaml

BASES_FILE = "_bases.yaml"
EXPECT_KEYS = ("status", "fired", "not_fired", "undetermined", "errors", "advice", "caveats", "no_recommendation")


@dataclass
class Case:
    """One scenario: where it is written, the patient it builds and what it expects."""

    file: str
    line: int
    group: str
    name: str
    note: str
    patient: Any
    expect: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.group}::{self.name}"


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
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    node = record
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def load_cases(tests_dir: Path, root: Path | None = None) -> list[Case]:
    """Every case of every scenario file; raise KBErrors (located) for malformed files.

    Files are read only inside `root`, the rules directory (by default the parent of tests/)."""
    files = RulesFiles(tests_dir.parent if root is None else root)
    bases: dict[str, Any] = {}
    errors: list[KBError] = []
    bases_path = tests_dir / BASES_FILE
    if exists(bases_path):
        data = load_yaml(bases_path, display_path(bases_path), files).data
        bases = data.get("bases", {}) if isinstance(data, dict) else {}
        if not isinstance(bases, dict):
            bases = {}
    cases: list[Case] = []
    for path in yaml_files(tests_dir):
        if path.name == BASES_FILE:
            continue
        try:
            doc = load_yaml(path, display_path(path), files)
        except KBErrors as exc:
            errors.extend(exc.errors)
            continue
        cases.extend(_cases_of(doc, path.stem, bases, errors))
    if errors:
        raise KBErrors(errors)
    return cases


def _cases_of(doc: Located, group: str, bases: dict[str, Any], errors: list[KBError]) -> list[Case]:
    out: list[Case] = []
    data = doc.data if isinstance(doc.data, dict) else {}
    for i, raw in enumerate(data.get("cases") or []):
        pointer = pointer_join("/cases", i)
        if not isinstance(raw, dict) or "name" not in raw or "expect" not in raw:
            errors.append(doc.error("scenario.form", "a case needs a name and an expect", pointer))
            continue
        base_name = raw.get("base")
        if base_name is not None and base_name not in bases:
            errors.append(
                doc.error(
                    "scenario.unknown_base",
                    f"unknown base patient '{base_name}'",
                    pointer + "/base",
                    f"bases: {', '.join(sorted(bases))}",
                )
            )
            continue
        unknown = [k for k in raw["expect"] if k not in EXPECT_KEYS]
        if unknown:
            errors.append(
                doc.error(
                    "scenario.expect",
                    f"unknown expectation '{unknown[0]}'",
                    pointer + "/expect",
                    f"use {', '.join(EXPECT_KEYS)}",
                )
            )
            continue
        patient = merge(bases.get(base_name, {}), raw.get("patient", {})) if base_name else raw.get("patient")
        for target in raw.get("remove", []):
            remove_pointer(patient, target)
        if isinstance(patient, dict) and "id" not in patient:
            patient["id"] = f"{group}::{raw['name']}"
        out.append(
            Case(
                doc.file,
                doc.where(pointer)[0],
                group,
                str(raw["name"]),
                str(raw.get("note", "")),
                patient,
                raw["expect"],
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
