"""Medication orders and statements of one drug, joined into courses.

Whether an order has started, or still runs, on the evaluation date is decided by calendar day as
its dates are written (dates.py); how long a course has run is measured between instants.

The knowledge base asks whether cyclosporine is current, for how many months the current (or last)
continuous course has run, what the daily dose is, and when the course started (for the baseline
creatinine). Each order or statement gives a period; periods separated by at most the map's
`course_max_gap_days` [LOCAL] are one course. An open period of an active order runs to the
evaluation date; a completed or stopped one without an end date leaves the course length unknown,
which is reported rather than assumed. No order at all never means "never treated".

Only orders and statements whose status the map reads count (shipped: active, on-hold, completed,
stopped; not a MedicationRequest's draft, cancelled or unknown, nor a MedicationStatement's
intended, not-taken or unknown, FHIR R4's other status codes), and only orders whose intent is an
order (not a proposal, plan or option). One of them that would otherwise have counted is passed
over with why (scan), so that it is set aside rather than skipped in silence; so is one with a date
its period is read from that cannot be read (2023-02-30, 2023-13-01: `date_not_readable`; it may be
current and part of the latest course, so the reader leaves what it could change empty); and so
is one that gives a choice element in two types (a doseQuantity and a doseRange, a boundsPeriod and
a boundsDuration: `choice_conflict`, choices.py), which says two things, its fields left empty the
same way; entered-in-error ones are set aside before, as every resource is (bundle.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from fsgs_kb.engine.fhir.codes import Coding, as_dict, as_list, codings, first_match, texts
from fsgs_kb.engine.fhir.dates import Moment, day_start, moment
from fsgs_kb.engine.fhir.effective import ends_before, reversed_period, unreadable_date
from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.fhir.medication import medication_concepts, resolve_medication
from fsgs_kb.engine.fhir.patientdata import PatientData
from fsgs_kb.engine.fhir.setaside import TWO_THINGS, quoted, status_not_read

OPEN = datetime.max.replace(tzinfo=day_start(date(2000, 1, 1)).tzinfo)  # an ongoing period's end
KIND = {"MedicationRequest": "order", "MedicationStatement": "statement"}
PassedOver = tuple[dict[str, Any], str, str]  # a resource that would have been an entry but for it: reason, why


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One order or statement of the drug: its period (end OPEN if ongoing, None if unknown), the
    calendar day its end is written in (to tell whether it still runs on the evaluation date), and
    its start as written (to show it)."""

    resource: dict[str, Any]
    coding: Coding
    start: datetime | None
    end: datetime | None
    dosages: list[Any]
    end_day: date | None = None
    start_text: str | None = None


@dataclass
class Courses:
    """The drug's entries on the evaluation date, split into current ones and the latest course."""

    entries: list[Entry]
    current: list[Entry] = field(default_factory=list)
    latest: list[Entry] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None
    ambiguous: bool = False
    passed_over: list[PassedOver] = field(default_factory=list)  # set by scan's caller


def _excluded(res: dict[str, Any], data: PatientData, spec: dict[str, Any], fmap: FhirMap, dosages: list[Any]) -> bool:
    concepts = medication_concepts(res, data)
    med = resolve_medication(res, data) or {}
    routes = [as_dict(d).get("route") for d in dosages]
    bad_codes = frozenset().union(*(fmap.code_sets[s] for s in spec.get("exclude", [])))
    bad_routes = frozenset().union(*(fmap.code_sets[s] for s in spec.get("exclude_routes", [])))
    if any(first_match(c, bad_codes) for c in concepts) or any(first_match(r, bad_routes) for r in routes):
        return True
    words = [w.lower() for w in spec.get("exclude_text", [])]
    text = " ".join(t for c in concepts + routes + [med.get("form")] for t in texts(c)).lower()
    return any(w in text for w in words)


def _period(res: dict[str, Any], dosages: list[Any]) -> tuple[Moment | None, Moment | None]:
    if res["resourceType"] == "MedicationStatement":
        period = as_dict(res.get("effectivePeriod"))
        start = moment(period.get("start")) or moment(res.get("effectiveDateTime"))
        return start, moment(period.get("end"))
    repeats = [as_dict(as_dict(as_dict(d).get("timing")).get("repeat")) for d in dosages]
    bounds = [as_dict(r.get("boundsPeriod")) for r in repeats if isinstance(r.get("boundsPeriod"), dict)]
    validity = as_dict(as_dict(res.get("dispenseRequest")).get("validityPeriod"))
    starts = [s for s in (moment(b.get("start")) for b in bounds) if s]
    ends = [e for e in (moment(b.get("end")) for b in bounds) if e]
    start = min(starts) if starts else moment(validity.get("start")) or moment(res.get("authoredOn"))
    return start, max(ends) if ends else moment(validity.get("end"))


def period_problem(res: dict[str, Any]) -> str | None:
    """Why the dates an order's or statement's period is read from (_period: each boundsPeriod's
    start and end, else the validityPeriod's, else authoredOn; a statement's effectivePeriod or
    effectiveDateTime) cannot be read, or why the period they give ends before it starts, in words;
    None when each one read is a date (or absent) and the period runs forward.
    Such an order is set aside (`date_not_readable`): skipping the unreadable date would make it
    current with no known start, or start it on a fallback date it does not give."""
    if res["resourceType"] == "MedicationStatement":
        period = as_dict(res.get("effectivePeriod"))
        named = [(f"effectivePeriod.{k}", period[k]) for k in ("start", "end") if k in period]
        named += [("effectiveDateTime", res["effectiveDateTime"])] if "effectiveDateTime" in res else []
        periods = [("effectivePeriod", period)]
    else:
        named, periods = [], []
        for i, dosage in enumerate(as_list(res.get("dosageInstruction"))):
            bounds = as_dict(as_dict(as_dict(dosage).get("timing")).get("repeat")).get("boundsPeriod")
            where = f"dosageInstruction[{i}].timing.repeat.boundsPeriod"
            named += [(f"{where}.{k}", bounds[k]) for k in ("start", "end") if isinstance(bounds, dict) and k in bounds]
            periods += [(where, bounds)] if isinstance(bounds, dict) else []
        validity = as_dict(as_dict(res.get("dispenseRequest")).get("validityPeriod"))
        for k in ("start", "end"):  # read when no boundsPeriod gives that end of the period
            if k in validity and not any(n.endswith(f"boundsPeriod.{k}") for n, _ in named):
                named.append((f"dispenseRequest.validityPeriod.{k}", validity[k]))
        read = any(n.startswith("dispense") for n, _ in named)
        periods += [("dispenseRequest.validityPeriod", validity)] if read else []
        if "authoredOn" in res and not any(n.endswith("start") for n, _ in named):
            named.append(("authoredOn", res["authoredOn"]))
    why = next((w for w in (unreadable_date(n, v) for n, v in named) if w), None) or _reversed(res, periods)
    return None if why is None else f"{why}: when the {KIND[res['resourceType']]} runs cannot be told"


def _reversed(res: dict[str, Any], periods: list[tuple[str, dict[str, Any]]]) -> str | None:
    """Why the period read ends before it starts: a Period it is read from does (FHIR R4 invariant
    per-1), or its start and end read from different elements do (authoredOn after a boundsPeriod's
    end); None when it does not. A negative course length is never read as 0 months."""
    why = next((w for w in (reversed_period(n, p) for n, p in periods) if w), None)
    start, end = _period(res, as_list(res.get("dosageInstruction")))
    if why or start is None or end is None or not ends_before(start, end):
        return why
    return f'the period read ends ("{quoted(end.text)}") before it starts ("{quoted(start.text)}")'


def status_problem(res: dict[str, Any], statuses: list[str]) -> str | None:
    """Why an order's or statement's status keeps it out of the courses (None when the map reads
    the status), in words."""
    return status_not_read(res, statuses, KIND[res["resourceType"]])


def intent_problem(res: dict[str, Any], intents: list[str]) -> str | None:
    """Why an order's intent keeps it out of the courses (None when the map reads the intent): a
    proposal, plan or option is no order to give the drug (FHIR R4 MedicationRequest.intent)."""
    intent = res.get("intent")
    if isinstance(intent, str) and intent in intents:
        return None
    said = "no intent" if intent is None else f"intent {quoted(intent)}"
    return f"{said}: not an order to give the drug (the map reads only orders of intent {', '.join(intents)})"


def scan(drug: str, data: PatientData, fmap: FhirMap, as_of: date) -> tuple[list[Entry], list[PassedOver]]:
    """The drug's eligible entries from the first resource type (in map order) that has any, and
    the resources of the types read that would have been entries but for their intent or status,
    with the reason and why, once each, the intent first (those of a type not read, statements
    when orders count, would not have counted either)."""
    spec = fmap.medications[drug]
    wanted = frozenset().union(*(fmap.code_sets[s] for s in spec["include"]))
    passed: list[PassedOver] = []
    for rtype in spec["resources"]:
        settings = fmap.settings["medication_request" if rtype == "MedicationRequest" else "medication_statement"]
        found = []
        for res in data.of_type(rtype):
            coding = next((m for m in (first_match(c, wanted) for c in medication_concepts(res, data)) if m), None)
            dosages = as_list(res.get("dosageInstruction" if rtype == "MedicationRequest" else "dosage"))
            if coding is None or _excluded(res, data, spec, fmap, dosages):
                continue
            start, end = _period(res, dosages)
            undated = period_problem(res)
            twice = data.choice_of(res)  # medication[x] given twice was set aside before (bundle.py)
            if undated is None and twice is None and start is not None and start.day > as_of:  # starts later
                continue
            intent = intent_problem(res, settings["intents"]) if rtype == "MedicationRequest" else None
            if intent is not None:
                passed.append((res, "medication_intent_not_usable", intent))
                continue
            why = status_problem(res, settings["statuses"])
            if why is not None:
                passed.append((res, "medication_status_not_usable", why))
                continue
            if undated is not None:
                passed.append((res, "date_not_readable", undated))
                continue
            if twice is not None:
                passed.append((res, "choice_conflict", f"{twice[1]}: {TWO_THINGS}"))
                continue
            ongoing = OPEN if res.get("status") in ("active", "on-hold") else None
            found.append(
                Entry(
                    resource=res,
                    coding=coding,
                    start=start.at if start else None,
                    end=end.at if end else ongoing,
                    dosages=dosages,
                    end_day=end.day if end else None,
                    start_text=start.text if start else None,
                )
            )
        if found:
            return found, passed
    return [], passed


def entries_for(drug: str, data: PatientData, fmap: FhirMap, as_of: date) -> list[Entry]:
    """The drug's eligible entries from the first resource type (in map order) that has any."""
    return scan(drug, data, fmap, as_of)[0]


def analyse(entries: list[Entry], gap_days: int, as_of: date) -> Courses:
    """Current entries, and the latest course (joined across gaps of at most gap_days)."""
    out = Courses(entries)
    out.current = [e for e in entries if e.end is OPEN or (e.end_day is not None and e.end_day >= as_of)]
    dated = sorted((e for e in entries if e.start is not None), key=lambda e: e.start)  # type: ignore[arg-type, return-value]
    if len(dated) != len(entries) and (len(entries) > 1 or not out.current):
        out.ambiguous = True
    course: list[Entry] = []
    end: datetime | None = None
    for e in dated:
        if course and end is not None and (end is OPEN or e.start <= end + timedelta(days=gap_days)):  # type: ignore[operator]
            course.append(e)
            end = _later(end, e.end)
            continue
        if course and end is None:
            out.ambiguous = True  # cannot tell whether the next order continues this course
        course, end = [e], e.end
    out.latest, out.end = course, end
    out.start = course[0].start if course else None
    return out


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return None
    return max(a, b)


def codes_of(entry: Entry) -> list[Coding]:
    """All codings of an entry's medication concept, for reports."""
    return codings(entry.resource.get("medicationCodeableConcept"))
