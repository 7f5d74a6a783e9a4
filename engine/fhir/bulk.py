"""Group a FHIR Bulk Data export into one Bundle-like group per Patient, with flat memory.

A bulk export has one NDJSON file per resource type, in no particular order and not grouped by
patient, and may be far larger than memory. Every line is first streamed into a SQLite index keyed
by the patient it refers to; then the patients are walked one at a time (keyset pagination, never
a list of all patients in memory) and each yields a collection Bundle that bundle_to_record reads.
Bad lines, clinical resources about no patient, and resources about a patient missing from the
export come out as LineError items in the same stream: they never stop it.

An export comes from one server, and the Bulk Data IG lets its references be relative or absolute
URLs rooted at that server's base; the files do not say which base that is. When every patient
reference in the export is absolute with one base, that base is the export's server and each
grouped Bundle's fullUrls carry it; otherwise they are relative. Either way refs.py then decides,
as for any Bundle, that an absolute reference to some other server is another patient.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.fhir.bundle import CLINICAL
from fsgs_kb.engine.fhir.codes import reference
from fsgs_kb.engine.fhir.ndjson import EXPORT_FILES, LineError, read_ndjson
from fsgs_kb.engine.fhir.refs import HISTORY, PATIENT_ID, patient_ref, without_version
from fsgs_kb.engine.fhir.setaside import quoted

BATCH = 500
NO_PATIENT_ID = "Patient has no id (a non-empty string): nothing can refer to it"
# A Patient of an export is named by its id alone (`Patient/<id>`, the key its resources are grouped
# by, and the fullUrl of the Bundle made for it), so the id must be a FHIR id: "../x" made the
# fullUrl Patient/../x, a 10 KB id or one holding a NUL was taken as the record id (refs.PATIENT_ID,
# as the CDS service reads context.patientId).
_PATIENT_REF = re.compile(rf"Patient/{PATIENT_ID.pattern}")
_SCHEMA = """
DROP TABLE IF EXISTS res; DROP TABLE IF EXISTS meds;
CREATE TABLE res (ref TEXT NOT NULL, rtype TEXT NOT NULL, body TEXT NOT NULL,
                  file TEXT NOT NULL, line INTEGER NOT NULL);
CREATE TABLE meds (key TEXT PRIMARY KEY, body TEXT NOT NULL);
"""


@dataclass(frozen=True)
class PatientGroup:
    """All resources of one patient as a collection Bundle, ready for bundle_to_record, where the
    Patient resource is in the export (file and line), and where each entry of the Bundle came from
    (`FILE:LINE`, or "" for a Medication looked up by reference)."""

    patient_ref: str
    bundle: dict[str, Any]
    file: str = ""
    line: int = 0
    entry_origins: tuple[str, ...] = ()


BulkItem = PatientGroup | LineError


def _patient_ref(resource: dict[str, Any]) -> str | None:
    """'Patient/<id>' for a Patient or for a resource whose subject/patient points at one, its id
    a FHIR id (PATIENT_ID)."""
    if resource["resourceType"] == "Patient":
        rid = resource.get("id")
        return f"Patient/{rid}" if isinstance(rid, str) and PATIENT_ID.fullmatch(rid) else None
    ref = reference(resource.get("subject")) or reference(resource.get("patient"))
    if ref is None or "Patient/" not in ref:
        return None
    ref = without_version(ref)  # Patient/1/_history/2 is Patient/1
    tail = ref[ref.rindex("Patient/") :]
    return tail if _PATIENT_REF.fullmatch(tail) else None


def _no_patient_ref(resource: dict[str, Any]) -> str:
    """Why a Patient cannot be grouped: it has no id, or one that is no FHIR id (said escaped and cut)."""
    rid = resource.get("id")
    if not isinstance(rid, str) or not rid:
        return NO_PATIENT_ID
    shown = json.dumps(quoted(rid), ensure_ascii=False)
    return f"Patient.id {shown} is not a FHIR id (1 to 64 letters, digits, '-', '.' or '_'): nothing can refer to it"


def _server(ref: str, servers: set[str | None]) -> None:
    """Note the base a patient reference is rooted at (None: relative)."""
    parsed = None if ref.startswith("Patient/") else patient_ref(ref)
    servers.add(parsed[0] if parsed else None)


def export_files(directory: Path) -> list[Path]:
    """The files a Bulk Data export directory is read from, in the order they are read: every
    EXPORT_FILES entry that is a file or a link to one (a directory so named is not a part). A
    batch run writes none of them, nor a new one (engine/batch/files.py, InputFiles)."""
    return sorted(p for p in directory.glob(EXPORT_FILES) if p.is_file())


def unreadable_export_files(directory: Path) -> list[KBError]:
    """The EXPORT_FILES entries that are neither a file nor a directory: a link to nothing (a file
    whose download failed), a FIFO, a socket. Each is data the export names and the run cannot
    read; they were skipped in silence, and their patients' resources with them."""
    problems = []
    for path in sorted(directory.glob(EXPORT_FILES)):
        if path.is_file() or path.is_dir():
            continue
        what = f"a link to {os.readlink(path)}, which cannot be read" if path.is_symlink() else "not a regular file"
        problems.append(
            KBError(
                "input.unreadable",
                f"{path.name} in this Bulk Data export is {what}",
                file=str(path),
                hint="every *.ndjson file of an export is read: download it again, or remove it",
            )
        )
    return problems


def _index(
    directory: Path, db: sqlite3.Connection, max_line_bytes: int, max_depth: int, servers: set[str | None]
) -> Iterator[LineError]:
    rows: list[tuple[str, str, str, str, int]] = []
    for path in export_files(directory):
        for number, item in read_ndjson(path, max_line_bytes, max_depth):
            if isinstance(item, LineError):
                yield item
                continue
            if item["resourceType"] == "Medication" and isinstance(item.get("id"), str):
                _index_medication(db, item)
                continue
            ref = _patient_ref(item)
            if ref is None:
                if item["resourceType"] == "Patient":  # not "no usable patient reference": it is the patient
                    yield LineError(path.name, number, _no_patient_ref(item))
                elif item["resourceType"] in CLINICAL:
                    yield LineError(path.name, number, f"{item['resourceType']} has no usable patient reference")
                continue
            if item["resourceType"] != "Patient" and len(servers) < 2:  # two kinds are enough to know
                _server(reference(item.get("subject")) or reference(item.get("patient")) or ref, servers)
            # a Patient is compared with its repeats in other files by content, not key order
            body = json.dumps(item, sort_keys=item["resourceType"] == "Patient")
            rows.append((ref, item["resourceType"], body, path.name, number))
            if len(rows) >= BATCH:
                db.executemany("INSERT INTO res VALUES (?, ?, ?, ?, ?)", rows)
                rows.clear()
    db.executemany("INSERT INTO res VALUES (?, ?, ?, ?, ?)", rows)
    db.execute("CREATE INDEX res_ref ON res (ref)")
    db.commit()


def _index_medication(db: sqlite3.Connection, item: dict[str, Any]) -> None:
    """Keep a Medication by `Medication/<id>`, and by `Medication/<id>/_history/<vid>` when it says
    its version (meta.versionId), so that an order naming that version finds that one."""
    key, body = f"Medication/{item['id']}", json.dumps(item)
    vid = item.get("meta", {}).get("versionId") if isinstance(item.get("meta"), dict) else None
    for k in [key] + ([f"{key}{HISTORY}{vid}"] if isinstance(vid, str) else []):
        db.execute("INSERT OR REPLACE INTO meds VALUES (?, ?)", (k, body))


def _medications(db: sqlite3.Connection, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Medications the orders and statements name, each once: for `Medication/x/_history/3`,
    that version when the export has it, else `Medication/x` (whose version read_bundle checks)."""
    refs = {k for k in (reference(r.get("medicationReference")) for r in resources) if k and not k.startswith("#")}
    out: dict[str, dict[str, Any]] = {}
    for ref in sorted(refs):
        for key in dict.fromkeys((ref, without_version(ref))):
            row = db.execute("SELECT body FROM meds WHERE key = ?", (key[key.rfind("Medication/") :],)).fetchone()
            if row:
                out.setdefault(row[0], json.loads(row[0]))
                break
    return list(out.values())


def _group(db: sqlite3.Connection, ref: str, server: str | None) -> BulkItem:
    rows = db.execute("SELECT rtype, body, file, line FROM res WHERE ref = ? ORDER BY rowid", (ref,)).fetchall()
    patients = {body for rtype, body, _, _ in rows if rtype == "Patient"}
    if len(patients) > 1:  # which one is the patient cannot be told: the result names both lines
        given = [(body, f, n) for t, body, f, n in rows if t == "Patient"]
        first_body, first_file, first_line = given[0]
        file, line = next((f, n) for body, f, n in given if body != first_body)
        return LineError(file, line, f"{ref} appears twice with different content (also at {first_file}:{first_line})")
    others = [(json.loads(body), f"{f}:{n}") for rtype, body, f, n in rows if rtype != "Patient"]
    resources = [res for res, _ in others]
    patient = json.loads(next(iter(patients)))
    medications = _medications(db, resources)
    entries = [patient] + resources + medications
    file, line = next((f, n) for t, _, f, n in rows if t == "Patient")
    origins = (f"{file}:{line}", *(where for _, where in others), *([""] * len(medications)))
    root = f"{server}/" if server else ""
    return PatientGroup(
        ref,
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": f"{root}{r['resourceType']}/{r.get('id', i)}", "resource": r} for i, r in enumerate(entries)
            ],
        },
        file,
        line,
        origins,
    )


def _orphans(db: sqlite3.Connection) -> Iterator[LineError]:
    query = (
        "SELECT rowid, ref, rtype, file, line FROM res r WHERE rowid > ? AND rtype != 'Patient' AND NOT EXISTS "
        "(SELECT 1 FROM res p WHERE p.ref = r.ref AND p.rtype = 'Patient') ORDER BY rowid LIMIT ?"
    )
    last = 0
    while rows := db.execute(query, (last, BATCH)).fetchall():
        for rowid, ref, rtype, file, line in rows:
            yield LineError(file, line, f"{rtype} refers to {ref}, which is not in the export")
            last = rowid


def group_bulk_export(
    directory: str | Path, db_path: str | Path, *, max_line_bytes: int = 4_000_000, max_depth: int = 64
) -> Iterator[BulkItem]:
    """Index a Bulk Data export directory into SQLite at db_path, then yield one PatientGroup per
    Patient (ordered by reference) and a LineError for every unusable line, in one stream."""
    db = sqlite3.connect(str(db_path))
    try:
        db.executescript(_SCHEMA)
        servers: set[str | None] = set()
        yield from _index(Path(directory), db, max_line_bytes, max_depth, servers)
        server = next(iter(servers)) if len(servers) == 1 else None
        last = ""
        while row := db.execute("SELECT MIN(ref) FROM res WHERE rtype = 'Patient' AND ref > ?", (last,)).fetchone():
            if row[0] is None:
                break
            last = row[0]
            yield _group(db, last, server)
        yield from _orphans(db)
    finally:
        db.close()
