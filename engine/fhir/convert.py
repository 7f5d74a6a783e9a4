"""convert_bundle: one patient's FHIR Bundle -> fsgs-kb patient record, provenance, resources set aside.

For every field of the map, each source is read and the answers combined (outcome.combine); a
field is written only when the answer is one value. The provenance says, for each field's JSON
pointer, which resource filled it or why it stayed empty, so a clinician can see where every value
came from and the engine can say "unknown" instead of guessing; the set-aside list names each
resource that was passed over and why (setaside.py). bundle_to_record is the same conversion
without that list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fsgs_kb.engine.fhir.bundle import read_bundle
from fsgs_kb.engine.fhir.codes import as_dict, as_list
from fsgs_kb.engine.fhir.errors import FhirInputError, field_pointer, pointer_join
from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.fhir.orderlist import combine_list, read_order_list
from fsgs_kb.engine.fhir.outcome import Found, Missing, Outcome, provenance
from fsgs_kb.engine.fhir.patientdata import PatientData
from fsgs_kb.engine.fhir.pick import same_value, scaled
from fsgs_kb.engine.fhir.plausible import check_ranges
from fsgs_kb.engine.fhir.setaside import SetAside
from fsgs_kb.engine.fhir.sources import Context, read_source


def record_id(data: PatientData, fmap: FhirMap) -> tuple[str, dict[str, Any]]:
    """The record id: the identifier in the map's record-id system, else Patient.id. A Patient that
    gives two different values in that system is refused (FhirInputError): which is the record
    id cannot be told, and taking the first would file the decision under an id the EHR may not
    mean. (The values are not quoted: they are identifiers such as an MRN.)"""
    system = fmap.settings["record_id_system"]
    found = [
        (j, ident["value"])
        for j, ident in enumerate(map(as_dict, as_list(data.patient.get("identifier"))))
        if ident.get("system") == system and isinstance(ident.get("value"), str) and ident["value"]
    ]
    values = list(dict.fromkeys(value for _, value in found))
    if len(values) > 1:
        second = next(j for j, value in found if value == values[1])
        entry = data.entry_of(data.patient)
        where = pointer_join("/entry", entry, "resource") if entry is not None else ""
        raise FhirInputError(
            f"the Patient gives {len(values)} different identifiers in the map's record-id system "
            f"{system!r} (record_id_system): which one is the record id cannot be told",
            pointer_join(where, "identifier", second),
            hint="give the Patient one identifier in that system (the map's settings.record_id_system)",
        )
    if values:
        return values[0], {**provenance(data.patient, None, None), "code": f"identifier|{system}"}
    pid = data.patient.get("id")
    if isinstance(pid, str) and pid:
        return pid, {**provenance(data.patient, None, None), "code": "Patient.id"}
    if data.patient_url:  # no id: a transaction Bundle names a new Patient by its entry's fullUrl
        return data.patient_url, {**provenance(data.patient, None, None), "code": "Bundle.entry.fullUrl"}
    raise ValueError("unreachable: read_bundle guarantees an id or fullUrl")  # pragma: no cover


def _read(ctx: Context, path: str, spec: dict[str, Any], src: dict[str, Any]) -> Outcome | None:
    """One source of one field: orders of a list field (orderlist.py), or a reader of sources.py."""
    if src["kind"] == "medication_list":
        return read_order_list(ctx, path, spec, src)
    return read_source(ctx, path, spec, src)


def _harmonise(fmap: FhirMap, outcomes: dict[str, Outcome]) -> None:
    """Give fields that share one unit member (serum creatinine) the unit of the first one found."""
    groups: dict[str, list[str]] = {}
    for path, spec in fmap.fields.items():
        if spec["type"] == "shared_unit":
            groups.setdefault(spec["unit_path"], []).append(path)
    for paths in groups.values():
        found = [p for p in paths if isinstance(outcomes[p], Found)]
        if not found:
            continue
        first = outcomes[found[0]]
        assert isinstance(first, Found)
        unit = first.value[1]
        for p in found[1:]:
            other = outcomes[p]
            assert isinstance(other, Found)
            value, its_unit = other.value
            factor = fmap.cross_factor(its_unit, unit)
            converted = Found((scaled(value, factor), unit), other.prov) if factor is not None else None
            outcomes[p] = converted or Missing("unit_not_convertible")


def _put(record: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = record
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _get(record: dict[str, Any], path: str) -> Any:
    node: Any = record
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _write(record: dict[str, Any], path: str, spec: dict[str, Any], value: Any) -> None:
    if spec["type"] == "quantity":
        _put(record, path, {"value": value[0], "unit": value[1]})
    elif spec["type"] == "shared_unit":
        _put(record, path, value[0])
        _put(record, spec["unit_path"], value[1])
    else:
        _put(record, path, value)


@dataclass(frozen=True)
class Conversion:
    """What converting one Bundle gives: the record, the provenance of every field, and the
    resources set aside (in Bundle order, then field order)."""

    record: dict[str, Any]
    sources: dict[str, Any]
    set_aside: list[SetAside]


def convert_bundle(bundle: Any, fmap: FhirMap, *, as_of: date) -> Conversion:
    """Convert one patient's Bundle (collection, searchset or transaction) into a Conversion.

    Raises FhirInputError when the bundle is not exactly one patient's data. Provenance maps each
    field's JSON pointer to {resourceType, id, code, effective} or {"missing": reason}.
    """
    if isinstance(as_of, datetime):
        as_of = as_of.date()
    data = read_bundle(bundle, fmap)
    ctx = Context(data, fmap, as_of, same_value(fmap))
    rid, rid_prov = record_id(data, fmap)
    record: dict[str, Any] = {"id": rid}
    prov: dict[str, Any] = {"/id": rid_prov}
    outcomes = {
        path: combine_list(spec, spec["sources"], [_read(ctx, path, spec, src) for src in spec["sources"]], ctx.same)
        for path, spec in fmap.fields.items()
    }
    _harmonise(fmap, outcomes)
    check_ranges(fmap, outcomes, data)
    for path, out in outcomes.items():
        if isinstance(out, Found):
            _write(record, path, fmap.fields[path], out.value)
            prov[field_pointer(path)] = out.prov
        else:
            prov[field_pointer(path)] = {"missing": out.reason, **({"orders": list(out.orders)} if out.orders else {})}
    for path, spec in fmap.fields.items():  # a unit the record requires, unless a field wrote one
        unit = spec.get("sets_unit")
        if unit and isinstance(outcomes[path], Found) and _get(record, unit["path"]) is None:
            _put(record, unit["path"], unit["value"])
    return Conversion(record, prov, data.set_aside)


def bundle_to_record(bundle: Any, fmap: FhirMap, *, as_of: date) -> tuple[dict[str, Any], dict[str, Any]]:
    """(record, provenance) of one patient's Bundle: convert_bundle without the set-aside list."""
    done = convert_bundle(bundle, fmap, as_of=as_of)
    return done.record, done.sources
