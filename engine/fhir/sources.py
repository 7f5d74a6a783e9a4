"""One reader per source kind of the map: birthdate, observation, field_observation, condition,
medication, observation_before_course (medication_list, a list from orders: orderlist.py).

Each reader answers for one field: a Found value with provenance, a Missing reason, or None when the
source has nothing to say (a Condition with no etiology implication). Readers share one Context per
bundle so that, e.g., the cyclosporine course is worked out once for status, dose, months and the
baseline creatinine, and all four agree on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from fsgs_kb.engine.fhir.birth import age_from_birth_date
from fsgs_kb.engine.fhir.codes import first_match
from fsgs_kb.engine.fhir.courses import KIND, OPEN, Courses, analyse, scan
from fsgs_kb.engine.fhir.dates import day_start, moment
from fsgs_kb.engine.fhir.dosage import daily_dose
from fsgs_kb.engine.fhir.effective import Window
from fsgs_kb.engine.fhir.errors import field_pointer
from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.fhir.fieldobs import field_candidates
from fsgs_kb.engine.fhir.medication import resolve_medication
from fsgs_kb.engine.fhir.outcome import Found, Missing, Outcome, provenance
from fsgs_kb.engine.fhir.patientdata import PatientData
from fsgs_kb.engine.fhir.pick import coded_candidates, pick_latest
from fsgs_kb.engine.fhir.setaside import TWO_THINGS, label, number_text
from fsgs_kb.engine.fhir.verification import why_not_counted

DOSE_NOT_COMPUTABLE = (
    "no total daily dose in its dosage instructions (a dose and a frequency, in a unit the map converts; "
    "a count of capsules or tablets needs the Medication's strength)"
)


@dataclass
class Context:
    """Everything a reader needs for one bundle and evaluation date, with per-drug caches."""

    data: PatientData
    fmap: FhirMap
    as_of: date
    same: Callable[[Any, Any], bool]
    _courses: dict[str, Courses] = field(default_factory=dict)
    _aside: set[str] = field(default_factory=set)  # drugs whose passed-over orders were set aside

    def window(self, lookback: int | None) -> Window:
        """The look-back window ending on the evaluation date, in calendar days (dates.py)."""
        first = None if lookback is None else self.as_of - timedelta(days=lookback)
        return Window(first_day=first, last_day=self.as_of)

    def courses(self, drug: str) -> Courses:
        if drug not in self._courses:
            spec = self.fmap.medications[drug]
            entries, passed_over = scan(drug, self.data, self.fmap, self.as_of)
            self._courses[drug] = analyse(entries, spec["course_max_gap_days"], self.as_of)
            self._courses[drug].passed_over = passed_over
        return self._courses[drug]

    def drug_courses(self, drug: str, field: str) -> Courses:
        """The drug's courses for a field its orders feed; the orders and statements passed over for
        their intent or status are set aside once, under the first such field (map order: cyclosporine's under
        /cyclosporine/status), so that one resource is listed once, not once per field (so are those
        passed over for a date that cannot be read)."""
        c = self.courses(drug)
        if drug not in self._aside:
            self._aside.add(drug)
            for res, reason, why in c.passed_over:
                self.data.put_aside(res, reason, why, field)
        return c


def read_birthdate(ctx: Context, path: str, spec: dict[str, Any], src: dict[str, Any]) -> Outcome:
    """Age on the evaluation date; a partial birthDate fills only when all its days give one age."""
    return age_from_birth_date(ctx.data, ctx.as_of, src["decimals"], field_pointer(path))


def read_observation(ctx: Context, path: str, spec: dict[str, Any], src: dict[str, Any]) -> Outcome:
    """Latest coded Observation in the look-back window, converted to the record unit."""
    cands = coded_candidates(ctx.data, ctx.fmap, src["match"], ctx.window(src["lookback_days"]))
    out = pick_latest(cands, ctx.data, ctx.same, field_pointer(path))
    if isinstance(out, Found) and spec["type"] == "number":
        return Found(out.value[0], out.prov)
    return out


def read_field_observation(ctx: Context, path: str, spec: dict[str, Any], src: dict[str, Any]) -> Outcome:
    """Latest field Observation ({local field system, path}) in the look-back window."""
    cands = field_candidates(path, spec, src, ctx.data, ctx.fmap, ctx.window(src["lookback_days"]))
    return pick_latest(cands, ctx.data, ctx.same, field_pointer(path))


def read_condition(ctx: Context, path: str, spec: dict[str, Any], src: dict[str, Any]) -> Outcome | None:
    """An enum value implied by a Condition code (e.g. autosomal dominant FSGS -> genetic), from
    Conditions that count as a diagnosis (verification.py); the others are set aside, saying why.
    One that gives a choice element twice (onset[x], abatement[x]) says two things: it is set
    aside, and without another Condition this source says the field is ambiguous."""
    excluded = ctx.fmap.settings["condition_exclude_verification"]
    found: list[Found] = []
    twice = False
    for cond in ctx.data.of_type("Condition"):
        for rule in src["values"]:
            coding = first_match(cond.get("code"), ctx.fmap.code_sets[rule["code_set"]])
            if coding is None:
                continue
            why_not = why_not_counted(cond, excluded)
            if why_not is not None:
                ctx.data.put_aside(cond, "not_confirmed", why_not, field_pointer(path))
                continue
            conflict = ctx.data.choice_of(cond)
            if conflict is not None:
                ctx.data.put_aside(cond, "choice_conflict", f"{conflict[1]}: {TWO_THINGS}", field_pointer(path))
                twice = True
                continue
            when = moment(cond.get("onsetDateTime")) or moment(cond.get("recordedDate"))
            found.append(Found(rule["value"], provenance(cond, coding, when.text if when else None)))
    if not found:
        return Missing("ambiguous") if twice else None
    return found[0] if len({f.value for f in found}) == 1 else Missing("ambiguous")


def read_medication(ctx: Context, path: str, spec: dict[str, Any], src: dict[str, Any]) -> Outcome:
    """Status, daily dose or months on therapy of a drug, from its orders or statements."""
    c = ctx.drug_courses(src["drug"], field_pointer(path))
    why = unread(c)
    if why is not None and not (src["output"] == "status" and c.current):  # it may be the current order
        return Missing(why)
    if not c.entries:
        return Missing("no_resource")
    if any(ctx.data.is_conflicted(e.resource) for e in c.entries):
        return Missing("ambiguous")
    output = src["output"]
    if output == "status":
        basis = c.current[0] if c.current else max(c.entries, key=lambda e: e.start or day_start(date.min))
        return Found("current" if c.current else "stopped", _entry_prov(basis))
    if output == "months_on_therapy":
        return _months(ctx, c)
    return _dose(ctx, c, src["drug"], field_pointer(path))


def unread(c: Courses) -> str | None:
    """Why what the drug's orders say is not all read (a missing reason), or None: an order or
    statement of the drug was passed over for a date that cannot be read (date_not_readable) or for
    a choice element given twice (ambiguous: which of its two it says cannot be told). It may be
    current, and part of the latest course, so only what holds whatever it says (another order is
    current) is read."""
    reasons = {reason for _, reason, _ in c.passed_over}
    if "date_not_readable" in reasons:
        return "date_not_readable"
    return "ambiguous" if "choice_conflict" in reasons else None


def _entry_prov(entry: Any) -> dict[str, Any]:
    return provenance(entry.resource, entry.coding, entry.start_text)


def _months(ctx: Context, c: Courses) -> Outcome:
    if c.ambiguous or c.start is None or c.end is None:
        return Missing("ambiguous")
    today = day_start(ctx.as_of)
    end = today if c.end is OPEN or c.end > today else c.end
    days = (end - c.start).total_seconds() / 86400
    if days < 0 and end is today and c.latest[0].start_text:  # begun after today's UTC midnight: count days
        days = (ctx.as_of - date.fromisoformat(c.latest[0].start_text[:10])).days  # as written, in its offset
    if days < 0:  # ends before it starts: never 0 months (courses.period_problem sets such orders aside)
        return Missing("ambiguous")
    prov = _entry_prov(c.latest[0])
    others = [{"resourceType": e.resource.get("resourceType"), "id": e.resource.get("id")} for e in c.latest[1:]]
    months = round(days / float(ctx.fmap.settings["days_per_month"]), 6)
    return Found(months, {**prov, **({"others": others} if others else {})})


def _dose(ctx: Context, c: Courses, drug: str, field: str) -> Outcome:
    pool = c.current or c.latest or c.entries
    units = ctx.fmap.medications[drug]["dose_units"]
    doses = [(daily_dose(e.dosages, units, resolve_medication(e.resource, ctx.data)), e) for e in pool]
    if len(c.current) > 1:
        return _concurrent(ctx, doses, drug, field)
    if any(d is None for d, _ in doses):
        for d, e in doses:
            if d is None:
                ctx.data.put_aside(e.resource, "dose_not_computable", DOSE_NOT_COMPUTABLE, field)
        return Missing("dose_not_computable")
    if len({d for d, _ in doses}) > 1:
        return Missing("ambiguous")
    dose, entry = doses[0]
    return Found(dose, _entry_prov(entry))


def _concurrent(ctx: Context, doses: list[tuple[tuple[float, str] | None, Any]], drug: str, field: str) -> Missing:
    """More than one current order (or statement) of the drug: the record's dose is the total daily
    dose, but whether their doses add up (divided doses ordered separately) or one replaces the
    other (a renewal, a change of dose, an order entered twice) is not written in them. Equal or
    not, the dose is left undetermined, and each of them is set aside for the dose naming the others."""

    def said(dose: tuple[float, str] | None) -> str:
        return "no computable dose" if dose is None else f"{number_text(dose[0])} {dose[1]}"

    kind = KIND.get(str(doses[0][1].resource.get("resourceType")), "order")
    for i, (dose, entry) in enumerate(doses):
        others = "; ".join(f"{label(e.resource)}, {said(d)}" for j, (d, e) in enumerate(doses) if j != i)
        why = (
            f"one of {len(doses)} current {kind}s of {drug} (this one {said(dose)}; also {others}): "
            "whether their doses add up or one replaces the other is not stated, so the total daily dose "
            "is left undetermined"
        )
        ctx.data.put_aside(entry.resource, "concurrent_orders", why, field)
    return Missing("concurrent_orders")


def read_before_course(ctx: Context, path: str, spec: dict[str, Any], src: dict[str, Any]) -> Outcome:
    """The last result before the latest course of a drug started (baseline creatinine)."""
    c = ctx.courses(src["drug"])
    why = unread(c)
    if why is not None:
        return Missing(why)
    if not c.entries:
        return Missing("no_resource")
    if c.ambiguous or c.start is None:
        return Missing("ambiguous")
    since = None if src["lookback_days"] is None else c.start - timedelta(days=src["lookback_days"])
    cands = coded_candidates(ctx.data, ctx.fmap, src["match"], Window(since=since, until=c.start))
    return pick_latest(cands, ctx.data, ctx.same, field_pointer(path))


READERS: dict[str, Callable[[Context, str, dict[str, Any], dict[str, Any]], Outcome | None]] = {
    "birthdate": read_birthdate,
    "observation": read_observation,
    "field_observation": read_field_observation,
    "condition": read_condition,
    "medication": read_medication,
    "observation_before_course": read_before_course,
}


def read_source(ctx: Context, path: str, spec: dict[str, Any], src: dict[str, Any]) -> Outcome | None:
    """Dispatch one source of one field to its reader."""
    return READERS[src["kind"]](ctx, path, spec, src)
