"""Which drug an order or statement is: the Medication it names, and the drugs of the map its
codes name.

An order names its drug by a medicationCodeableConcept or by a medicationReference to a Medication
(contained, or in the Bundle; a version-specific reference names that version). When that cannot
be told, the order is not read as any drug: it gives both medication[x] (choices.py), its reference
names no Medication sent or another version of the one sent, or none at all (a Reference with only
a display or an identifier, which an order was before taken for "no drug" and passed over), its
Medication gives one choice element in two types, or its codes name two drugs the map tells apart
(cyclosporine and tacrolimus: reading it as both would count one order as a cyclosporine course
and a current tacrolimus order).
"""

from __future__ import annotations

from typing import Any

from fsgs_kb.engine.fhir.codes import as_dict, as_list, first_match, reference
from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.fhir.patientdata import PatientData
from fsgs_kb.engine.fhir.refs import HISTORY, without_version
from fsgs_kb.engine.fhir.setaside import label, quoted

NOT_TOLD = "which drug it is cannot be told"


def medication_problem(res: dict[str, Any], data: PatientData, fmap: FhirMap) -> tuple[str, str] | None:
    """(set-aside reason, why) when which drug an order or statement is cannot be told; else None."""
    if res["resourceType"] not in ("MedicationRequest", "MedicationStatement"):
        return None
    twice = data.choice_of(res)
    if twice is not None and twice[0] == "medication":
        return "medication_not_identified", f"{twice[1]}: {NOT_TOLD}"
    _, reason, why = _medication(res, data)
    if why:
        return reason, why
    drugs = _two_drugs(res, data, fmap)
    return None if drugs is None else ("medication_not_identified", drugs)


def index_medication(data: PatientData, res: dict[str, Any], full: str | None) -> None:
    """Index a Medication by `Medication/<id>` and its entry's fullUrl, and with its version
    (`meta.versionId`) by `…/_history/<vid>` too, so a version-specific reference finds it."""
    keys = ([f"Medication/{res['id']}"] if isinstance(res.get("id"), str) else []) + ([full] if full else [])
    vid = as_dict(res.get("meta")).get("versionId")
    for key in keys + ([f"{k}{HISTORY}{vid}" for k in keys] if isinstance(vid, str) else []):
        data.medications[key] = res


def medication_concepts(res: dict[str, Any], data: PatientData) -> list[Any]:
    """The concepts that say which drug an order or statement is: its medicationCodeableConcept,
    and its Medication's code and ingredients."""
    med = resolve_medication(res, data)
    out = [res.get("medicationCodeableConcept")]
    if med:
        out.append(med.get("code"))
        out += [as_dict(i).get("itemCodeableConcept") for i in as_list(med.get("ingredient"))]
    return out


def _two_drugs(res: dict[str, Any], data: PatientData, fmap: FhirMap) -> str | None:
    """Why an order or statement whose codes name two or more drugs of the map (cyclosporine and
    tacrolimus) cannot be read as either, in words; None when they name one drug at most."""
    concepts = medication_concepts(res, data)
    named = [
        (drug, found)
        for drug, codes in fmap.drug_codes.items()
        if (found := next((m for m in (first_match(c, codes) for c in concepts) if m), None)) is not None
    ]
    if len(named) < 2:
        return None
    said = ", ".join(f"{drug} ({quoted(system)}|{quoted(code)})" for drug, (system, code) in named)
    return f"its codes name {len(named)} drugs the map tells apart, {said}: {NOT_TOLD}"


def _find(data: PatientData, ref: str) -> dict[str, Any] | None:
    return data.medications.get(ref) or next((m for k, m in data.medications.items() if k.endswith("/" + ref)), None)


def _medication(res: dict[str, Any], data: PatientData) -> tuple[dict[str, Any] | None, str, str]:
    """(the Medication a MedicationRequest/Statement points to, "", "") or (None, set-aside reason,
    why) when the drug cannot be told: a reference naming no Medication sent (contained, in the
    Bundle: another server's), one naming a version (`Medication/x/_history/2`) when the one sent
    says it is another (`meta.versionId` 3), or a Medication that gives two types of one choice
    element (an ingredient's itemCodeableConcept and itemReference). Both medication[x] given is
    found before (medication_problem)."""
    found, reason, why = _referenced(res, data)
    if found is not None and (twice := data.choice_of(found)) is not None:
        return (
            None,
            "medication_not_identified",
            f"its Medication {label(found)}: {twice[1]}: {NOT_TOLD}",
        )
    return found, reason, why


def _referenced(res: dict[str, Any], data: PatientData) -> tuple[dict[str, Any] | None, str, str]:
    """_medication without the check of the Medication's own choice elements."""
    ref = reference(res.get("medicationReference"))
    unknown = f"its medicationReference {quoted(ref)} names no Medication sent (contained or in the Bundle)"
    if ref is None and res.get("medicationReference") is not None:  # a display or an identifier only
        why = f"its medicationReference names no Medication by reference (a display or identifier only): {NOT_TOLD}"
        return None, "medication_not_identified", why
    if ref is None:
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
    return None, "medication_not_identified", f"{unknown}: {NOT_TOLD}"


def resolve_medication(res: dict[str, Any], data: PatientData) -> dict[str, Any] | None:
    """The Medication a MedicationRequest/Statement points to: contained (#id) or in the bundle. A
    version-specific reference (`Medication/x/_history/3`) names the version of `Medication/x` sent
    when that says it is version 3 (`meta.versionId`) or says no version; one that says another
    version is not used (its order or statement is set aside: medication_problem)."""
    return _medication(res, data)[0]
