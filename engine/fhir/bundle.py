"""Accept a Bundle as one patient's data: find the Patient, keep only resources about that patient.

A Bundle is only usable when it is unambiguously about one person: exactly one Patient, and each
clinical resource pointing at that Patient by reference (refs.py: the same id on another server is
somebody else). Anything else (a second patient, no subject, a subject that is somebody else) is
set aside with a warning rather than merged, because a value from the wrong patient is worse than a
missing one. Two different resources sharing one
type and id are both kept but marked as conflicting, so that a value resting on either is
reported as ambiguous instead of being picked by accident of order.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fsgs_kb.engine.fhir.codes import as_dict, reference, within_depth
from fsgs_kb.engine.fhir.errors import FhirInputError, pointer_join
from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.fhir.medication import index_medication, medication_problem
from fsgs_kb.engine.fhir.patientdata import PatientData
from fsgs_kb.engine.fhir.refs import ThePatient
from fsgs_kb.engine.fhir.setaside import SetAside, entry_problem, json_value, quoted
from fsgs_kb.engine.fhir.verification import status_codes

BUNDLE_TYPES = ("collection", "searchset", "transaction")
CLINICAL = ("Observation", "Condition", "MedicationRequest", "MedicationStatement")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}\Z")


def _entries(bundle: Any, max_entries: int) -> tuple[list[tuple[int, str | None, dict[str, Any]]], list[SetAside]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirInputError("not a FHIR Bundle (resourceType must be 'Bundle')", "/resourceType")
    if bundle.get("type") not in BUNDLE_TYPES:
        raise FhirInputError(
            f"Bundle.type must be one of {', '.join(BUNDLE_TYPES)}; got {bundle.get('type')!r}", "/type"
        )
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise FhirInputError("Bundle.entry must be a list", "/entry")
    if len(entries) > max_entries:
        raise FhirInputError(f"Bundle has {len(entries)} entries; the limit is {max_entries}", "/entry")
    out, unread = [], []
    for i, entry in enumerate(entries):
        full = as_dict(entry).get("fullUrl")
        if (why := entry_problem(entry)) is None:
            out.append((i, full if isinstance(full, str) else None, entry["resource"]))
        else:  # named, never skipped in silence
            unread.append(
                SetAside(
                    resource_type=None, id=None, reason="not_a_resource", message=f"Bundle.entry[{i}]: {why}", entry=i
                )
            )
    return out, unread


def _the_patient(entries: list[tuple[int, str | None, dict[str, Any]]]) -> tuple[dict[str, Any], ThePatient]:
    patients: dict[str, tuple[int, str | None, dict[str, Any]]] = {}
    for i, full, res in entries:
        if res["resourceType"] != "Patient":
            continue
        rid = res.get("id")
        key = rid if isinstance(rid, str) else f"#entry{i}"
        if key in patients and patients[key][2] != res:
            raise FhirInputError(f"two different Patient resources share id {key!r}", pointer_join("/entry", i))
        patients.setdefault(key, (i, full, res))
    if len(patients) != 1:
        raise FhirInputError(f"a Bundle must hold exactly one Patient; found {len(patients)}", "/entry")
    _, full, patient = next(iter(patients.values()))
    pid = patient.get("id")
    who = ThePatient(full, pid if isinstance(pid, str) and _FHIR_ID.match(pid) else None)
    if who.full_url is None and who.pid is None:
        raise FhirInputError("the Patient has neither a valid id nor a fullUrl, so nothing can refer to it", "/entry")
    return patient, who


def read_bundle(bundle: Any, fmap: FhirMap) -> PatientData:
    """Check a Bundle and index what it says about its one Patient; raise FhirInputError when unusable.

    The map gives the limits (resources nested deeper than its max_json_depth are set aside unread:
    nesting bombs) and the drugs it tells apart (an order naming two of them is set aside)."""
    limits = fmap.settings["limits"]
    max_depth = limits["max_json_depth"]
    entries, unread = _entries(bundle, limits["max_bundle_entries"])
    deep = {i for i, _, res in entries if not within_depth(res, max_depth)}
    patient, who = _the_patient([e for e in entries if e[0] not in deep])
    data = PatientData(patient, set_aside=unread, patient_url=who.full_url)
    for i, full, res in entries:  # first, so that an order may name a Medication that comes after it
        if res["resourceType"] == "Medication" and i not in deep:
            index_medication(data, res, full)
    seen: dict[tuple[str, str], str] = {}
    for i, full, res in entries:
        data.place(res, i)
        if i in deep:
            data.put_aside(res, "too_deep", f"nested deeper than {max_depth} levels; not read")
            continue
        rtype = res["resourceType"]
        if rtype not in CLINICAL:
            continue
        why_not = who.why_not(reference(res.get("subject")) or reference(res.get("patient")), full)
        if why_not is not None:
            data.put_aside(res, "not_this_patient", why_not)
            continue
        why_not = _focus_problem(res, who, full)
        if why_not is not None:
            data.put_aside(res, "focus_not_the_patient", why_not)
            continue
        if _unusable(data, res, fmap):
            continue
        _note_duplicate(data, seen, res)
        data.resources.setdefault(rtype, []).append(res)
    return data


def _focus_problem(res: dict[str, Any], who: ThePatient, full: str | None) -> str | None:
    """Why an Observation is not about its subject itself, in words: its `focus` (FHIR R4: "what
    the observation is about, when it is not about the subject of record", such as a fetus, a
    donor or a device) names something other than the Patient. None when it has no focus, or
    when each focus is the Patient."""
    focus = res.get("focus") if res["resourceType"] == "Observation" else None
    for item in focus if isinstance(focus, list) else [] if focus is None else [focus]:
        ref = reference(item)
        if ref is None or who.why_not(ref, full) is not None:
            said = quoted(ref) if ref is not None else json_value(item)
            return (
                f"its focus {said} says it is about that, not about the patient itself "
                "(Observation.focus: a fetus's, a donor's, a device's result): not the patient's value"
            )
    return None


def _unusable(data: PatientData, res: dict[str, Any], fmap: FhirMap) -> bool:
    """Set aside what FHIR says a reader must not use as data, and an order or statement whose drug
    cannot be told (two medication[x], codes naming two drugs of the map), and say so. Another
    choice element given twice is found where the resource would be read (pick.py, courses.py,
    sources.py), so that what it could change is left empty rather than read from another one."""
    if res.get("modifierExtension"):
        # a modifier changes what the resource means: a reader that does not understand it must not use it
        data.put_aside(res, "modifier", "carries a modifierExtension this reader does not understand")
    elif res.get("doNotPerform") is True:
        data.put_aside(res, "do_not_perform", "an order not to perform (doNotPerform: true) is no treatment")
    elif res.get("status") == "entered-in-error" or "entered-in-error" in status_codes(res):
        data.put_aside(res, "entered_in_error", "entered-in-error: not part of the patient's record")
    elif (problem := medication_problem(res, data, fmap)) is not None:
        data.put_aside(res, *problem)
    else:
        return False
    return True


def _note_duplicate(data: PatientData, seen: dict[tuple[str, str], str], res: dict[str, Any]) -> None:
    rid = res.get("id")
    if not isinstance(rid, str):
        return
    key = (res["resourceType"], rid)
    text = json.dumps(res, sort_keys=True)
    if key in seen and seen[key] != text:
        data.conflicted.add(key)
        why = "appears twice with different content; values resting on it are ambiguous"
        data.put_aside(res, "duplicate_conflict", why)
    seen.setdefault(key, text)
