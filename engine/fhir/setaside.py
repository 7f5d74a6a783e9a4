"""Resources the conversion did not use, and why: the `set_aside` list of a FHIR result.

`sources` says, per field, which resource filled it or why it stayed empty; it cannot say which
resource was passed over. A resource is set aside when using it would be wrong (a modifier this
reader does not understand, an order not to perform, a record entered in error, a resource about
another patient or another server's patient, a result whose focus says it is about someone or
something else, a resource giving one choice element in two types (valueQuantity and valueString),
a diagnosis that is not confirmed, a result whose status says it is no result yet or at all, such
as `preliminary` or `cancelled`, an order or statement whose status says the drug is not, or not
known to be, given, such as `draft` or `not-taken`, an order whose intent is not to give it, such
as `proposal` or `plan`, an order or statement naming a version of its Medication other than the
one sent, or whose drug cannot be told: both medication[x] given, a Medication reference to none
sent, codes naming two drugs of the map; a Bundle entry that holds no resource) or when its value
cannot be used (a unit the map cannot convert, a value the record cannot hold or that is not a
number, a date that cannot be read or is not given to the day, a dose the instructions do not
give, or one of several current orders of a drug, for its dose: whether they add up is not said).
Each entry names the resource (type, id, and where it is in the input) and says why in words, so
the clinician can find it and have it fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REASONS = (
    "not_a_resource",
    "too_deep",
    "not_this_patient",
    "focus_not_the_patient",
    "modifier",
    "do_not_perform",
    "entered_in_error",
    "duplicate_conflict",
    "not_confirmed",
    "status_not_usable",
    "medication_status_not_usable",
    "medication_intent_not_usable",
    "medication_version_mismatch",
    "medication_not_identified",
    "choice_conflict",
    "unit_not_convertible",
    "not_a_value",
    "date_not_readable",
    "date_not_precise",
    "out_of_range",
    "dose_not_computable",
    "concurrent_orders",
)
TWO_THINGS = "which one it says cannot be told"  # of a resource giving a choice element ([x]) twice
MAX_TEXT = 120  # input text quoted in a message is cut here: a hostile Bundle must not fill the result


@dataclass(frozen=True, kw_only=True)
class SetAside:
    """One resource passed over: what it is, where it is in the input, the field it concerns, why."""

    resource_type: str | None
    id: str | None
    reason: str
    message: str
    entry: int | None = None  # its index in Bundle.entry
    field: str | None = None  # JSON pointer of the field it would have filled

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown set-aside reason {self.reason!r}")

    def to_dict(self) -> dict[str, Any]:
        """The result's form: resourceType, id, entry (JSON pointer into the Bundle), field, reason, message."""
        out: dict[str, Any] = {"resourceType": self.resource_type, "id": self.id}
        if self.entry is not None:
            out["entry"] = f"/entry/{self.entry}"
        if self.field is not None:
            out["field"] = self.field
        out["reason"] = self.reason
        out["message"] = self.message
        return out


def quoted(value: Any) -> str:
    """A value from the input as it may appear in a message: its text, cut to MAX_TEXT characters."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def status_not_read(resource: dict[str, Any], statuses: list[str], kind: str) -> str | None:
    """Why a resource's status keeps it from counting as a `kind` ("result", "order",
    "statement"), in words; None when the map reads its status."""
    status = resource.get("status")
    if isinstance(status, str) and status in statuses:
        return None
    said = "no status" if status is None else f"status {quoted(status)}"
    return f"{said}: not a usable {kind} (the map reads only {', '.join(statuses)} {kind}s)"


def label(resource: dict[str, Any]) -> str:
    """`Observation/w1`, or the type alone when the resource has no id."""
    rid = resource.get("id")
    rtype = quoted(resource.get("resourceType"))
    return f"{rtype}/{quoted(rid)}" if isinstance(rid, str) else rtype


def number_text(value: float) -> str:
    """A number as a message shows it: 70 rather than 70.0."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def json_value(value: Any) -> str:
    """A value from the input as JSON writes it, named by its JSON type when it is not a number:
    '"95" (a string)', 'true (a boolean)', '[1] (an array)'."""
    if isinstance(value, str):
        return f'"{quoted(value)}" (a string)'
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return quoted(value)
    kind = "an array" if isinstance(value, list) else "an object"
    return f"{quoted(value)} ({kind})"


def entry_problem(entry: Any) -> str | None:
    """Why a Bundle entry holds no resource to read, in words (None when it holds one: an object
    with a resourceType)."""
    if not isinstance(entry, dict):
        return f"the entry is {json_value(entry)}, not an object"
    if "resource" not in entry:
        return "the entry has no resource"
    res = entry["resource"]
    if not isinstance(res, dict):
        return f"its resource is {json_value(res)}, not an object"
    kind = res.get("resourceType")
    return None if isinstance(kind, str) else f"its resource has resourceType {json_value(kind)}, not a type name"
