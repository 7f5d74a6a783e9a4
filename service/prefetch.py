"""Prefetch: what the service asks the EHR for, and how the EHR's answers become one Bundle.

The templates are derived, not written: from the patient fields the knowledge base's rules read
(and the derived values they rest on), through the FHIR map, to the codes that feed them. So a
rule that stops reading a field stops fetching it. Observations and Conditions are asked for one
query per code, newest first (`_sort=-date` for Observations; Conditions and medications sort on
their own date parameter, `recorded-date`, `authoredon` and `effective`, since FHIR R4 gives
them no `date`). Orders and statements of one drug are one query each, its codes joined with a
comma (FHIR's OR), instead of one query per RxNorm product code.

FHIR R4's `code` parameter of MedicationRequest and MedicationStatement is
`medication as CodeableConcept`: an order or statement that names its drug by a
medicationReference (the way many EHRs write every order) is never found by it. So each drug also
has a `<type>-<drug>-by-medication` key that finds those through their Medication's code (the
chained `medication.code`) and brings the Medications with them (`_include=<type>:medication`),
without which the reader cannot tell which drug they are. Chaining and `_include` are beyond the
subset CDS Hooks 2.0 recommends for prefetch templates, so an EHR may not run them: these keys are
`optional`, and leaving them out never makes a call 412 (it is said in the call's row and on the
card asking for what they would feed).

The answers: a key may be absent or hold an OperationOutcome (the EHR could not run the query:
both count as absent), null (no data), a Bundle or a single resource. The service queries the FHIR
server for nothing a template asks (service/fhirfetch.py reads only a Medication an order names
that the request did not include). As the command-line FHIR reader does (engine/fhir/bundle.py), a Bundle
entry that holds no resource is set aside by name (`not_a_resource`), and the Patient is one: two
different Patients sharing an id, or a Patient other than context.patientId under any key, make
the request unusable (400), never a silent pick of one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fsgs_kb.engine.fhir import FhirMap
from fsgs_kb.engine.fhir.bundle import CLINICAL
from fsgs_kb.engine.fhir.errors import pointer_join
from fsgs_kb.engine.fhir.refs import server_of
from fsgs_kb.engine.fhir.setaside import entry_problem

PATIENT_KEY = "patient"
PATIENT = "{{context.patientId}}"
SORT = {
    "Observation": "-date",
    "Condition": "-recorded-date",
    "MedicationRequest": "-authoredon",
    "MedicationStatement": "-effective",
}
SHORT_SYSTEMS = {
    "http://loinc.org": "loinc",
    "http://snomed.info/sct": "sct",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "rxnorm",
}


class RequestProblem(Exception):
    """A request the service cannot use: HTTP status and a message for the OperationOutcome."""

    def __init__(self, status: int, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass
class PrefetchKey:
    key: str
    query: str
    fields: list[str] = field(default_factory=list)
    optional: bool = False  # beyond CDS Hooks 2.0's recommended subset: not sent is not a 412


def _slug(system: str, code: str) -> str:
    short = SHORT_SYSTEMS.get(system) or re.sub(r"[^A-Za-z0-9]+", "-", system.split("//")[-1]).strip("-")
    return f"{short}-{code}"


def _query(rtype: str, codes: list[tuple[str, str]]) -> str:
    joined = ",".join(f"{system}|{code}" for system, code in codes)
    return f"{rtype}?patient={PATIENT}&code={joined}&_sort={SORT[rtype]}"


def _by_medication_query(rtype: str, codes: list[tuple[str, str]]) -> str:
    """The orders or statements that name one of `codes` through their Medication (a
    medicationReference), with those Medications (`_include`)."""
    joined = ",".join(f"{system}|{code}" for system, code in codes)
    return f"{rtype}?patient={PATIENT}&medication.code={joined}&_include={rtype}:medication&_sort={SORT[rtype]}"


def read_map_fields(fmap: FhirMap, read_paths: list[str]) -> list[str]:
    """The map's fields that feed the record paths the knowledge base reads."""
    return [m for m in fmap.fields if any(p == m or p.startswith(m + ".") for p in read_paths)]


class Templates:
    """The prefetch templates of the hook services, and which map fields each key feeds."""

    def __init__(self, fmap: FhirMap, read_paths: list[str]) -> None:
        self.fmap = fmap
        self.keys: dict[str, PrefetchKey] = {PATIENT_KEY: PrefetchKey(PATIENT_KEY, f"Patient/{PATIENT}", ["id"])}
        for path in read_map_fields(fmap, read_paths):
            for src in fmap.fields[path]["sources"]:
                self._source(path, src)

    def _add(self, key: str, query: str, path: str, optional: bool = False) -> None:
        entry = self.keys.setdefault(key, PrefetchKey(key, query, optional=optional))
        if path not in entry.fields:
            entry.fields.append(path)

    def _codes(self, code_set: str) -> list[tuple[str, str]]:
        usable = self.fmap.code_sets[code_set]
        return [
            (c["system"], c["code"])
            for c in self.fmap.data["code_sets"][code_set]["codes"]
            if (c["system"], c["code"]) in usable
        ]

    def _source(self, path: str, src: dict[str, Any]) -> None:
        kind = src["kind"]
        if kind == "birthdate":
            self._add(PATIENT_KEY, f"Patient/{PATIENT}", path)
        elif kind in ("observation", "observation_before_course"):
            for match in src["match"]:
                for coding in self._codes(match["code_set"]):
                    self._add("obs-" + _slug(*coding), _query("Observation", [coding]), path)
            if kind == "observation_before_course":
                self._drug(path, src["drug"])
        elif kind == "field_observation":
            coding = (self.fmap.settings["local_systems"]["field"], path)
            self._add("field-" + path, _query("Observation", [coding]), path)
        elif kind == "condition":
            for rule in src["values"]:
                for coding in self._codes(rule["code_set"]):
                    self._add("condition-" + _slug(*coding), _query("Condition", [coding]), path)
        elif kind == "medication":
            self._drug(path, src["drug"])
        elif kind == "medication_list":
            for drug in src["drugs"].values():
                self._drug(path, drug)

    def _drug(self, path: str, drug: str) -> None:
        spec = self.fmap.medications[drug]
        codes = [c for name in spec["include"] for c in self._codes(name)]
        if not codes:
            return
        for rtype in spec["resources"]:
            self._add(f"{rtype.lower()}-{drug}", _query(rtype, codes), path)
            self._add(f"{rtype.lower()}-{drug}-by-medication", _by_medication_query(rtype, codes), path, optional=True)

    def prefetch(self) -> dict[str, str]:
        """The discovery document's prefetch object."""
        return {k.key: k.query for k in self.keys.values()}

    def required(self, keys: list[str]) -> list[str]:
        """Those of `keys` an EHR must send (or give FHIR access) for a call to be answered."""
        return [k for k in keys if k not in self.keys or not self.keys[k].optional]

    def keys_of_field(self, path: str) -> list[str]:
        return [k.key for k in self.keys.values() if path in k.fields]


@dataclass
class Collected:
    """The resources a request's prefetch brought, the keys that brought nothing usable, and where
    each resource is in the request (a JSON pointer, by resource type and id)."""

    entries: list[dict[str, Any]]
    absent: list[str]
    empty: list[str]
    origins: dict[tuple[str, str], str] = field(default_factory=dict)
    received: int = 0  # resources the prefetch held, the Patient included: 0 is a call with no patient data
    unread: list[dict[str, Any]] = field(default_factory=list)  # set-aside entries holding no resource, located
    clinical: list[str] = field(default_factory=list)  # where each clinical resource read is (Observation…)


def origin_key(res: dict[str, Any]) -> tuple[str, str] | None:
    """(resourceType, id) of a resource, by which the request's resources are located; None without an id."""
    rtype, rid = res.get("resourceType"), res.get("id")
    return (rtype, rid) if isinstance(rtype, str) and isinstance(rid, str) else None


def _is_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def _resources(key: str, value: Any, unread: list[dict[str, Any]]) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(where in the request, fullUrl, resource) of each resource a prefetch key holds; an entry
    that holds none is added to `unread`, named and located (the command-line reader's
    `not_a_resource`), never dropped in silence."""
    where = pointer_join("/prefetch", key)
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise RequestProblem(400, f"prefetch {key!r} is neither a FHIR resource, a Bundle nor null")
    if value["resourceType"] != "Bundle":
        return [(where, None, value)]
    entries = value.get("entry", [])
    if not isinstance(entries, list):
        raise RequestProblem(400, f"prefetch {key!r}: Bundle.entry is not a list")
    out = []
    for i, entry in enumerate(entries):
        at = pointer_join(where, "entry", i)
        if (why := entry_problem(entry)) is not None:
            said = f"Bundle.entry[{i}]: {why}"
            unread.append({"resourceType": None, "id": None, "reason": "not_a_resource", "message": said, "origin": at})
            continue
        res, full = entry["resource"], entry.get("fullUrl")
        if not _is_outcome(res):  # a searchset's own OperationOutcome (search.mode outcome) is no data
            out.append((at, full if isinstance(full, str) else None, res))
    return out


def _the_patient(patients: list[tuple[str, dict[str, Any]]], patient_id: str) -> tuple[str, dict[str, Any]] | None:
    """The one Patient the prefetch holds, under whichever key (where, resource); None without one.
    Refused (400), as the command-line reader refuses such a Bundle: a Patient that is not
    context.patientId, and two different Patients sharing its id (which one is meant cannot be told)."""
    for where, res in patients:
        if res.get("id") != patient_id:
            raise RequestProblem(400, f"the prefetched Patient at {where} is not context.patientId")
    for where, res in patients[1:]:
        if res != patients[0][1]:
            raise RequestProblem(
                400,
                f"two different Patient resources share id context.patientId: {patients[0][0]} and {where}",
            )
    return patients[0] if patients else None


def about_someone_else(got: Collected, set_aside: list[dict[str, Any]]) -> str | None:
    """Why the prefetch is another patient's data, or None: every clinical resource it held was set
    aside as not this patient's (each refers to another patient, or to none). Answering such a call
    with cards, or with none, would read as "nothing to say about this patient" while nothing of
    this patient's was sent, so it is refused (400), as a Patient that is not context.patientId is."""
    others = {a.get("origin") for a in set_aside if a.get("reason") == "not_this_patient"}
    if not got.clinical or not all(where in others for where in got.clinical):
        return None
    count = len(got.clinical)
    return (
        f"none of the {count} prefetched clinical resource{'s' if count != 1 else ''} is about context.patientId "
        f"(each refers to another patient or to none; first at {got.clinical[0]}): the prefetch was not made "
        "for this patient"
    )


def collect(prefetch: Any, keys: list[str], patient_id: str, fhir_server: Any = None) -> Collected:
    """One entry list from the prefetch: the patient first, each resource once. The patient's entry
    is given the fullUrl `{fhirServer}/Patient/{id}` when the request names its FHIR server, so that
    a prefetched resource about that server's patient by absolute URL is read as this patient's and
    one about another server's patient is not (engine/fhir/refs.py)."""
    if prefetch is not None and not isinstance(prefetch, dict):
        raise RequestProblem(400, "prefetch must be an object")
    given = prefetch or {}
    absent, empty = [], []
    received = 0
    patients: list[tuple[str, dict[str, Any]]] = []
    unread: list[dict[str, Any]] = []
    clinical: list[str] = []
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    origins: dict[tuple[str, str], str] = {}
    entries: list[dict[str, Any]] = []
    for key in keys:
        value = given.get(key, ...)
        if value is ... or _is_outcome(value):
            absent.append(key)
            continue
        if value is None:
            empty.append(key)
            continue
        for where, full, res in _resources(key, value, unread):
            received += 1
            located = origin_key(res)
            if res["resourceType"] == "Patient":
                patients.append((where, res))
                continue
            ident = (res["resourceType"], str(res.get("id")))
            if res.get("id") is not None and seen.get(ident) == res:
                continue  # the same resource answered two queries
            seen.setdefault(ident, res)
            if located:
                origins.setdefault(located, where)
            if res["resourceType"] in CLINICAL:
                clinical.append(where)
            entries.append({"fullUrl": full, "resource": res} if full else {"resource": res})
    found = _the_patient(patients, patient_id)
    patient = found[1] if found else {"resourceType": "Patient", "id": patient_id}
    if found and (located := origin_key(found[1])):
        origins[located] = found[0]
    full = f"{fhir_server.rstrip('/')}/Patient/{patient_id}" if isinstance(fhir_server, str) else None
    first = {"fullUrl": full, "resource": patient} if full and server_of(full) else {"resource": patient}
    return Collected([first, *entries], absent, empty, origins, received, unread, clinical)


def bundle_of(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}
