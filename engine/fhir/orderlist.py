"""A list field from orders of other drugs (other_immunosuppressants): positive evidence only.

An order says the patient is on a drug (active, on-hold) or was given it (completed); a statement
says the patient takes or took it (any status the map reads, stopped included). A stopped order
says neither: it may have been stopped before the first dose, so it is set aside. No order of a
drug never says the patient did not take it, so a list built from orders alone is a lower bound
of the record's list, whose `[]` means "asked, none". It is written only when it names an item of
the source's `settled_by` (the drugs that decide every rule reading the field, checked by
`validate`); otherwise the field stays empty as `orders_only`, and its source names the orders
read. With a field Observation the stated list is used, and the orders must agree with it; the
source then names them among its `others`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fsgs_kb.engine.fhir.courses import Entry
from fsgs_kb.engine.fhir.errors import field_pointer
from fsgs_kb.engine.fhir.outcome import Found, Missing, Outcome, combine, provenance
from fsgs_kb.engine.fhir.sources import Context, unread

STOPPED_ORDER = (
    "status stopped: an order stopped may have been stopped before any dose was given, so it does not "
    "say the patient took the drug (for a list of drugs taken now or before)"
)


def _counts(entry: Entry) -> bool:
    res = entry.resource
    return not (res.get("resourceType") == "MedicationRequest" and res.get("status") == "stopped")


def _prov(entry: Entry) -> dict[str, Any]:
    return provenance(entry.resource, entry.coding, entry.start_text)


def read_order_list(ctx: Context, path: str, spec: dict[str, Any], src: dict[str, Any]) -> Outcome | None:
    """Items {drug, status} from the orders and statements of the source's drugs, with the
    provenance of the first one used and the rest as `others`; None when none counts. Current when one still runs on
    the evaluation date, past otherwise."""
    item, pointer = spec["item"], field_pointer(path)
    items: list[dict[str, str]] = []
    used: list[dict[str, Any]] = []
    for value, drug in src["drugs"].items():
        c = ctx.drug_courses(drug, pointer)
        for e in c.entries:
            if not _counts(e):
                ctx.data.put_aside(e.resource, "medication_status_not_usable", STOPPED_ORDER, pointer)
        counted = [e for e in c.entries if _counts(e)]
        current = any(e in c.current for e in counted)
        why = unread(c)
        if why is not None and not current:  # an order whose date cannot be read may be current, or past
            return Missing(why)
        if not counted:
            continue
        items.append({item["key"]: value, item["value"]: "current" if current else "past"})
        used += [_prov(e) for e in counted]
    if not items:
        return None
    return Found(items, {**used[0], **({"others": used[1:]} if len(used) > 1 else {})})


def combine_list(
    spec: dict[str, Any], srcs: list[dict[str, Any]], outcomes: list[Outcome | None], same: Callable[[Any, Any], bool]
) -> Outcome:
    """One outcome for a list field fed by a field Observation and orders: the stated list when
    the orders agree with it (each item ordered is in it; else ambiguous); without one, the list
    from orders only when it names an item of `settled_by`, else Missing('orders_only')."""
    ordered_at = [i for i, s in enumerate(srcs) if s["kind"] == "medication_list"]
    if not ordered_at:
        return combine(outcomes, same)
    stated = combine([o for i, o in enumerate(outcomes) if i not in ordered_at], same)
    ordered = [o for i, o in enumerate(outcomes) if i in ordered_at and isinstance(o, Found)]
    orders = [p for o in ordered for p in _named(o.prov)]
    if isinstance(stated, Found):
        if any(item not in stated.value for o in ordered for item in o.value):
            return Missing("ambiguous")
        return Found(stated.value, {**stated.prov, "others": _named(stated.prov)[1:] + orders}) if orders else stated
    unread = [o for i, o in enumerate(outcomes) if i in ordered_at and isinstance(o, Missing)]
    if stated.reason != "no_resource" or unread or not ordered:
        return combine([stated, *unread], same)  # the most telling reason
    key = spec["item"]["key"]
    settled_by = {v for i in ordered_at for v in srcs[i].get("settled_by", [])}
    items = [x for o in ordered for x in o.value]
    if any(x[key] in settled_by for x in items):
        return Found(items, {**orders[0], **({"others": orders[1:]} if len(orders) > 1 else {})})
    return Missing("orders_only", tuple(orders))


def _named(prov: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources a provenance entry names: its own, then its `others`."""
    own = {k: prov.get(k) for k in ("resourceType", "id", "code", "effective")}
    return [own, *prov.get("others", [])]
