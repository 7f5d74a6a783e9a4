"""The pick rule for Observation-fed fields: the latest usable result in a time window.

Only results whose status the map accepts (final, amended, corrected by default) and whose time is
known to the day count. A result in the window with another status (preliminary, registered,
cancelled, unknown: FHIR R4 ObservationStatus) is no result: it is passed over, older final results
may fill the field, and it is set aside naming the field and its status. The window ending on the
evaluation date is counted in calendar days as each result is written (dates.py). The latest instant
wins; when several results share it (a lab reporting creatinine in mg/dL and umol/L, a duplicated
message) they must agree within the map's tolerance, or the field is ambiguous. The latest result is
never skipped for an older one because its unit is unknown or its value is not a number: that
would silently report stale data, so the reason is reported instead. A result whose date cannot be
read at all (2025-02-29, a number) cannot be placed in time, so it cannot be ruled out as the latest:
it counts as the latest, with that problem, and the field stays empty rather than filled from an
older result. So does a result with no date at all, and one dated only to a year or a month
(`2025-01`), valid FHIR but not placed on a day, unless a result on a later day rules it out: it
stands at the last day it may denote (31 January, as if dated so), and when that is the latest
its field stays empty (date_not_precise); one whose days all fall outside the window is not read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from fsgs_kb.engine.fhir.codes import UCUM, Coding, as_dict, as_list, first_match, number, quantity
from fsgs_kb.engine.fhir.dates import day_start
from fsgs_kb.engine.fhir.effective import Window, effective_problem, effective_span
from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.fhir.outcome import Found, Missing, Outcome, provenance, worst
from fsgs_kb.engine.fhir.patientdata import PatientData
from fsgs_kb.engine.fhir.setaside import TWO_THINGS, json_value, number_text, quoted, status_not_read


@dataclass(frozen=True)
class Unusable:
    """Why a result's value cannot fill its field: a missing reason (outcome.REASONS), the matching
    set-aside reason (setaside.REASONS) and what is wrong, in words."""

    missing: str
    reason: str
    why: str


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One result that could fill a field: its time, resource, matched code, and value or problem;
    `passed_over` says why it is no result at all (its status), so older results may fill the field."""

    when: datetime
    resource: dict[str, Any]
    coding: Coding
    rank: int
    value: Any = None
    problem: Unusable | None = None
    passed_over: Unusable | None = None


UNPLACED = datetime.max.replace(tzinfo=timezone.utc)  # the time of a result whose date cannot be read, or none


def scaled(value: float, factor: float) -> float:
    """value x factor, with float noise from the multiplication rounded away (identity when factor is 1)."""
    return value if factor == 1 else round(value * factor, 6)


def _unit_problem(why: str) -> Unusable:
    return Unusable("unit_not_convertible", "unit_not_convertible", why)


def _not_a_number(raw: Any) -> Unusable:
    """Why a valueQuantity holds no number: the latest value exists but is broken, so the field is
    missing for that reason (not_a_value), never filled from an older value."""
    if not isinstance(raw, dict):
        why = f"valueQuantity {json_value(raw)} is not a Quantity"
    elif "value" not in raw:
        why = "valueQuantity has no value"
    else:
        why = f"valueQuantity.value {json_value(raw['value'])} is not a number"
    return Unusable("not_a_value", "not_a_value", why)


def convert_quantity(element: dict[str, Any], convert: dict[str, Any]) -> tuple[Any, Unusable | None]:
    """((value, record unit), None) from valueQuantity, or (None, why not); (None, None) when the
    element has no value[x] at all (a panel, a dataAbsentReason)."""
    raw = element.get("valueQuantity")
    q = quantity(raw)
    if q is None:
        # A number in a unit the map cannot trust (another system, none at all) or a value that is
        # not a quantity (valueString "72 kg"), or a malformed number (true, NaN, "70"): the latest
        # value exists but cannot be read, so the field is missing for that reason, never filled
        # from an older value.
        given = as_dict(raw)
        value = number(given.get("value"))
        if value is not None:
            unit = given.get("code", given.get("unit"))
            stated = f" {quoted(unit)}" if isinstance(unit, str) else " with no unit"
            system = given.get("system")
            stated += f" of system {quoted(system)}" if system not in (None, UCUM) else ""
            return None, _unit_problem(f"value {number_text(value)}{stated}: not a UCUM unit the map can read")
        if raw is not None:
            return None, _not_a_number(raw)
        others = sorted(k for k in element if k.startswith("value"))
        if raw is None and others:
            return None, _unit_problem(f"the value is a {quoted(others[0])}, not a valueQuantity")
        return None, None
    if q.bound:
        why = f"{number_text(q.value)} {quoted(q.unit)} with a comparator is a bound, not a value"
        return None, Unusable("ambiguous", "not_a_value", why)
    rule = convert.get(q.unit)
    if rule is None:
        why = f"value {number_text(q.value)} {quoted(q.unit)} is in a unit the map does not convert for this field"
        return None, _unit_problem(why)
    return (scaled(q.value, float(rule["factor"])), rule["to"]), None


def status_problem(obs: dict[str, Any], statuses: list[str]) -> Unusable | None:
    """Why an Observation's status makes it no result (None when the map accepts the status)."""
    why = status_not_read(obs, statuses, "result")
    return None if why is None else Unusable("no_resource", "status_not_usable", why)


def eligible(
    data: PatientData, fmap: FhirMap, window: Window
) -> Iterator[tuple[dict[str, Any], datetime, Unusable | None, Unusable | None]]:
    """Observations whose effective time the window holds, with their instant, when the map does
    not accept their status why they are no result, and last what is wrong with a value that may
    be the latest: the Observations whose date cannot be read, or that have none, or that give
    effective[x] twice, come with UNPLACED and that problem; those dated to a year or month the
    window may hold, at the start of the last day they may denote (as if dated so), with theirs;
    those that give value[x] twice (choices.py), at their time, with that."""
    statuses = fmap.settings["observation_statuses"]
    for obs in data.of_type("Observation"):
        twice = data.choice_of(obs)
        if twice is not None and twice[0] == "effective":
            problem = Unusable(
                "date_not_readable", "choice_conflict", f"{twice[1]}: {TWO_THINGS}; it may be the latest result"
            )
            yield obs, UNPLACED, status_problem(obs, statuses), problem
            continue
        said = None if twice is None else Unusable("ambiguous", "choice_conflict", f"{twice[1]}: {TWO_THINGS}")
        when = data.when_of(obs)
        if when is not None:
            if window.holds(when):
                yield obs, when.at, status_problem(obs, statuses), said
            continue
        why = effective_problem(obs)
        if why is not None:
            problem = Unusable("date_not_readable", "date_not_readable", f"{why}: it may be the latest result")
            yield obs, UNPLACED, status_problem(obs, statuses), problem
            continue
        span, why = effective_span(obs)
        if span is None or window.may_hold(*span):
            problem = Unusable("date_not_precise", "date_not_precise", f"{why}: it may be the latest result")
            yield obs, UNPLACED if span is None else day_start(span[1]), status_problem(obs, statuses), problem


def coded_candidates(
    data: PatientData, fmap: FhirMap, matches: list[dict[str, Any]], window: Window
) -> list[Candidate]:
    """Candidates from Observations (or panel components) whose code is in one of the match entries."""
    out: list[Candidate] = []
    for obs, when, passed_over, unusable in eligible(data, fmap, window):
        for rank, match in enumerate(matches):
            wanted_codes = fmap.code_sets[match["code_set"]]
            coding = next((c for c in data.code_of(obs) if c in wanted_codes), None)
            if coding is None:
                continue
            if passed_over is not None:
                out.append(Candidate(when=when, resource=obs, coding=coding, rank=rank, passed_over=passed_over))
                break
            if unusable is not None:
                out.append(Candidate(when=when, resource=obs, coding=coding, rank=rank, problem=unusable))
                break
            elements = [obs]
            if "component" in match:
                wanted = fmap.code_sets[match["component"]]
                elements = [
                    as_dict(c) for c in as_list(obs.get("component")) if first_match(as_dict(c).get("code"), wanted)
                ]
            for element in elements:
                value, problem = convert_quantity(element, match["convert"])
                if value is not None or problem is not None:
                    out.append(
                        Candidate(when=when, resource=obs, coding=coding, rank=rank, value=value, problem=problem)
                    )
            break
    return out


def pick_latest(cands: list[Candidate], data: PatientData, same: Callable[[Any, Any], bool], field: str) -> Outcome:
    """The latest candidate's value, or why there is none (see module docstring). A latest result
    whose value cannot be used is set aside, naming the field (a JSON pointer) it would have filled,
    and so is every result passed over for its status."""
    for c in cands:
        if c.passed_over is not None:
            data.put_aside(c.resource, c.passed_over.reason, c.passed_over.why, field)
    cands = [c for c in cands if c.passed_over is None]
    if not cands:
        return Missing("no_resource")
    top_when = max(c.when for c in cands)
    top = sorted((c for c in cands if c.when == top_when), key=lambda c: c.rank)
    if any(data.is_conflicted(c.resource) for c in top):
        return Missing("ambiguous")
    for c in top:
        if c.problem is not None:
            data.put_aside(c.resource, c.problem.reason, c.problem.why, field)
    good = [c for c in top if c.problem is None]
    if not good:
        return worst([c.problem.missing for c in top if c.problem])
    if not all(same(good[0].value, c.value) for c in good[1:]):
        return Missing("ambiguous")
    best = good[0]
    written = data.when_of(best.resource)  # the Moment `when` came from: shown as it is written
    return Found(best.value, provenance(best.resource, best.coding, written.text if written else None))


def close(a: float, b: float, tolerance_pct: float) -> bool:
    """Two numbers equal within a relative tolerance (exactly equal when the tolerance is 0)."""
    return a == b or abs(a - b) <= tolerance_pct / 100 * max(abs(a), abs(b))


def same_value(fmap: FhirMap) -> Callable[[Any, Any], bool]:
    """Equality for record values: numbers within tolerance, (value, unit) pairs across declared unit conversions."""
    tol = float(fmap.settings["same_time_tolerance_pct"])

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, tuple) and isinstance(b, tuple):
            factor = fmap.cross_factor(b[1], a[1])
            return factor is not None and close(a[0], b[0] * factor, tol)
        if number(a) is not None and number(b) is not None:
            return close(float(a), float(b), tol)
        if isinstance(a, list) and isinstance(b, list):
            return sorted(map(repr, a)) == sorted(map(repr, b))
        return bool(a == b)

    return same
