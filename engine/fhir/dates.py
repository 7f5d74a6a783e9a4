"""FHIR dates and times: instants to order events, calendar days to place them, age on a date.

Two questions are asked of a time, and they have different answers. Which of two results is the
later one ("the latest weight", "the last creatinine before the course started") is a question of
instants: every FHIR dateTime form is brought to an aware UTC datetime here, once (a date without
time is the start of that day in UTC). On which day something happened ("within the look-back
window ending on the evaluation date", "an order still current on that date") is a question of
calendar days: the evaluation date is a plain calendar day (what `--as-of` says, or today's date on
this computer's clock), and a result is on the day its own date or dateTime is written in, in the
offset it was recorded with, with no conversion through UTC that would move an evening measurement
in New York (20:00-05:00, 01:00Z the next day) to the next day; it is shown (sources[].effective)
as it is written, in the same offset. Partial dates (a year, or a year
and month) cannot be placed on a day: they are returned as None for events (with the days they
may denote, effective_span, so that a reader can tell whether such a result may be the latest),
and as an interval for birthDate, where age can still be exact when every day in the interval
gives the same answer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from fractions import Fraction
from functools import lru_cache
from typing import Any, NamedTuple

from fsgs_kb.engine.fhir.setaside import json_value

_DATETIME = re.compile(
    r"^(\d{4})(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])"
    r"(T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00)))?)?)?$"
)


def day_start(d: date) -> datetime:
    """Midnight UTC at the start of a calendar day."""
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


class Moment(NamedTuple):
    """A full FHIR date or dateTime: the instant (UTC, to order events), the calendar day it is
    written in (to place it on a day) and the text as written (to show it: its own offset, or a
    date alone, never a UTC midnight it did not say)."""

    at: datetime
    day: date
    text: str


def today() -> date:
    """The evaluation date when none is given: today's date on this computer's clock (its local
    time zone), the calendar day its user is in; recorded with every result (decision.fhir.as_of)."""
    return datetime.now().astimezone().date()


def moment(text: Any) -> Moment | None:
    """The instant and the written calendar day of a full FHIR date or dateTime; None otherwise."""
    at = parse_instant(text)
    return None if at is None else Moment(at, date.fromisoformat(text[:10]), text)


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


def parse_instant(text: Any) -> datetime | None:
    """A full FHIR date or dateTime as an aware UTC datetime; None for partial or malformed values."""
    if not isinstance(text, str) or len(text) > 40:
        return None
    return _parse(text)


@lru_cache(maxsize=4096)  # every field's pick rule reads the same few dates again: parse each once
def _parse(text: str) -> datetime | None:
    m = _DATETIME.match(text)
    if not m or not m.group(5):
        return None
    if not m.group(6):
        try:
            return day_start(date.fromisoformat(text))
        except ValueError:
            return None
    iso = text.replace("Z", "+00:00")
    frac = m.group(9)
    if frac and len(frac) > 7:  # Python takes at most 6 fractional digits
        iso = iso.replace(frac, frac[:7])
    try:
        return datetime.fromisoformat(iso.replace(":60", ":59")).astimezone(timezone.utc)
    except ValueError:
        return None


def format_instant(when: datetime) -> str:
    """An instant as a FHIR dateTime with seconds (and microseconds when there are any)."""
    when = when.astimezone(timezone.utc)
    spec = "seconds" if when.microsecond == 0 else "microseconds"
    return when.isoformat(timespec=spec).replace("+00:00", "Z")


def date_interval(text: Any) -> tuple[date, date] | None:
    """The first and last day a FHIR date may denote: '1980' -> (1980-01-01, 1980-12-31)."""
    if not isinstance(text, str):
        return None
    m = _DATETIME.match(text)
    if not m:
        return None
    year = int(m.group(1))
    try:
        if m.group(5):
            d = date(year, int(m.group(3)), int(m.group(5)))
            return d, d
        if m.group(3):
            month = int(m.group(3))
            first = date(year, month, 1)
            nxt = date(year + month // 12, month % 12 + 1, 1)
            return first, nxt - timedelta(days=1)
        return date(year, 1, 1), date(year, 12, 31)
    except ValueError:
        return None


def anniversary(birth: date, year: int) -> date:
    """The birthday in a given year; 29 February falls on 1 March in common years [LOCAL choice]."""
    try:
        return birth.replace(year=year)
    except ValueError:
        return date(year, 3, 1)


def exact_age(birth: date, on: date) -> Fraction:
    """Completed years plus the elapsed share of the current birthday-year, exactly."""
    years = on.year - birth.year
    if anniversary(birth, on.year) > on:
        years -= 1
    last = anniversary(birth, birth.year + years)
    nxt = anniversary(birth, birth.year + years + 1)
    return Fraction(years) + Fraction((on - last).days, (nxt - last).days)


def floor_to(value: Fraction, decimals: int) -> float:
    """Truncate towards zero-side floor at a number of decimals, with no float rounding on the way."""
    scale = 10**decimals
    return float(math.floor(value * scale) / scale)


def age_on(birth: date, on: date, decimals: int) -> float | None:
    """Age in years on a date, truncated to `decimals`; None when born after that date."""
    if birth > on:
        return None
    return floor_to(exact_age(birth, on), decimals)


def birth_date_for(age: float, on: date, decimals: int) -> date:
    """A birth date whose truncated age on `on` is `age`: the middle of all days that qualify (inverse of age_on)."""
    whole = int(math.floor(age))
    start = anniversary(on, on.year - whole)  # born exactly `whole` years ago
    hits = [start - timedelta(days=k) for k in range(0, 367) if age_on(start - timedelta(days=k), on, decimals) == age]
    if not hits:
        raise ValueError(f"no birth date gives age {age} on {on}")
    return hits[len(hits) // 2]


def effective_moment(resource: dict[str, Any]) -> Moment | None:
    """When an Observation applies: effectiveDateTime/Instant, else the end (or start) of effectivePeriod."""
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in resource:
            return moment(resource[key])
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        return moment(period.get("end")) or moment(period.get("start"))
    return None


def _unreadable(value: Any) -> bool:
    """True for a date element that is neither a full nor a partial FHIR date or dateTime."""
    return moment(value) is None and date_interval(value) is None


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
    as 2025-02-29, a malformed dateTime, a number); None when it is readable, partial or absent."""
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in resource:
            value = resource[key]
            return f"{key} {json_value(value)} is not a date that can be read" if _unreadable(value) else None
    if "effectivePeriod" not in resource:
        return None
    period = resource["effectivePeriod"]
    if not isinstance(period, dict):
        return f"effectivePeriod {json_value(period)} is not a Period"
    for key in ("end", "start"):
        if key in period and _unreadable(period[key]):
            return f"effectivePeriod.{key} {json_value(period[key])} is not a date that can be read"
    return None
