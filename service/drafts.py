"""order-select and order-sign: the draft cyclosporine order becomes the current regimen.

The question at signing is "what if this order is signed?", so the knowledge base is asked about
the regimen the draft describes: its dose, and its start. The draft (status `draft`, which the
map never counts) is evaluated as an active order of the patient. Orders of the drug that are
current in the EHR's data are what the draft replaces: each is taken to end the second before the
draft starts, so the course joins up (a renewal keeps its months on therapy, and the baseline
creatinine stays the one before the course began) while the dose is the draft's alone. A draft
that starts in the future is evaluated as if it started today. Whether a draft is cyclosporine is
decided by the FHIR map's own medication codes and exclusions (ophthalmic products are not).

A cyclosporine draft is evaluated only when it can be the order being signed; otherwise it is set
aside with its reason, as the FHIR reader sets aside what it does not use (and is named on the
cards and in the log row): a draft whose subject is another patient (never re-pointed to the
context's patient; one without a subject is the context patient's), one the reader itself would
not use (entered in error, a modifier, do-not-perform), one whose status is not `draft` or
`active` (a `cancelled` or `completed` draft is no order to sign), one whose intent the map does
not read as an order (`proposal`, `plan`: the map's `medication_request.intents`) and one with a
date its period is read from that cannot be read (`date_not_readable`: a boundsPeriod start of
2023-02-30 is neither today nor another day).
"""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta
from typing import Any

from fsgs_kb.engine.fhir import FhirMap
from fsgs_kb.engine.fhir.bundle import read_bundle
from fsgs_kb.engine.fhir.codes import as_dict
from fsgs_kb.engine.fhir.courses import analyse, entries_for, intent_problem, period_problem, scan
from fsgs_kb.engine.fhir.dates import Moment, day_start, format_instant, moment
from fsgs_kb.engine.fhir.records import located
from fsgs_kb.engine.fhir.setaside import status_not_read
from fsgs_kb.service.prefetch import RequestProblem, bundle_of, origin_key

DRUG = "cyclosporine"
DRAFT_STATUSES = ["draft", "active"]  # what an order being selected or signed can carry
STATUS_FIELD = "/cyclosporine/status"  # where the reader lists orders passed over for their status


def _draft_resources(context: dict[str, Any]) -> list[dict[str, Any]]:
    drafts = context.get("draftOrders")
    if not isinstance(drafts, dict) or drafts.get("resourceType") != "Bundle":
        raise RequestProblem(400, "context.draftOrders must be a FHIR Bundle")
    entries = drafts.get("entry", [])
    resources = [e.get("resource") for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    orders = [r for r in resources if isinstance(r, dict) and r.get("resourceType") == "MedicationRequest"]
    selections = context.get("selections")
    if isinstance(selections, list) and selections:
        orders = [r for r in orders if f"MedicationRequest/{r.get('id')}" in selections]
    return orders


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


def cyclosporine_drafts(
    context: dict[str, Any], fmap: FhirMap, patient_id: str, as_of: date
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The draft orders (selected ones, for order-select) that are cyclosporine: those that can be
    the order being signed, each made an active order of the patient, and the set-aside entries
    (with `origin` in the request) of those that cannot."""
    limits = fmap.settings["limits"]
    patient = {"resource": {"resourceType": "Patient", "id": patient_id}}
    originals = _draft_resources(context)
    probes = [_as_current(r, patient_id, as_of) for r in originals]  # is it cyclosporine, whatever its state
    bundle = bundle_of([patient, *({"resource": p} for p in probes)])
    data = read_bundle(bundle, limits["max_bundle_entries"], limits["max_json_depth"])
    entries, passed = scan(DRUG, data, fmap, as_of)  # one passed over (an unreadable date) is cyclosporine too
    found = {id(e.resource) for e in entries} | {id(res) for res, _, _ in passed}
    origins = draft_origins(context)
    usable, aside = [], []
    for original, probe in zip(originals, probes, strict=True):
        if id(probe) not in found:
            continue
        why = _not_signable(original, patient, fmap)
        if why is None:
            usable.append(probe)
        else:
            aside.append(located(why, ("", origins.get(origin_key(original) or ("", ""), ""))))
    return usable, aside


def _not_signable(original: dict[str, Any], patient: dict[str, Any], fmap: FhirMap) -> dict[str, Any] | None:
    """Why a cyclosporine draft cannot be the order signed (a set-aside entry), or None. The FHIR
    reader's own checks first (another patient, entered in error, a modifier, do-not-perform), on
    the draft as sent: its subject is never replaced (only given when it has none)."""
    limits = fmap.settings["limits"]
    draft = (
        original
        if original.get("subject") is not None
        else {**original, "subject": {"reference": f"Patient/{patient['resource']['id']}"}}
    )
    data = read_bundle(
        bundle_of([patient, {"resource": draft}]), limits["max_bundle_entries"], limits["max_json_depth"]
    )
    if data.set_aside:
        return data.set_aside[0].to_dict()
    reason, why = "medication_status_not_usable", status_not_read(draft, DRAFT_STATUSES, "draft order")
    if why is None:  # the FHIR reader's own intent check and reason
        reason, why = (
            "medication_intent_not_usable",
            intent_problem(draft, fmap.settings["medication_request"]["intents"]),
        )
    if why is None:  # the FHIR reader's own date check: when would it run?
        reason, why = "date_not_readable", period_problem(draft)
    if why is None:
        return None
    data.put_aside(draft, reason, why, STATUS_FIELD)
    return data.set_aside[0].to_dict()


def draft_regimen(
    drafts: list[dict[str, Any]], entries: list[dict[str, Any]], fmap: FhirMap, as_of: date
) -> list[dict[str, Any]]:
    """The bundle entries with the draft cyclosporine order(s) as the current regimen."""
    patient = entries[0]
    limits = fmap.settings["limits"]
    start = min(s for s in (order_start(d) for d in drafts) if s is not None).at
    draft_ids = {("MedicationRequest", d.get("id")) for d in drafts}
    kept = [e for e in entries[1:] if (e["resource"].get("resourceType"), e["resource"].get("id")) not in draft_ids]
    history = read_bundle(bundle_of([patient, *kept]), limits["max_bundle_entries"], limits["max_json_depth"])
    current = analyse(entries_for(DRUG, history, fmap, as_of), fmap.medications[DRUG]["course_max_gap_days"], as_of)
    replaced = {id(e.resource) for e in current.current}
    end = start - timedelta(seconds=1)
    kept = [{**e, "resource": _ended(e["resource"], end)} if id(e["resource"]) in replaced else e for e in kept]
    return [patient, *kept, *({"resource": d} for d in drafts)]


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
