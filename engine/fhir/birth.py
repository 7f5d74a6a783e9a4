"""Age on the evaluation date, from the Patient's birthDate.

A partial birthDate (a year, or a year and month) gives an age only when every day it may denote
gives the same one; one that straddles the evaluation date is ambiguous. A birthDate that cannot be
read (2023-02-30, fullwidth digits, a number) or one wholly after the evaluation date (no age on
that date: not "ambiguous") leaves the age empty and sets the Patient aside for the field, saying
why, rather than pass in silence."""

from __future__ import annotations

from datetime import date

from fsgs_kb.engine.fhir.dates import age_on, date_interval
from fsgs_kb.engine.fhir.effective import unreadable_date
from fsgs_kb.engine.fhir.outcome import Found, Missing, Outcome, provenance
from fsgs_kb.engine.fhir.patientdata import PatientData
from fsgs_kb.engine.fhir.setaside import quoted


def age_from_birth_date(data: PatientData, as_of: date, decimals: int, field: str) -> Outcome:
    """The age (truncated to `decimals`) on `as_of`, or why there is none; for the field `field`."""
    text = data.patient.get("birthDate")
    if text is None:
        return Missing("no_resource")
    why = unreadable_date("birthDate", text)
    span = None if why else date_interval(text)
    if span is None:
        data.put_aside(data.patient, "date_not_readable", f"{why}: the age cannot be told", field)
        return Missing("date_not_readable")
    oldest, youngest = (age_on(d, as_of, decimals) for d in span)
    if oldest is None:  # every day it may denote is after the evaluation date
        why = f'birthDate "{quoted(text)}" is after the evaluation date {as_of}: there is no age on that date'
        data.put_aside(data.patient, "out_of_range", why, field)
        return Missing("out_of_range")
    if youngest is None or oldest != youngest:
        return Missing("ambiguous")
    return Found(oldest, {**provenance(data.patient, None, text), "code": "Patient.birthDate"})
