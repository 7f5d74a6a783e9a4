"""What one Bundle says about its Patient, as the readers see it: the Patient, the clinical
resources about it by type, the Medications by reference, and what was set aside, and why.

bundle.py fills it (read_bundle); every reader of a field reads it, and what each works out of a
resource (its codes, its time, a choice element given twice) is worked out once per bundle here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fsgs_kb.engine.fhir.choices import choice_problem
from fsgs_kb.engine.fhir.codes import Coding, codings
from fsgs_kb.engine.fhir.dates import Moment
from fsgs_kb.engine.fhir.effective import effective_moment
from fsgs_kb.engine.fhir.setaside import SetAside, label


@dataclass
class PatientData:
    """The one Patient of a bundle, its clinical resources by type, and Medications by reference."""

    patient: dict[str, Any]
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    medications: dict[str, dict[str, Any]] = field(default_factory=dict)
    conflicted: set[tuple[str, str]] = field(default_factory=set)
    set_aside: list[SetAside] = field(default_factory=list)
    # the Patient entry's fullUrl: its only name when it has no id (a transaction Bundle's urn:uuid)
    patient_url: str | None = None

    _entry: dict[int, int] = field(default_factory=dict, repr=False)  # id(resource) -> Bundle.entry index
    _aside: set[SetAside] = field(default_factory=set, repr=False)  # what set_aside holds, for O(1) repeats
    _codes: dict[int, list[Coding]] = field(default_factory=dict, repr=False)
    _twice: dict[int, tuple[str, str] | None] = field(default_factory=dict, repr=False)
    _when: dict[int, Moment | None] = field(default_factory=dict, repr=False)

    def is_conflicted(self, resource: dict[str, Any]) -> bool:
        """Whether the bundle gives this resource (by type and id) twice with different content.
        An id that is not text (an object, a list) names no resource, so it cannot be given twice:
        looking it up in the set raised TypeError (unhashable), a fault for what is bad input."""
        rtype, rid = resource.get("resourceType"), resource.get("id")
        return isinstance(rtype, str) and isinstance(rid, str) and (rtype, rid) in self.conflicted

    def of_type(self, rtype: str) -> list[dict[str, Any]]:
        return self.resources.get(rtype, [])

    def find(self, rtype: Any, rid: Any) -> dict[str, Any] | None:
        """The Patient, or the first kept resource of a type with an id (for what is said of it later)."""
        if rtype == "Patient":
            return self.patient
        return next((r for r in self.of_type(str(rtype)) if rid is not None and r.get("id") == rid), None)

    def place(self, resource: dict[str, Any], index: int) -> None:
        """Remember where a resource is in Bundle.entry, so that what is said of it can point there."""
        self._entry[id(resource)] = index

    def entry_of(self, resource: dict[str, Any]) -> int | None:
        """Where a resource is in Bundle.entry (None when not placed)."""
        return self._entry.get(id(resource))

    def put_aside(self, resource: dict[str, Any], reason: str, why: str, field: str | None = None) -> None:
        """Record that a resource was not used, and why (once per resource, reason and field)."""
        rid = resource.get("id")
        item = SetAside(
            resource_type=resource.get("resourceType") if isinstance(resource.get("resourceType"), str) else None,
            id=rid if isinstance(rid, str) else None,
            reason=reason,
            message=f"{label(resource)}: {why}",
            entry=self._entry.get(id(resource)),
            field=field,
        )
        if item not in self._aside:  # a hostile Bundle of 200,000 entries must not cost their square
            self._aside.add(item)
            self.set_aside.append(item)

    def code_of(self, resource: dict[str, Any]) -> list[Coding]:
        """The codings of a resource's `code`, worked out once per bundle (every field asks)."""
        key = id(resource)  # resources live as long as this PatientData
        if key not in self._codes:
            self._codes[key] = codings(resource.get("code"))
        return self._codes[key]

    def choice_of(self, resource: dict[str, Any]) -> tuple[str, str] | None:
        """The first choice element a resource gives in two types, and why in words
        (choices.py), worked out once per bundle."""
        key = id(resource)
        if key not in self._twice:
            self._twice[key] = choice_problem(resource)
        return self._twice[key]

    def when_of(self, resource: dict[str, Any]) -> Moment | None:
        """The effective instant and day of an Observation, worked out once per bundle."""
        key = id(resource)
        if key not in self._when:
            self._when[key] = effective_moment(resource)
        return self._when[key]
