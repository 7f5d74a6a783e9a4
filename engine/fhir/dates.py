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
may denote, engine/fhir/effective.py, so that a reader can tell whether such a result may be the latest),
and as an interval for birthDate, where age can still be exact when every day in the interval
gives the same answer.
"""

from __future__ import annotations

import calendar
import math
import re
from datetime import date, datetime, timedelta, timezone
from fractions import Fraction
from functools import lru_cache
from typing import Any, NamedTuple

# ASCII digits only, to the end of the text: `\d` alone would take any Unicode digit (fullwidth
# "１９７９", Arabic-Indic "١٩٧٩", which int() reads too) and `$` a trailing newline, neither in FHIR.
_DATETIME = re.compile(
    r"^(\d{4})(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])"
    r"(T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00)))?)?)?\Z",
    re.ASCII,
)


# The calendar dates are computed in ends at years 1 and 9999. The reader steps back from a date by
# up to the map's longest look-back (36,500 days, schema/fhir-map.schema.json) and forward by up to
# its longest course gap (3,650 days); an age looks back up to 120 years. A date or dateTime is
# placed only when its instant (UTC) falls on FIRST_DAY to LAST_DAY, so that every such step stays in
# the calendar; one outside (0001-01-01T00:00:00+14:00, 9999-12-31) is a date that cannot be read,
# and an evaluation date outside is refused (evaluation_day_problem).
FIRST_DAY = date(200, 1, 1)
LAST_DAY = date(9899, 12, 31)


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


def in_calendar(d: date) -> bool:
    """Whether a calendar day is one the reader places (FIRST_DAY to LAST_DAY)."""
    return FIRST_DAY <= d <= LAST_DAY


def evaluation_day_problem(d: date) -> str | None:
    """Why a day cannot be the evaluation date (look-back windows and ages are counted back from
    it), in words; None when it can."""
    if in_calendar(d):
        return None
    return f"{d.isoformat()} is outside the evaluation dates this reader counts from ({FIRST_DAY} to {LAST_DAY})"


def moment(text: Any) -> Moment | None:
    """The instant and the written calendar day of a full FHIR date or dateTime; None otherwise."""
    at = parse_instant(text)
    return None if at is None else Moment(at, date.fromisoformat(text[:10]), text)


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
            day = date.fromisoformat(text)
        except ValueError:
            return None
        return day_start(day) if in_calendar(day) else None
    iso = text.replace("Z", "+00:00")
    frac = m.group(9)
    if frac and len(frac) > 7:  # Python takes at most 6 fractional digits
        iso = iso.replace(frac, frac[:7])
    try:
        at = datetime.fromisoformat(iso.replace(":60", ":59")).astimezone(timezone.utc)
    except (ValueError, OverflowError):  # OverflowError: an offset that moves the instant off the calendar
        return None
    return at if in_calendar(at.date()) and in_calendar(date.fromisoformat(text[:10])) else None


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
            return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
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
