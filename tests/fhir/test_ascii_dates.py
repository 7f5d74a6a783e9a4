"""FHIR dates are written in ASCII digits (R4 date/dateTime regexes use [0-9]): a date written in
fullwidth (１９７９) or Arabic-Indic (١٩٧٩) digits, or with a trailing newline, is no date, though
Python's `\\d`, `$` and int() would read it as one. A partial date whose days fall off the calendar
the reader places ("9999-12") is out of range, not malformed."""

from __future__ import annotations

import pytest
from fhir_helpers import AS_OF, bundle, obs, qty

from fsgs_kb.engine.fhir import FhirMap, convert_bundle
from fsgs_kb.engine.fhir.dates import date_interval, moment
from fsgs_kb.engine.fhir.refs import patient_ref

NOT_ASCII = [
    "１９７９-06-01",
    "１９７９",
    "١٩٧٩-12",
    "1979-06-0１",
    "2024-05-30T08:00:00+0１:00",
    "1979-06-01\n",
    "1979\n",
]


@pytest.mark.parametrize("text", NOT_ASCII, ids=ascii)
def test_a_date_not_in_ascii_digits_is_no_date(text: str) -> None:
    assert moment(text) is None and date_interval(text) is None


def test_a_birth_date_in_fullwidth_digits_gives_no_age(fmap: FhirMap) -> None:
    for birth in ("１９７９-06-01", "１９７９", "١٩٧٩-12"):
        done = convert_bundle(
            bundle(patient={"resourceType": "Patient", "id": "p1", "birthDate": birth}), fmap, as_of=AS_OF
        )
        assert "age_years" not in done.record, birth
        assert "effective" not in done.sources["/age_years"], birth


@pytest.mark.parametrize("when", ["２０２５", "２０２４-05-30"], ids=ascii)
def test_a_result_dated_in_other_digits_is_unreadable_not_imprecise_nor_off_the_calendar(
    fmap: FhirMap, when: str
) -> None:
    done = convert_bundle(bundle(obs("w", "29463-7", qty(70, "kg"), when=when)), fmap, as_of=AS_OF)
    assert [(a.id, a.reason) for a in done.set_aside] == [("w", "date_not_readable")]
    assert "is not a date that can be read" in done.set_aside[0].message


def test_a_partial_date_off_the_calendar_is_out_of_range_not_malformed(fmap: FhirMap) -> None:
    assert date_interval("9999-12") is not None
    done = convert_bundle(bundle(obs("w", "29463-7", qty(70, "kg"), when="9999-12")), fmap, as_of=AS_OF)
    assert [(a.id, a.reason) for a in done.set_aside] == [("w", "date_not_readable")]
    assert "is outside the dates this reader places" in done.set_aside[0].message


def test_a_reference_or_id_with_a_trailing_newline_is_not_read_as_one() -> None:
    """The same `$` fault in the reference patterns: "Patient/p1\\n" was read as Patient/p1."""
    assert patient_ref("Patient/p1") == (None, "Patient/p1")
    assert patient_ref("Patient/p1\n") is None and patient_ref("http://a.org/fhir/Patient/p1\n") is None
