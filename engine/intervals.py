"""Exact interval arithmetic: the range an arithmetic expression of derived values takes over
the ranges of its inputs.

Pure, and below every stage, for its two readers: the exact semantics (engine/evaluate/exact.py:
the possible cells of a derived value whose inputs are missing) and validate
(engine/check/overflow.py: an expression that goes beyond the range of a double for values the
patient schema allows). Bounds are Fractions of the numbers as written (`exact_number`: 1.17 is
117/100), None where a range is unbounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Union

Bound = Union[Fraction, None]  # noqa: UP007 - None is infinite


def exact_number(value: Any) -> Fraction:
    """A number as written (1.17 is 117/100, not the nearest binary fraction)."""
    if isinstance(value, float):
        whole, point, decimals = repr(value).partition(".")
        if point and decimals.isdigit():  # the usual plain decimal: no string parsing in Fraction
            return Fraction(int(whole + decimals), 10 ** len(decimals))
        return Fraction(repr(value))
    return Fraction(value)


@dataclass(frozen=True)
class Interval:
    lo: Bound
    lo_closed: bool
    hi: Bound
    hi_closed: bool

    @staticmethod
    def point(value: Fraction) -> Interval:
        return Interval(value, True, value, True)


UNBOUNDED = Interval(None, False, None, False)


# ---- interval arithmetic (inputs are bounded; a divisor may approach 0 from above) -------------
# Exact, on rationals held as (kind, numerator, denominator) with a positive denominator, kind
# -1/+1 for -inf/+inf and 0 for a number: each corner is one or two integer products, compared
# by cross-multiplying, and only the two ends become Fractions (normalised once). `Fraction`
# arithmetic gave the same values at ~5 µs an operation (an ABC check and a gcd at every step),
# and a record missing its dose paid ~50 µs here (tests/test_interval_arithmetic.py holds the
# Fraction formulation as the reference).
_Q = tuple[int, int, int]
_PLUS_INF: _Q = (1, 1, 0)
_MINUS_INF: _Q = (-1, -1, 0)


def _lt(x: _Q, y: _Q) -> bool:
    if x[0] != y[0]:
        return x[0] < y[0]
    return x[0] == 0 and x[1] * y[2] < y[1] * x[2]


def _eq(x: _Q, y: _Q) -> bool:
    return x[0] == y[0] and (x[0] != 0 or x[1] * y[2] == y[1] * x[2])


def _bound(q: _Q, infinite: int) -> Bound:
    """A rational end as an Interval bound: None for the infinity on its own side."""
    if q[0] == infinite:
        return None
    if q[0]:
        return Fraction(float("inf") * q[0])  # the other infinity: OverflowError, as Fraction(inf)
    return Fraction(q[1], q[2])


def operation_range(name: str, a: Interval, b: Interval) -> Interval:
    """The range of `name` (subtract, multiply, divide, percent_change) over its operands' ranges;
    UNBOUNDED when one is, or when a divisor may be 0 or below."""
    if a.lo is None or a.hi is None or b.lo is None or b.hi is None:
        return UNBOUNDED
    if name in ("divide", "percent_change"):
        divisor = b if name == "divide" else a
        assert divisor.lo is not None
        if divisor.lo.numerator < 0 or (divisor.lo.numerator == 0 and divisor.lo_closed):
            return UNBOUNDED
    values: list[tuple[_Q, bool]] = []
    for x, xc in ((a.lo, a.lo_closed), (a.hi, a.hi_closed)):
        xn, xd = x.numerator, x.denominator
        for y, yc in ((b.lo, b.lo_closed), (b.hi, b.hi_closed)):
            yn, yd = y.numerator, y.denominator
            attained = xc and yc
            if name == "subtract":
                values.append(((0, xn * yd - yn * xd, xd * yd), attained))
            elif name == "multiply":
                values.append(((0, xn * yn, xd * yd), attained))
            elif name == "divide":
                if yn == 0:  # the divisor approaches 0 from above, never reaches it; 0 / anything is 0
                    end = _PLUS_INF if xn > 0 else _MINUS_INF if xn < 0 else (0, 0, 1)
                    values.append((end, xn == 0 and xc))
                elif yn > 0:
                    values.append(((0, xn * yd, xd * yn), attained))
                else:
                    values.append(((0, -xn * yd, -xd * yn), attained))
            elif xn == 0:  # percent_change from 0
                values.append((_PLUS_INF if yn > 0 else _MINUS_INF if yn < 0 else (0, -100, 1), False))
            else:  # percent_change from x to y: (y - x) / x * 100
                n, d = (yn * xd - xn * yd) * xd * 100, yd * xd * xn
                values.append(((0, n, d) if d > 0 else (0, -n, -d), attained))
    low = high = values[0][0]
    for q, _ in values[1:]:
        if _lt(q, low):
            low = q
        if _lt(high, q):
            high = q
    return Interval(
        _bound(low, -1),
        any(att for q, att in values if _eq(q, low)),
        _bound(high, 1),
        any(att for q, att in values if _eq(q, high)),
    )
