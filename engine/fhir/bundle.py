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
from dataclasses import dataclass, field
from typing import Any

from fsgs_kb.engine.fhir.codes import Coding, as_dict, as_list, codings, reference, within_depth
from fsgs_kb.engine.fhir.dates import Moment
from fsgs_kb.engine.fhir.effective import effective_moment
from fsgs_kb.engine.fhir.errors import FhirInputError, pointer_join
from fsgs_kb.engine.fhir.refs import HISTORY, ThePatient, without_version
from fsgs_kb.engine.fhir.setaside import SetAside, entry_problem, label, quoted
from fsgs_kb.engine.fhir.verification import status_codes

BUNDLE_TYPES = ("collection", "searchset", "transaction")
CLINICAL = ("Observation", "Condition", "MedicationRequest", "MedicationStatement")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}\Z")


@dataclass
class PatientData:
    """The one Patient of a bundle, its clinical resources by type, and Medications by reference."""

    patient: dict[str, Any]
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    medications: dict[str, dict[str, Any]] = field(default_factory=dict)
    conflicted: set[tuple[str, str]] = field(default_factory=set)
    set_aside: list[SetAside] = field(default_factory=list)

    _entry: dict[int, int] = field(default_factory=dict, repr=False)  # id(resource) -> Bundle.entry index
    _aside: set[SetAside] = field(default_factory=set, repr=False)  # what set_aside holds, for O(1) repeats
    _codes: dict[int, list[Coding]] = field(default_factory=dict, repr=False)
    _when: dict[int, Moment | None] = field(default_factory=dict, repr=False)

    def of_type(self, rtype: str) -> list[dict[str, Any]]:
        return self.resources.get(rtype, [])

    def find(self, rtype: Any, rid: Any) -> dict[str, Any] | None:
        """The Patient, or the first kept resource of a type with an id (for what is said of it later)."""
        if rtype == "Patient":
            return self.patient
        return next((r for r in self.of_type(str(rtype)) if rid is not None and r.get("id") == rid), None)

    def place(self, resource: dict[str, Any], index: int) -> None:
        """Remember where a resource is in Bundle.entry, so that what is said of it can point there."""
        self._entry[id(resource)] = index

    def put_aside(self, resource: dict[str, Any], reason: str, why: str, field: str | None = None) -> None:
        """Record that a resource was not used, and why (once per resource, reason and field)."""
        rid = resource.get("id")
        item = SetAside(
            resource_type=resource.get("resourceType") if isinstance(resource.get("resourceType"), str) else None,
            id=rid if isinstance(rid, str) else None,
            reason=reason,
            message=f"{label(resource)}: {why}",
            entry=self._entry.get(id(resource)),
            field=field,
        )
        if item not in self._aside:  # a hostile Bundle of 200,000 entries must not cost their square
            self._aside.add(item)
            self.set_aside.append(item)

    def code_of(self, resource: dict[str, Any]) -> list[Coding]:
        """The codings of a resource's `code`, worked out once per bundle (every field asks)."""
        key = id(resource)  # resources live as long as this PatientData
        if key not in self._codes:
            self._codes[key] = codings(resource.get("code"))
        return self._codes[key]

    def when_of(self, resource: dict[str, Any]) -> Moment | None:
        """The effective instant and day of an Observation, worked out once per bundle."""
        key = id(resource)
        if key not in self._when:
            self._when[key] = effective_moment(resource)
        return self._when[key]


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


def read_bundle(bundle: Any, max_entries: int, max_depth: int) -> PatientData:
    """Check a Bundle and index what it says about its one Patient; raise FhirInputError when unusable.

    Resources nested deeper than max_depth are set aside unread (nesting bombs)."""
    entries, unread = _entries(bundle, max_entries)
    deep = {i for i, _, res in entries if not within_depth(res, max_depth)}
    patient, who = _the_patient([e for e in entries if e[0] not in deep])
    data = PatientData(patient, set_aside=unread)
    for i, full, res in entries:  # first, so that an order may name a Medication that comes after it
        if res["resourceType"] == "Medication" and i not in deep:
            _index_medication(data, res, full)
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
        if _unusable(data, res):
            continue
        _note_duplicate(data, seen, res)
        data.resources.setdefault(rtype, []).append(res)
    return data


def _index_medication(data: PatientData, res: dict[str, Any], full: str | None) -> None:
    """Index a Medication by `Medication/<id>` and its entry's fullUrl, and with its version
    (`meta.versionId`) by `…/_history/<vid>` too, so a version-specific reference finds it."""
    keys = ([f"Medication/{res['id']}"] if isinstance(res.get("id"), str) else []) + ([full] if full else [])
    vid = as_dict(res.get("meta")).get("versionId")
    for key in keys + ([f"{k}{HISTORY}{vid}" for k in keys] if isinstance(vid, str) else []):
        data.medications[key] = res


def _unusable(data: PatientData, res: dict[str, Any]) -> bool:
    """Set aside what FHIR says a reader must not use as data, and say so."""
    if res.get("modifierExtension"):
        # a modifier changes what the resource means: a reader that does not understand it must not use it
        data.put_aside(res, "modifier", "carries a modifierExtension this reader does not understand")
    elif res.get("doNotPerform") is True:
        data.put_aside(res, "do_not_perform", "an order not to perform (doNotPerform: true) is no treatment")
    elif res.get("status") == "entered-in-error" or "entered-in-error" in status_codes(res):
        data.put_aside(res, "entered_in_error", "entered-in-error: not part of the patient's record")
    elif (other := _medication(res, data))[2]:
        data.put_aside(res, other[1], other[2])
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


def _find(data: PatientData, ref: str) -> dict[str, Any] | None:
    return data.medications.get(ref) or next((m for k, m in data.medications.items() if k.endswith("/" + ref)), None)


def _medication(res: dict[str, Any], data: PatientData) -> tuple[dict[str, Any] | None, str, str]:
    """(the Medication a MedicationRequest/Statement points to, "", "") or (None, set-aside reason,
    why) when the drug cannot be told: both medication[x] given (FHIR R4 allows one), a reference
    naming no Medication sent (contained, in the Bundle: another server's), or one naming a version
    (`Medication/x/_history/2`) when the one sent says it is another (`meta.versionId` 3)."""
    ref = reference(res.get("medicationReference"))
    unknown = f"its medicationReference {quoted(ref)} names no Medication sent (contained or in the Bundle)"
    if "medicationCodeableConcept" in res and "medicationReference" in res:
        unknown = "gives both medicationCodeableConcept and medicationReference (FHIR R4: one medication[x])"
    elif ref is None:
        return None, "", ""
    elif ref.startswith("#"):
        for contained in as_list(res.get("contained")):
            c = as_dict(contained)
            if c.get("resourceType") == "Medication" and c.get("id") == ref[1:]:
                return c, "", ""
    elif (found := _find(data, ref)) is not None or (plain := without_version(ref)) == ref:
        if found is not None:
            return found, "", ""
    elif (found := _find(data, plain)) is not None:
        held = as_dict(as_dict(found).get("meta")).get("versionId")
        if held is None:  # a Medication that says no version: taken as the one named
            return found, "", ""
        wanted = quoted(ref.rpartition(HISTORY)[2])
        why = (
            f"its medicationReference {quoted(ref)} names version {wanted} of {label(found)}, but the one sent is "
            f"version {quoted(held)}: the drug and its strength are not read from another version"
        )
        return None, "medication_version_mismatch", why
    return None, "medication_not_identified", f"{unknown}: which drug it is cannot be told"


def resolve_medication(res: dict[str, Any], data: PatientData) -> dict[str, Any] | None:
    """The Medication a MedicationRequest/Statement points to: contained (#id) or in the bundle. A
    version-specific reference (`Medication/x/_history/3`) names the version of `Medication/x` sent
    when that says it is version 3 (`meta.versionId`) or says no version; one that says another
    version is not used (its order or statement is set aside: _unusable)."""
    return _medication(res, data)[0]
