"""Small builders for FHIR test resources, so each test shows only what it is about."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
FIELD = "urn:fsgs-kb:field"
VALUE = "urn:fsgs-kb:value"


def bundle(
    *resources: dict[str, Any], patient: dict[str, Any] | None = None, kind: str = "collection"
) -> dict[str, Any]:
    pat = patient or {"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-15"}
    entries = [{"fullUrl": "urn:uuid:p1", "resource": pat}] + [{"resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def qty(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def obs(
    rid: str,
    code: str,
    value: Any = None,
    when: str = "2024-05-30",
    status: str = "final",
    system: str = LOINC,
    subject: str = "Patient/p1",
    **extra: Any,
) -> dict[str, Any]:
    res = {
        "resourceType": "Observation",
        "id": rid,
        "status": status,
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": subject},
    }
    if when is not None:
        res["effectiveDateTime"] = when
    if isinstance(value, dict):
        res["valueQuantity"] = value
    res.update(extra)
    return res


def field_obs(rid: str, path: str, when: str = "2024-05-30", **value: Any) -> dict[str, Any]:
    return obs(rid, path, None, when, system=FIELD, **value)


def enum_value(code: str) -> dict[str, Any]:
    return {"valueCodeableConcept": {"coding": [{"system": VALUE, "code": code}]}}


def dosage(
    dose: float | None = None,
    unit: str = "mg",
    frequency: int | None = 1,
    period: float = 1,
    period_unit: str = "d",
    start: str | None = None,
    end: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    repeat: dict[str, Any] = {}
    if frequency is not None:
        repeat.update({"frequency": frequency, "period": period, "periodUnit": period_unit})
    if start or end:
        repeat["boundsPeriod"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    out: dict[str, Any] = {"timing": {"repeat": repeat}}
    if dose is not None:
        out["doseAndRate"] = [{"doseQuantity": qty(dose, unit)}]
    out.update(extra)
    return out


def med_request(
    rid: str,
    *dosages: dict[str, Any],
    code: str | None = "3008",
    status: str = "active",
    intent: str = "order",
    **extra: Any,
) -> dict[str, Any]:
    """A MedicationRequest of an RxNorm `code` (None: the drug is given in `extra`, e.g. a
    medicationReference)."""
    res: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": intent,
        "subject": {"reference": "Patient/p1"},
    }
    if code is not None:
        res["medicationCodeableConcept"] = {"coding": [{"system": RXNORM, "code": code}]}
    res["dosageInstruction"] = list(dosages)
    res.update(extra)
    return res


AS_OF = date(2024, 6, 1)
HERE = Path(__file__).resolve().parent


def project_file(relative: str) -> Path:
    """A file of the fsgs-kb checkout (the nearest ancestor that has it)."""
    for parent in HERE.parents:
        if (parent / relative).exists():
            return parent / relative
    raise FileNotFoundError(relative)


def cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`fsgs-kb ARGS` as a real subprocess of this interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def evaluate_bundle(directory: Path, doc: dict[str, Any], *options: object) -> dict[str, Any]:
    """The result of `fsgs-kb evaluate --input-format fhir OPTIONS` on `doc` written as a JSON file;
    fails on a non-zero exit or a traceback."""
    path = directory / "bundle.json"
    path.write_text(json.dumps(doc))
    proc = cli("evaluate", "--input-format", "fhir", *options, path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    return dict(json.loads(proc.stdout))
