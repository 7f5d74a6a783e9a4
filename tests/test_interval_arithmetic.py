"""The exact interval arithmetic of a missing derived value (engine/intervals.py `operation_range`)
against its plain `Fraction` formulation, the one it replaced for speed: same ends, same
closedness, same refusals, on generated intervals (ends at 0, negative, equal, open, huge and
tiny, as floats turned exact the way patient values are)."""

from __future__ import annotations

from fractions import Fraction
from fractions import Fraction as F

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fsgs_kb.engine.intervals import UNBOUNDED, Interval
from fsgs_kb.engine.intervals import operation_range as _apply

OPS = ("subtract", "multiply", "divide", "percent_change")


def reference(name: str, a: Interval, b: Interval) -> Interval:
    """`_apply` as it was written with Fractions (the reference)."""
    if None in (a.lo, a.hi, b.lo, b.hi):
        return UNBOUNDED
    if name in ("divide", "percent_change"):
        divisor = b if name == "divide" else a
        assert divisor.lo is not None
        if divisor.lo < 0 or (divisor.lo == 0 and divisor.lo_closed):
            return UNBOUNDED
    values: list[tuple[Fraction | float, bool]] = []
    for x, xc in ((a.lo, a.lo_closed), (a.hi, a.hi_closed)):
        for y, yc in ((b.lo, b.lo_closed), (b.hi, b.hi_closed)):
            assert x is not None and y is not None
            attained = xc and yc
            if name == "subtract":
                values.append((x - y, attained))
            elif name == "multiply":
                values.append((x * y, attained))
            elif name == "divide":
                if y == 0:
                    values.append((float("inf") if x > 0 else float("-inf") if x < 0 else Fraction(0), x == 0 and xc))
                else:
                    values.append((x / y, attained))
            elif x == 0:
                values.append((float("inf") if y > 0 else float("-inf") if y < 0 else Fraction(-100), False))
            else:
                values.append(((y - x) / x * 100, attained))
    low = min(v for v, _ in values)
    high = max(v for v, _ in values)
    return Interval(
        None if low == float("-inf") else Fraction(low),
        any(att for v, att in values if v == low),
        None if high == float("inf") else Fraction(high),
        any(att for v, att in values if v == high),
    )


def outcome(name: str, a: Interval, b: Interval) -> Interval | str:
    try:
        return _apply(name, a, b)
    except OverflowError:
        return "OverflowError"


def expected(name: str, a: Interval, b: Interval) -> Interval | str:
    try:
        return reference(name, a, b)
    except OverflowError:
        return "OverflowError"


numbers = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.1, 5.0, 100.0, 1e-7, 3e16]),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.integers(min_value=-1000, max_value=1000),
).map(Fraction)


@st.composite
def intervals(draw: st.DrawFn) -> Interval:
    if draw(st.integers(0, 19)) == 0:
        return UNBOUNDED
    lo, hi = sorted((draw(numbers), draw(numbers)))
    if draw(st.booleans()):
        hi = lo  # a point: a value the record holds
    return Interval(lo, draw(st.booleans()), hi, draw(st.booleans()))


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(OPS), intervals(), intervals())
@example("divide", Interval(F(10), True, F(2000), True), Interval(F(0), False, F(300), True))  # a dose over a weight
@example("divide", Interval(F(-3), True, F(4), True), Interval(F(0), False, F(1), True))  # both infinities
@example("percent_change", Interval(F(0), False, F(2), True), Interval(F(-1), True, F(1), True))
@example("divide", Interval(F(1), True, F(1), True), Interval(F(0), False, F(0), True))  # only +inf: OverflowError
def test_same_as_the_fraction_formulation(name: str, a: Interval, b: Interval) -> None:
    assert outcome(name, a, b) == expected(name, a, b)


@pytest.mark.parametrize("name", OPS)
def test_ends_are_normalised_fractions(name: str) -> None:
    """Interval ends compare and hash as the reference's (a Fraction in lowest terms)."""
    a = Interval(Fraction(3, 10), True, Fraction(7, 2), False)
    b = Interval(Fraction(1, 4), False, Fraction(9), True)
    got = _apply(name, a, b)
    assert got == reference(name, a, b)
    for end in (got.lo, got.hi):
        assert end is None or (isinstance(end, Fraction) and end == Fraction(end.numerator, end.denominator))
