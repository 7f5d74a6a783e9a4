"""Write patient records as a FHIR Bulk Data export, the way a server hands one over.

Used to make the examples (examples/fhir/make_examples.py), the benchmark's inputs and test
exports: each record becomes its Bundle (record_to_bundle), and every resource a line of an NDJSON
file of its type. Like a real export the files are not grouped by patient: each type is split
over several files, each line goes to a file chosen at random, and lines are shuffled in blocks,
so a patient's resources lie far apart and in no order. Memory stays bounded by the block size,
not by the number of patients, so a 100,000-patient export is written as cheaply as a small one.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.fhir.inverse import record_to_bundle

BLOCK = 4096  # lines shuffled together before they are written


class _Files:
    """The open NDJSON files of an export, each with its block of lines waiting to be shuffled."""

    def __init__(self, directory: Path, files_per_type: int, rng: random.Random) -> None:
        self.directory, self.per_type, self.rng = directory, files_per_type, rng
        self.handles: dict[str, TextIO] = {}
        self.blocks: dict[str, list[str]] = {}

    def add(self, rtype: str, line: str) -> None:
        name = f"{rtype}.{self.rng.randrange(self.per_type) + 1:03d}.ndjson"
        block = self.blocks.setdefault(name, [])
        block.append(line)
        if len(block) >= BLOCK:
            self.flush(name)

    def flush(self, name: str) -> None:
        block = self.blocks.get(name, [])
        self.rng.shuffle(block)
        if name not in self.handles:
            self.handles[name] = open(self.directory / name, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        self.handles[name].write("".join(f"{line}\n" for line in block))
        block.clear()

    def close(self) -> list[str]:
        for name in list(self.blocks):
            self.flush(name)
        for handle in self.handles.values():
            handle.close()
        return sorted(self.handles)


def unique_ids(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The Bundle's resources with ids unique across patients (record_to_bundle numbers them per
    Bundle), references to the Patient kept as they are."""
    out = []
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] != "Patient":
            res["id"] = f"{res['id']}-{res['subject']['reference'].split('/')[-1]}"
        out.append(res)
    return out


def write_bulk_export(
    records: Iterable[dict[str, Any]],
    directory: str | Path,
    fmap: FhirMap,
    as_of: date,
    *,
    seed: int = 1,
    files_per_type: int = 2,
) -> tuple[int, list[str]]:
    """Write the records' resources to NDJSON files in directory; (patients written, file names)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    files = _Files(root, files_per_type, random.Random(seed))
    count = 0
    try:
        for record in records:
            for res in unique_ids(record_to_bundle(record, fmap, as_of=as_of)):
                files.add(res["resourceType"], json.dumps(res, separators=(",", ":"), ensure_ascii=False))
            count += 1
    finally:
        names = files.close()
    return count, names
