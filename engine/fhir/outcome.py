"""What a source says about one field: a value with its provenance, or why there is none.

Several sources may feed one field (a field Observation and a Condition for the etiology; orders
and a field Observation for cyclosporine status). They are combined by one rule, here: values that
agree are one value; values that disagree are `ambiguous`, never resolved by source order; with no
value, the most telling reason wins, so a unit problem is not hidden behind "no resource".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REASONS = (
    "no_resource",
    "unit_not_convertible",
    "not_a_value",
    "date_not_precise",
    "date_not_readable",
    "out_of_range",
    "dose_not_computable",
    "concurrent_orders",
    "orders_only",
    "ambiguous",
)
_RANK = {reason: i for i, reason in enumerate(REASONS)}


@dataclass(frozen=True)
class Found:
    """A value (a record value, or (value, unit) for unit-carrying fields) and where it came from."""

    value: Any
    prov: dict[str, Any]


@dataclass(frozen=True)
class Missing:
    """No value, and one of REASONS saying why (orders_only: with the orders read)."""

    reason: str
    orders: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.reason not in _RANK:
            raise ValueError(f"unknown missing reason {self.reason!r}")


Outcome = Found | Missing


def worst(reasons: list[str]) -> Missing:
    """The most telling reason among several (ambiguous > orders only > concurrent orders > dose > out of range >
    unreadable date > date without a day > not a value > unit > no resource)."""
    return Missing(max(reasons, key=_RANK.__getitem__) if reasons else "no_resource")


def combine(outcomes: list[Outcome | None], same: Callable[[Any, Any], bool]) -> Outcome:
    """One outcome from several sources: agreeing values merge, disagreeing ones are ambiguous."""
    found = [o for o in outcomes if isinstance(o, Found)]
    if found:
        first = found[0]
        return first if all(same(first.value, o.value) for o in found[1:]) else Missing("ambiguous")
    return worst([o.reason for o in outcomes if isinstance(o, Missing)])


def provenance(resource: dict[str, Any], coding: tuple[str, str] | None, effective: str | None) -> dict[str, Any]:
    """The provenance entry of a filled field: resource type and id, the matched code, the effective time."""
    rid = resource.get("id")
    return {
        "resourceType": resource.get("resourceType"),
        "id": rid if isinstance(rid, str) else None,
        "code": f"{coding[0]}|{coding[1]}" if coding else None,
        "effective": effective,
    }
