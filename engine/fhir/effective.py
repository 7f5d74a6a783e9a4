"""When an Observation happened, read from its effective time, and the window of days or instants
in which a result may fill a field (engine/fhir/dates.py reads the dates themselves).

A result whose date is partial (a year, a year and month) or absent cannot be placed on a day; its
possible days (effective_span) still tell whether it may be the latest in a window (Window.may_hold),
and one whose date cannot be read at all (effective_problem) is named with what is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fsgs_kb.engine.fhir.dates import FIRST_DAY, LAST_DAY, Moment, date_interval, day_start, in_calendar, moment
from fsgs_kb.engine.fhir.setaside import json_value, quoted


@dataclass(frozen=True, kw_only=True)
class Window:
    """Which results may fill a field. Counted back from the evaluation date, by calendar day as
    each result is written: `first_day` (None: no limit) to `last_day`, both included. Before a
    course started, by instant: from `since` (None: no limit) up to `until`, excluded."""

    first_day: date | None = None
    last_day: date | None = None
    since: datetime | None = None
    until: datetime | None = None

    def holds(self, when: Moment) -> bool:
        if self.last_day is not None and (
            when.day > self.last_day or (self.first_day is not None and when.day < self.first_day)
        ):
            return False
        return self.until is None or (when.at < self.until and (self.since is None or when.at >= self.since))

    def may_hold(self, first: date, last: date) -> bool:
        """Whether a result known only to fall on one of the days `first` to `last` (a partial
        date) may be in the window: whether one of those days, read as a date alone is, would be."""
        if self.last_day is not None and (first > self.last_day or last < (self.first_day or date.min)):
            return False
        return self.until is None or (
            day_start(first) < self.until and (self.since is None or day_start(last) >= self.since)
        )


def effective_moment(resource: dict[str, Any]) -> Moment | None:
    """When an Observation applies: effectiveDateTime/Instant, else the end (or start) of effectivePeriod."""
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in resource:
            return moment(resource[key])
    period = resource.get("effectivePeriod")
    if isinstance(period, dict) and not reversed_period("effectivePeriod", period):
        return moment(period.get("end")) or moment(period.get("start"))
    return None


def ends_before(first: Moment, last: Moment) -> bool:
    """Whether a period from `first` to `last` ends before it starts: two dateTimes compared as
    instants, a date alone as the whole day it names (FHIR: a Period's end is inclusive)."""
    if len(first.text) > 10 and len(last.text) > 10:
        return last.at < first.at
    return last.day < first.day


def reversed_period(name: str, period: dict[str, Any]) -> str | None:
    """Why a Period (named as the message shows it) whose start and end can both be read ends
    before it starts (FHIR R4 invariant per-1: start <= end), in words; None when it does not, or
    when either is absent or unreadable. Two dateTimes are compared as instants, a date alone as the
    whole day it names (2025-01-15T10:00Z to 2025-01-15 runs forward), a partial one by every day it
    may denote (2024 ends before 2025-01-15; 2025 does not)."""
    start, end = period.get("start"), period.get("end")
    first, last = moment(start), moment(end)
    if first is not None and last is not None:
        before = ends_before(first, last)
    else:
        began, ended = date_interval(start), date_interval(end)
        before = began is not None and ended is not None and ended[1] < began[0]
    if not before:
        return None
    return f'{name} ends ("{quoted(end)}") before it starts ("{quoted(start)}")'


def _unreadable(value: Any) -> str | None:
    """Why a date element is neither a full nor a partial FHIR date or dateTime that can be read; None
    when it is one."""
    if moment(value) is not None:
        return None
    span = date_interval(value)
    if span is None:
        return "is not a date that can be read"
    if len(value) >= 10 or not in_calendar(span[0]) or not in_calendar(span[1]):  # a full one, or days off it
        return f"is outside the dates this reader places ({FIRST_DAY} to {LAST_DAY}, in UTC)"
    return None


def unreadable_date(name: str, value: Any) -> str | None:
    """Why a date element (named as the message shows it) cannot be read, in words: a date that
    does not exist (2023-02-30, 2023-13-01), a malformed dateTime, a number, one off the calendar;
    None when it is a full or partial FHIR date or dateTime that can be read."""
    why = _unreadable(value)
    return f"{name} {json_value(value)} {why}" if why else None


def effective_span(resource: dict[str, Any]) -> tuple[tuple[date, date] | None, str]:
    """Of an Observation whose effective time is partial or absent (effective_moment found none,
    effective_problem no fault): the first and last day it may fall on (`2025-01`: 1 to 31 January;
    an effectivePeriod from its start to its end), or None when it gives no date at all, and why it
    cannot be placed on a day, in words."""
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in resource:
            value = resource[key]
            given = "a year" if len(str(value)) == 4 else "a year and a month"
            return date_interval(value), f"{key} {json_value(value)} gives only {given}, no day"
    period = resource.get("effectivePeriod")
    ends = {k: period[k] for k in ("start", "end") if k in period} if isinstance(period, dict) else {}
    spans = [s for s in (date_interval(v) for v in ends.values()) if s]
    if not spans:
        return None, "no effective date (effectiveDateTime, effectiveInstant or effectivePeriod)"
    said = ", ".join(f"{k} {json_value(v)}" for k, v in ends.items())
    return (spans[0][0], spans[-1][1]), f"effectivePeriod ({said}) gives no day"


def effective_problem(resource: dict[str, Any]) -> str | None:
    """Why an Observation's effective time cannot be read at all (a date that does not exist, such
    as 2025-02-29, a malformed dateTime, a number, an effectivePeriod that ends before it starts);
    None when it is readable, partial or absent."""
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in resource:
            value = resource[key]
            why = _unreadable(value)
            return f"{key} {json_value(value)} {why}" if why else None
    if "effectivePeriod" not in resource:
        return None
    period = resource["effectivePeriod"]
    if not isinstance(period, dict):
        return f"effectivePeriod {json_value(period)} is not a Period"
    for key in ("end", "start"):
        why = _unreadable(period[key]) if key in period else None
        if why:
            return f"effectivePeriod.{key} {json_value(period[key])} {why}"
    return reversed_period("effectivePeriod", period)
