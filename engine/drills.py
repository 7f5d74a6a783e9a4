"""Fault drills for tests and operators: FSGS_KB_FAULT="KIND:TARGET,…" plans faults by kind
(batch workers: segv, kill, killwrite, stallwrite at a record id — engine/batch/workers.py; the
compiled evaluator: nocompile at a generated function — engine/evaluate/codegen.py)."""

from __future__ import annotations

import os

FAULT_ENV = "FSGS_KB_FAULT"


def fault_plan() -> dict[str, str]:
    """The planned faults, by target: {TARGET: KIND}."""
    spec = os.environ.get(FAULT_ENV, "")
    return {target: kind for kind, _, target in (item.partition(":") for item in spec.split(",") if item)}


def planned(kind: str) -> frozenset[str]:
    """The targets of the planned faults of one kind."""
    return frozenset(target for target, found in fault_plan().items() if found == kind)
