"""order-select and order-sign: the draft cyclosporine order becomes the current regimen.

The question at signing is "what if this order is signed?", so the knowledge base is asked about
the regimen the draft describes: its dose, and its start. The draft (status `draft`, which the
map never counts) is evaluated as an active order of the patient. Orders of the drug that are
current in the EHR's data are what the draft replaces: each is taken to end the second before the
draft starts, so the course joins up (a renewal keeps its months on therapy, and the baseline
creatinine stays the one before the course began) while the dose is the draft's alone. A draft
that starts in the future is evaluated as if it started today. Whether a draft is cyclosporine is
decided by the FHIR map's own medication codes and exclusions (ophthalmic products are not),
before and whatever the reader would set the draft aside for (a modifier, doNotPerform), with the
Medications the request holds (draft orders' Bundle, prefetch) or the service fetched from the
EHR's FHIR server (service/fhirfetch.py) to resolve a medicationReference; a draft whose drug
cannot be told may be cyclosporine and is set aside with that reason.

A cyclosporine draft is evaluated only when it can be the order being signed; otherwise it is set
aside with its reason, as the FHIR reader sets aside what it does not use (and is named on the
cards and in the log row): a draft whose subject is another patient (never re-pointed to the
context's patient; one without a subject is the context patient's), one the reader itself would
not use (entered in error, a modifier, do-not-perform), one whose status is not `draft` or
`active` (a `cancelled` or `completed` draft is no order to sign), one whose intent the map does
not read as an order (`proposal`, `plan`: the map's `medication_request.intents`) and one with a
date its period is read from that cannot be read (`date_not_readable`: a boundsPeriod start of
2023-02-30 is neither today nor another day), or that gives a choice element in two types
(`choice_conflict`: a doseQuantity and a doseRange say two doses).
"""

from __future__ import annotations

import copy
import json
from datetime import date, datetime, timedelta
from typing import Any

from fsgs_kb.engine.fhir import FhirMap
from fsgs_kb.engine.fhir.bundle import read_bundle
from fsgs_kb.engine.fhir.codes import as_dict
from fsgs_kb.engine.fhir.courses import analyse, entries_for, intent_problem, period_problem, scan
from fsgs_kb.engine.fhir.dates import Moment, day_start, format_instant, moment
from fsgs_kb.engine.fhir.effective import reversed_period
from fsgs_kb.engine.fhir.records import located
from fsgs_kb.engine.fhir.setaside import TWO_THINGS, status_not_read
from fsgs_kb.service.prefetch import RequestProblem, bundle_of, origin_key

DRUG = "cyclosporine"
DRAFT_STATUSES = ["draft", "active"]  # what an order being selected or signed can carry
STATUS_FIELD = "/cyclosporine/status"  # where the reader lists orders passed over for their status
UNTOLD = ("medication_not_identified", "medication_version_mismatch")  # the reader cannot tell the drug
ENDS_BEFORE_START = "date_not_readable"  # as the FHIR reader sets aside a Period ending before it starts (per-1)


def _draft_resources(context: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where in the request, resource) of each draft MedicationRequest (the selected ones, when
    order-select names a selection)."""
    drafts = context.get("draftOrders")
    if not isinstance(drafts, dict) or drafts.get("resourceType") != "Bundle":
        raise RequestProblem(400, "context.draftOrders must be a FHIR Bundle")
    entries = drafts.get("entry", [])
    if not isinstance(entries, list):
        raise RequestProblem(400, f"context.draftOrders.entry must be a list, not {_kind(entries)}")
    orders = []
    for i, entry in enumerate(entries):
        where = f"context.draftOrders.entry[{i}]"
        if not isinstance(entry, dict):
            raise RequestProblem(400, f"{where} must be an object (a Bundle entry), not {_kind(entry)}")
        res = entry.get("resource")
        if not isinstance(res, dict):
            raise RequestProblem(400, f"{where}.resource must be a FHIR resource (an object), not {_kind(res)}")
        if not isinstance(res.get("resourceType"), str):
            raise RequestProblem(
                400, f"{where}.resource.resourceType must be text, not {_kind(res.get('resourceType'))}"
            )
        if res["resourceType"] == "MedicationRequest":
            orders.append((f"/context/draftOrders/entry/{i}", res))
    selections = context.get("selections")
    if selections is not None and not isinstance(selections, list):
        raise RequestProblem(400, f"context.selections must be a list of references, not {_kind(selections)}")
    for i, chosen in enumerate(selections or []):
        if not isinstance(chosen, str) or not chosen:
            raise RequestProblem(
                400, f"context.selections[{i}] must be a reference such as MedicationRequest/<id>, not {_kind(chosen)}"
            )
    if selections:
        orders = [(o, r) for o, r in orders if f"MedicationRequest/{r.get('id')}" in selections]
    return orders


def _kind(value: Any) -> str:
    """What a JSON value is, for a message (never its content: it may be large or a patient's)."""
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}
    if isinstance(value, str) and not value:
        return "empty text"
    return names.get(type(value), "a number")


def _conflicting(orders: list[tuple[str, dict[str, Any]]]) -> tuple[set[int], set[int]]:
    """The indexes of draft orders that share their id with another draft of different content (as
    the FHIR reader's duplicate_conflict: which one is the order is not said), and of those that
    repeat an earlier draft exactly (one order sent again: checked once)."""
    seen: dict[str, list[int]] = {}
    for i, (_, res) in enumerate(orders):
        if isinstance(res.get("id"), str):
            seen.setdefault(res["id"], []).append(i)
    conflicting: set[int] = set()
    repeated: set[int] = set()
    for indexes in seen.values():
        texts = {json.dumps(orders[i][1], sort_keys=True) for i in indexes}
        (conflicting if len(texts) > 1 else repeated).update(indexes if len(texts) > 1 else indexes[1:])
    return conflicting, repeated


def draft_origins(context: dict[str, Any]) -> dict[tuple[str, str], str]:
    """Where each draft order is in the request (`/context/draftOrders/entry/<i>`), by type and id."""
    entries = as_dict(context.get("draftOrders")).get("entry")
    out: dict[tuple[str, str], str] = {}
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        key = origin_key(as_dict(as_dict(entry).get("resource")))
        if key is not None:
            out.setdefault(key, f"/context/draftOrders/entry/{i}")
    return out


def _dosages(res: dict[str, Any]) -> list[dict[str, Any]]:
    items = res.get("dosageInstruction")
    return [d for d in items if isinstance(d, dict)] if isinstance(items, list) else []


def _bounds(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for dosage in _dosages(res):
        timing = dosage.get("timing")
        repeat = timing.get("repeat") if isinstance(timing, dict) else None
        if isinstance(repeat, dict) and isinstance(repeat.get("boundsPeriod"), dict):
            out.append(repeat["boundsPeriod"])
    return out


def period_reversed(res: dict[str, Any]) -> str | None:
    """Why an order's period cannot be read as a time it runs (a boundsPeriod or the validityPeriod
    that ends before it starts, FHIR R4 invariant per-1), in the FHIR reader's words; None
    otherwise. Unlike the reader, which reads the validityPeriod only where no boundsPeriod gives
    that end, a draft's validityPeriod is checked too: it is the order being signed."""
    named = [("dosageInstruction.timing.repeat.boundsPeriod", b) for b in _bounds(res)]
    validity = as_dict(res.get("dispenseRequest")).get("validityPeriod")
    named += [("dispenseRequest.validityPeriod", validity)] if isinstance(validity, dict) else []
    why = next((w for w in (reversed_period(name, period) for name, period in named) if w), None)
    return None if why is None else f"its {why}: when the order runs cannot be told"


def order_start(res: dict[str, Any]) -> Moment | None:
    """When an order's regimen starts (instant and written day), read as the map's course logic reads it."""
    starts = [s for s in (moment(b.get("start")) for b in _bounds(res)) if s]
    if starts:
        return min(starts)
    validity = as_dict(as_dict(res.get("dispenseRequest")).get("validityPeriod"))
    return moment(validity.get("start")) or moment(res.get("authoredOn"))


def _as_current(res: dict[str, Any], patient_id: str, as_of: date) -> dict[str, Any]:
    order = copy.deepcopy(res)
    order.update(status="active", intent="order", subject={"reference": f"Patient/{patient_id}"})
    start = order_start(order)
    if start is None or start.day > as_of:
        today = format_instant(day_start(as_of))
        for bounds in _bounds(order):
            bounds["start"] = today
        order["authoredOn"] = today
        validity = as_dict(order.get("dispenseRequest")).get("validityPeriod")
        if isinstance(validity, dict) and "start" in validity:
            validity["start"] = today
    return order


def _ended(res: dict[str, Any], end: datetime) -> dict[str, Any]:
    """A copy of a current order or statement that ends at `end` (it is replaced by the draft)."""
    out = copy.deepcopy(res)
    out["status"] = "stopped"
    stamp = format_instant(end)
    if out["resourceType"] == "MedicationStatement":
        period = out.get("effectivePeriod")
        period = period if isinstance(period, dict) else {}
        start = period.get("start") or out.pop("effectiveDateTime", None)
        out["effectivePeriod"] = {**({"start": start} if start else {}), "end": stamp}
        return out
    bounds = _bounds(out)
    for b in bounds:
        b["end"] = stamp
    if not bounds:
        request = as_dict(out.get("dispenseRequest"))
        out["dispenseRequest"] = request
        request["validityPeriod"] = {**as_dict(request.get("validityPeriod")), "end": stamp}
    return out


def _medications_in(value: Any) -> list[dict[str, Any]]:
    """The Medication resources a Bundle (or a single resource) holds, read leniently: a shape the
    request check refuses is refused there, not here."""
    value = as_dict(value)
    if value.get("resourceType") == "Medication":
        return [value]
    entries = value.get("entry") if value.get("resourceType") == "Bundle" else None
    found = [as_dict(as_dict(e).get("resource")) for e in entries] if isinstance(entries, list) else []
    return [r for r in found if r.get("resourceType") == "Medication"]


def draft_medications(context: dict[str, Any]) -> list[dict[str, Any]]:
    """The Medications the draft orders' Bundle holds (an order may name its drug by a
    medicationReference to one of them): read with the drafts, so the drug is told."""
    return _medications_in(context.get("draftOrders"))


def extra_medications(
    entries: list[dict[str, Any]], context: dict[str, Any], fetched: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Entries of the draft orders' Medications, and of those `fetched` from the FHIR server, that
    the prefetch did not bring (by type and id), read with the drafts so an order naming one by
    medicationReference is read as that drug."""
    have = {origin_key(e["resource"]) for e in entries}
    out = []
    for entry in [{"resource": m} for m in draft_medications(context)] + list(fetched or []):
        key = origin_key(entry["resource"])
        if key is None or key not in have:
            out.append(entry)
        if key is not None:
            have.add(key)
    return out


def request_medications(context: dict[str, Any], prefetch: Any) -> list[dict[str, Any]]:
    """The Medications sent in the request, in the draft orders' Bundle and in the prefetch (the
    `*-by-medication` templates' `_include`), by which a draft's medicationReference is resolved
    before it is known whether it is cyclosporine."""
    given = prefetch.values() if isinstance(prefetch, dict) else []
    return draft_medications(context) + [m for value in given for m in _medications_in(value)]


def _medication_entries(value: Any) -> list[dict[str, Any]]:
    """The entries of a prefetch value that hold a Medication, with their fullUrl (an absolute
    medicationReference is resolved by it)."""
    value = as_dict(value)
    entries = value.get("entry") if value.get("resourceType") == "Bundle" else None
    found = [as_dict(e) for e in entries] if isinstance(entries, list) else []
    return [
        {"fullUrl": e["fullUrl"], "resource": e["resource"]}
        for e in found
        if as_dict(e.get("resource")).get("resourceType") == "Medication" and isinstance(e.get("fullUrl"), str)
    ]


def cyclosporine_drafts(
    context: dict[str, Any],
    fmap: FhirMap,
    patient_id: str,
    as_of: date,
    prefetch: Any = None,
    fetched: list[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The draft orders (selected ones, for order-select) that are cyclosporine: those that can be
    the order being signed, each made an active order of the patient, and the set-aside entries
    (with `origin` in the request) of those that cannot. A draft whose drug cannot be told (a
    medicationReference to no Medication sent nor `fetched` from the FHIR server, codes of two
    drugs the map tells apart) may be cyclosporine: it is set aside with that reason, so it is
    named rather than passed over."""
    patient = {"resource": {"resourceType": "Patient", "id": patient_id}}
    given = prefetch.values() if isinstance(prefetch, dict) else []
    by_url = [e for value in given for e in _medication_entries(value)]  # absolute references find these
    medications = [{"resource": m} for m in request_medications(context, prefetch)] + by_url + list(fetched or [])
    orders = _draft_resources(context)
    conflicting, repeated = _conflicting(orders)
    usable, aside = [], []
    for i, (origin, original) in enumerate(orders):
        probe = _as_current(original, patient_id, as_of)
        if i in repeated:
            continue
        told = _is_drug(probe, patient, medications, fmap, as_of)
        if told is False:
            continue
        if told is not True:  # the drug cannot be told: it may be this drug
            aside.append(located({**told, "entry": "/entry/1"}, ("", origin)))
            continue
        if i in conflicting:
            why: dict[str, Any] | None = _aside_entry(
                original,
                patient,
                fmap,
                "duplicate_conflict",
                "appears twice among the draft orders with different content; "
                "which one is the order to sign is not said",
            )
        else:
            why = _not_signable(original, patient, medications, fmap)
        if why is None:
            usable.append(probe)
        else:
            aside.append(located(why, ("", origin)))
    return usable, aside


def _is_drug(
    probe: dict[str, Any], patient: dict[str, Any], medications: list[dict[str, Any]], fmap: FhirMap, as_of: date
) -> bool | dict[str, Any]:
    """Whether a draft (made an active order of the patient) is cyclosporine to the FHIR map, one
    passed over for an unreadable date included; or, when which drug it is cannot be told, the
    reader's set-aside entry saying why. Which drug an order is does not depend on what would set
    it aside once known (a modifierExtension, doNotPerform): those are left out of the probe, so
    such a draft is recognised, then set aside by `_not_signable` with the reader's reason."""
    probe = {k: v for k, v in probe.items() if k not in ("modifierExtension", "doNotPerform")}
    data = read_bundle(bundle_of([patient, *medications, {"resource": probe}]), fmap)
    at = len(medications) + 1  # the probe's entry
    unknown = next((a for a in data.set_aside if a.entry == at and a.reason in UNTOLD), None)
    if unknown is not None:
        return unknown.to_dict()
    entries, passed = scan(DRUG, data, fmap, as_of)
    return any(e.resource is probe for e in entries) or any(res is probe for res, _, _ in passed)


def _aside_entry(
    draft: dict[str, Any], patient: dict[str, Any], fmap: FhirMap, reason: str, why: str
) -> dict[str, Any]:
    """A set-aside entry (entry 1 of a Bundle of the patient and the draft) for a draft not used."""
    data = read_bundle(bundle_of([patient]), fmap)
    data.put_aside(draft, reason, why, STATUS_FIELD)
    return {**data.set_aside[0].to_dict(), "entry": "/entry/1"}


def _not_signable(
    original: dict[str, Any], patient: dict[str, Any], medications: list[dict[str, Any]], fmap: FhirMap
) -> dict[str, Any] | None:
    """Why a cyclosporine draft cannot be the order signed (a set-aside entry), or None. The FHIR
    reader's own checks first (another patient, entered in error, a modifier, do-not-perform), on
    the draft as sent: its subject is never replaced (only given when it has none)."""
    draft = (
        original
        if original.get("subject") is not None
        else {**original, "subject": {"reference": f"Patient/{patient['resource']['id']}"}}
    )
    data = read_bundle(bundle_of([patient, *medications, {"resource": draft}]), fmap)
    if data.set_aside:
        return {**data.set_aside[0].to_dict(), "entry": "/entry/1"}
    reason, why = "medication_status_not_usable", status_not_read(draft, DRAFT_STATUSES, "draft order")
    if why is None:  # the FHIR reader's own intent check and reason
        reason, why = (
            "medication_intent_not_usable",
            intent_problem(draft, fmap.settings["medication_request"]["intents"]),
        )
    if why is None:  # the FHIR reader's own date check: when would it run?
        reason, why = "date_not_readable", period_problem(draft)
    if why is None:  # a period that ends before it starts (FHIR per-1): made current, it would not be
        reason, why = ENDS_BEFORE_START, period_reversed(draft)
    if why is None and (twice := data.choice_of(draft)) is not None:  # the reader's own: it says two things
        reason, why = "choice_conflict", f"{twice[1]}: {TWO_THINGS}"
    if why is None:
        return None
    data.put_aside(draft, reason, why, STATUS_FIELD)
    return data.set_aside[0].to_dict()


def _renamed_apart(
    entries: list[dict[str, Any]], drafts: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The history entries with each order that shares its id with a draft given an id of its own
    (a revision of an order often keeps the order's id; read as one resource twice, the reader would
    set both aside as a duplicate_conflict), and the ids given (new id: the order's id)."""
    draft_ids = {d.get("id") for d in drafts if isinstance(d.get("id"), str)}
    taken = {e["resource"]["id"] for e in entries if isinstance(e["resource"].get("id"), str)} | draft_ids
    renamed: dict[str, str] = {}
    out = []
    for entry in entries:
        res = entry["resource"]
        rid = res.get("id")
        if res.get("resourceType") == "MedicationRequest" and isinstance(rid, str) and rid in draft_ids:
            new = next((n for n, o in renamed.items() if o == rid), None)  # one order sent twice: one id
            if new is None:
                new = f"{rid}-before-draft"
                while new in taken:
                    new += "-"
                taken.add(new)
                renamed[new] = rid
            entry = {**entry, "resource": {**res, "id": new}}
        out.append(entry)
    return out, renamed


def draft_regimen(
    drafts: list[dict[str, Any]], entries: list[dict[str, Any]], fmap: FhirMap, as_of: date
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The bundle entries with the draft cyclosporine order(s) as the current regimen, and the ids
    given to orders that share their id with a draft (`restore_ids` puts them back). An order the
    draft revises under its own id is replaced like any other: it stays in the course and ends the
    second before the draft starts."""
    patient = entries[0]
    start = min(s for s in (order_start(d) for d in drafts) if s is not None).at
    kept, renamed = _renamed_apart(entries[1:], drafts)
    history = read_bundle(bundle_of([patient, *kept]), fmap)
    current = analyse(entries_for(DRUG, history, fmap, as_of), fmap.medications[DRUG]["course_max_gap_days"], as_of)
    replaced = {id(e.resource) for e in current.current}
    end = start - timedelta(seconds=1)
    kept = [{**e, "resource": _ended(e["resource"], end)} if id(e["resource"]) in replaced else e for e in kept]
    return [patient, *kept, *({"resource": d} for d in drafts)], renamed


def restore_ids(value: Any, renamed: dict[str, str]) -> Any:
    """`value` (sources, set-aside entries) with the orders `draft_regimen` renamed under their own ids."""
    if isinstance(value, list):
        return [restore_ids(v, renamed) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: restore_ids(v, renamed) for k, v in value.items()}
    # an id that is not text (an object, a list) was never renamed, and cannot be looked up
    if out.get("resourceType") == "MedicationRequest" and isinstance(out.get("id"), str) and out["id"] in renamed:
        out["id"] = renamed[out["id"]]
    return out


def signed_record(record: dict[str, Any], prov: dict[str, Any], drafts: list[dict[str, Any]]) -> None:
    """The record as it will be once the draft is signed: cyclosporine is `current`, its regimen
    the draft's. A status recorded otherwise (`never` before a first course, `stopped` before a
    restart) and the stop reason of a past course describe the record before the order, and kept
    beside a current regimen they would make it contradict itself (invalid) or leave every
    cyclosporine rule undetermined."""
    csa = record.get("cyclosporine")
    csa = csa if isinstance(csa, dict) else {}
    record["cyclosporine"] = csa
    csa["status"] = "current"
    draft = drafts[0]
    prov["/cyclosporine/status"] = {
        "resourceType": "MedicationRequest",
        "id": draft.get("id"),
        "note": "the draft order being signed",
    }
    if csa.pop("stop_reason", None) is not None:
        prov["/cyclosporine/stop_reason"] = {"missing": "the draft order restarts cyclosporine"}
