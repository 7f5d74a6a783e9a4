"""Total daily dose from FHIR Dosage instructions, or 'not computable'.

The knowledge base compares the total daily dose (all divided doses summed) with 5 mg/kg/day, so a
wrong dose is a wrong safety message. A dose is computed only from fully structured instructions:
dose x frequency / period, summed over concurrent instructions (split doses, e.g. 100 mg morning +
75 mg evening). As-needed use, dose or frequency ranges, day-of-week patterns, sequential phases
(tapers), timing codes without a repeat, free text, a frequency that is not a whole number above 0
or a period or periodUnit that is not one, and times of day that say another count than the
frequency and period (three times of day, frequency 2 a day; the same with `when` events such as
MORN, EVE), times of day with `when`, or meal events (C, AC, PC) with no frequency, give
`dose_not_computable`: the engine then says the dose is unknown instead of checking a guess.
"""

from __future__ import annotations

from typing import Any

from fsgs_kb.engine.fhir.codes import as_dict, as_list, number, quantity

# Units that count dose forms (UCUM annotations and the usual codes): a dose in one of them is
# converted with the product's strength per form, when the Medication states it.
COUNT_UNITS = frozenset({"1", "{capsule}", "{capsules}", "{tablet}", "{tablets}", "{tbl}", "{cap}", "CAP", "TAB"})

# FHIR R4 EventTiming codes that name one event a day (C, AC and PC, "at / before / after meals",
# name several: how many is not said).
ONE_A_DAY = frozenset(
    {"MORN", "MORN.early", "MORN.late", "NOON", "AFT", "AFT.early", "AFT.late", "EVE", "EVE.early", "EVE.late"}
    | {"NIGHT", "PHS", "HS", "WAKE", "CM", "CD", "CV", "ACM", "ACD", "ACV", "PCM", "PCD", "PCV"}
)

# Hours per UCUM unit of time. Months and years have no fixed length, so they are not listed.
HOURS = {"s": 1 / 3600, "min": 1 / 60, "h": 1.0, "d": 24.0, "wk": 168.0}


def _count(value: Any) -> float | None:
    """A FHIR positiveInt (a JSON number that is a whole number above 0, not a boolean), else None."""
    n = number(value)
    return n if n is not None and n > 0 and n.is_integer() else None


def _per_day(repeat: dict[str, Any]) -> float | None:
    """Administrations per day from Timing.repeat; None when it is a range or not structured, or when
    a frequency, period or periodUnit is given but is not one (a frequency of "2", 0 or 1.5, a period
    of "1" or 0, a unit such as "mo"): a malformed element is never read as once a day. So is a
    timing whose times say another count than its frequency and period (_times_disagree)."""
    if any(k in repeat for k in ("frequencyMax", "periodMax", "dayOfWeek", "count", "countMax")):
        return None
    clock, events = as_list(repeat.get("timeOfDay")), as_list(repeat.get("when"))
    if clock and events:  # FHIR R4 tim-10: timeOfDay or when, not both
        return None
    times = _daily_times(clock, events)
    if "frequency" in repeat:
        frequency = _count(repeat["frequency"])
        if frequency is None:
            return None
    elif clock or events:
        frequency = None if times is None else float(times)  # "at meals" alone: how many is not said
    else:
        frequency = 1.0 if "period" in repeat else None
    if "period" in repeat or "periodUnit" in repeat:
        period, unit = number(repeat.get("period")), repeat.get("periodUnit")
    elif clock or events:
        period, unit = 1.0, "d"
    else:
        return None
    if frequency is None or period is None or period <= 0 or not isinstance(unit, str) or unit not in HOURS:
        return None
    hours = period * HOURS[unit]
    if times is not None and _times_disagree(times, frequency, hours):
        return None
    return frequency * 24.0 / hours


def _daily_times(clock: list[Any], events: list[Any]) -> int | None:
    """How many doses a day the times of day (`timeOfDay`) or daily events (`when`: MORN, EVE,
    HS, ACM) name; None when none are given, or when an event stands for several (C, AC, PC: at,
    before, after meals) or is not a code of FHIR R4's EventTiming."""
    if clock:
        return len(clock)
    if events and all(isinstance(e, str) and e in ONE_A_DAY for e in events):
        return len(events)
    return None


def _times_disagree(times: int, frequency: float, hours: float) -> bool:
    """Whether `times` doses a day at set times (08:00 and 20:00; morning and evening) cannot be the
    `frequency` doses a period of `hours` gives: the doses of a period fall on whole days, each at
    every one of the times, so the period must be whole days and the frequency that many times on
    one to all of its days (3 times of day and twice a day, or times of day every 8 hours, say two
    different things)."""
    days, part = divmod(hours, 24.0)
    dosing_days, left = divmod(frequency, times)
    return part != 0 or left != 0 or not 1 <= dosing_days <= days


def strength(medication: dict[str, Any] | None, dose_units: dict[str, Any]) -> tuple[float, str, str] | None:
    """(amount of drug per dose form, record unit, the form's unit) from the one ingredient of a
    Medication with a strength (Ratio: 100 mg per 1 {capsule}); None when there is not exactly one
    such ingredient or its units are not the map's."""
    found = [as_dict(as_dict(i).get("strength")) for i in as_list(as_dict(medication).get("ingredient"))]
    found = [r for r in found if r]
    if len(found) != 1:
        return None
    top, per = quantity(found[0].get("numerator")), quantity(found[0].get("denominator"))
    if top is None or per is None or top.bound or per.bound or per.value <= 0 or top.unit not in dose_units:
        return None
    rule = dose_units[top.unit]
    return top.value * float(rule["factor"]) / per.value, rule["to"], per.unit


def _one(
    dosage: dict[str, Any], dose_units: dict[str, Any], per_form: tuple[float, str, str] | None = None
) -> tuple[float, str] | None:
    """(amount per day, record unit) of one Dosage, or None."""
    if dosage.get("asNeededBoolean") is True or "asNeededCodeableConcept" in dosage:
        return None
    rates = [as_dict(r) for r in as_list(dosage.get("doseAndRate"))]
    doses = [r.get("doseQuantity") for r in rates if "doseQuantity" in r]
    if len(doses) != 1 or any("doseRange" in r for r in rates):
        return None
    q = quantity(doses[0])
    if q is None or q.bound or q.value < 0:
        return None
    if q.unit in dose_units:
        rule = dose_units[q.unit]
        amount, unit = q.value * float(rule["factor"]), str(rule["to"])
    elif per_form is not None and (q.unit == per_form[2] or {q.unit, per_form[2]} <= COUNT_UNITS):
        amount, unit = q.value * per_form[0], per_form[1]  # 2 capsules of 100 mg: 200 mg
    else:
        return None
    repeat = as_dict(as_dict(dosage.get("timing")).get("repeat"))
    per_day = _per_day(repeat) if repeat else None
    if per_day is None:
        return None
    return amount * per_day, unit


def daily_dose(
    dosages: Any, dose_units: dict[str, Any], medication: dict[str, Any] | None = None
) -> tuple[float, str] | None:
    """Sum of concurrent Dosage instructions as (value, 'mg/day' | 'mg/kg/day'), or None when not
    computable. A dose in tablets or capsules uses the strength of the order's Medication."""
    items = [as_dict(d) for d in as_list(dosages)]
    if not items or len({d.get("sequence") for d in items}) > 1:
        return None
    per_form = strength(medication, dose_units) if medication is not None else None
    parts = [_one(d, dose_units, per_form) for d in items]
    if any(p is None for p in parts) or len({p[1] for p in parts if p}) != 1:
        return None
    total = sum(p[0] for p in parts if p)
    return round(total, 6), parts[0][1]  # type: ignore[index]
