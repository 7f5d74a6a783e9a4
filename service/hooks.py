"""The CDS Hooks services: discovery, a hook call, feedback. No web framework here.

A hook call: check the request's shape (hook, hookInstance, context), gather the prefetch into one
Bundle (412 when a key is missing and the EHR gave no FHIR access), for order hooks make the draft
cyclosporine order the current regimen, convert through the FHIR map, evaluate, make the cards,
write the decision log row. The resources the conversion did not use (`set_aside`) are named by
where they are in the request (`origin`, a JSON pointer such as `/prefetch/<key>/entry/2`), shown
on the cards and kept in the log row's result. Every answer is a `Reply` (status, JSON body); errors are
OperationOutcome-shaped, naming what is wrong.
"""

from __future__ import annotations

import calendar
import json
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from fsgs_kb.engine.fhir import FhirInputError, FhirMap, convert_bundle
from fsgs_kb.engine.fhir.codes import within_depth
from fsgs_kb.engine.fhir.dates import today
from fsgs_kb.engine.fhir.records import located
from fsgs_kb.engine.fhir.refs import MAX_URL, PATIENT_ID
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.load.fingerprint import decision_id, input_sha256
from fsgs_kb.service.cards import CardMaker
from fsgs_kb.service.config import ServiceConfig
from fsgs_kb.service.decisionlog import MAX_REASON, DecisionLog, FeedbackRefused, patient_origin
from fsgs_kb.service.drafts import (
    DRUG,
    cyclosporine_drafts,
    draft_origins,
    draft_regimen,
    extra_medications,
    restore_ids,
    signed_record,
)
from fsgs_kb.service.fhirfetch import Fetched, explain_unfetched
from fsgs_kb.service.prefetch import RequestProblem, Templates, about_someone_else, bundle_of, collect, origin_key

log = logging.getLogger("fsgs_kb.service")

ORDER_HOOKS = ("order-select", "order-sign")
BODY_DEPTH_MARGIN = 8  # request → prefetch → Bundle → entry levels above the map's per-resource limit
OUTCOMES = ("accepted", "overridden")
MAX_USER_COMMENT = 4000  # characters of an override's userComment (README, CDS: feedback)
# FHIR R4 `instant` (ASCII digits; fullmatch, so no trailing newline): hours 00-23, minutes and
# zone minutes 00-59, second 60 for a leap second, any number of fraction digits (R4's `\.[0-9]+`),
# a zone from -14:00 to +14:00. Whether the date exists and a second 60 can be a leap second is
# checked after (`_instant_problem`).
INSTANT = re.compile(
    r"(?P<date>[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]))"
    r"T(?P<time>([01][0-9]|2[0-3]):[0-5][0-9]):(?P<second>[0-5][0-9]|60)(\.[0-9]+)?"
    r"(?P<zone>Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
# CDS Hooks 2.0: hookInstance is "a universally unique identifier (UUID)", the canonical text form
UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# context.patientId is "the FHIR Patient.id" (CDS Hooks 2.0), whose type is FHIR R4's `id`, read as
# a Bulk Data export's Patient ids are (refs.PATIENT_ID: an underscore is taken too)


USAGE = (
    "Prefetch every key; the *-by-medication keys (orders and statements naming their drug by a Medication "
    "reference, with those Medications) are optional."
)
USAGE_FETCHING = (  # fetch_medications: true (off by default: the service then queries nothing itself)
    USAGE + " With fhirServer and fhirAuthorization, the service reads from the FHIR server only a Medication an "
    "order names that the request does not include (GET [fhirServer]/Medication/[id]: a Medication read scope)."
)


@dataclass(frozen=True)
class HookService:
    id: str
    hook: str
    title: str
    description: str


SERVICES = (
    HookService(
        "fsgs-csa-patient-view",
        "patient-view",
        "Cyclosporine in idiopathic FSGS: chart review",
        "Checks the patient's cyclosporine regimen and monitoring against the review's provisos, and says "
        "which values are missing to decide.",
    ),
    HookService(
        "fsgs-csa-order-select",
        "order-select",
        "Cyclosporine in idiopathic FSGS: selected order",
        "Checks a selected draft cyclosporine order (dose, start) against the review's provisos.",
    ),
    HookService(
        "fsgs-csa-order-sign",
        "order-sign",
        "Cyclosporine in idiopathic FSGS: order signing",
        "Checks a draft cyclosporine order (dose, start) against the review's provisos before it is signed.",
    ),
)


@dataclass
class Reply:
    status: int
    body: dict[str, Any]


def outcome(status: int, message: str, code: str = "invalid") -> Reply:
    """An OperationOutcome-style error answer."""
    issue = {"severity": "error", "code": code, "diagnostics": message}
    return Reply(status, {"resourceType": "OperationOutcome", "issue": [issue]})


class Hooks:
    """Everything one worker needs to answer hook calls, built once at start-up."""

    def __init__(self, config: ServiceConfig, kb: KnowledgeBase, fmap: FhirMap, decisions: DecisionLog) -> None:
        self.config = config
        self.kb = kb
        self.fmap = fmap
        self.decisions = decisions
        self.kb_record = {"id": kb.id, "version": kb.version, "fingerprint": kb.fingerprint}
        self.templates = Templates(fmap, [f.path for f in kb.evaluation.fields])
        self.cards = CardMaker(kb, fmap, self.templates, config.allow_drafts, config.handbook_url)
        self.services = {s.id: s for s in SERVICES}
        self.max_depth = int(fmap.settings["limits"]["max_json_depth"]) + BODY_DEPTH_MARGIN
        self.note = self._drafts_note()

    def _drafts_note(self) -> str | None:
        if self.config.allow_drafts:
            return None
        active = len(self.kb.model.rules) - len(self.kb.unapproved)
        if active:
            return f"Only the {active} signed-off rules are served; {len(self.kb.unapproved)} draft rules are not."
        return (
            f"allow_drafts is false and all {len(self.kb.unapproved)} rules of {self.kb.id} {self.kb.version} are "
            "drafts (not signed off): this service returns no advice cards."
        )

    # ---- discovery ------------------------------------------------------------------------------
    def discovery(self) -> dict[str, Any]:
        prefetch = self.templates.prefetch()
        suffix = f" {self.note}" if self.note else ""
        return {
            "services": [
                {
                    "hook": s.hook,
                    "id": s.id,
                    "title": s.title,
                    "description": s.description + suffix,
                    "prefetch": dict(prefetch),
                    "usageRequirements": USAGE_FETCHING if self.config.fetch_medications else USAGE,
                }
                for s in SERVICES
            ]
        }

    # ---- a hook call ----------------------------------------------------------------------------
    def call(self, service_id: str, body: Any, fetched: Fetched | None = None) -> Reply:
        """A hook call's answer. `fetched`: the Medications its orders name that the service read
        from the EHR's FHIR server (service/fhirfetch.py), and why others could not be."""
        service = self.services.get(service_id)
        if service is None:
            return outcome(404, f"no CDS service {service_id!r}", "not-found")
        if not within_depth(body, self.max_depth):
            reply = outcome(400, f"the request is nested more than {self.max_depth} levels deep", "too-costly")
            self.rejected(service_id, None, reply)
            return reply
        try:
            hook_instance, context = self._check_request(service, body)
            return self._answer(service, hook_instance, context, body, fetched or Fetched())
        except RequestProblem as problem:
            reply = outcome(problem.status, problem.message, problem.code)
            self.rejected(service_id, body, reply)
            return reply
        except Exception:  # a bug: logged as such here, answered 500 by the app (with the traceback in its log)
            self.rejected(service_id, body, outcome(500, "internal error", "exception"))
            raise

    def rejected_call(self, service_id: str, reply: Reply, note: str | None = None) -> Reply:
        """The row of a call whose body was not read: a token the gate refused (401, `note` the
        gate's reason, which the answer does not say), a body not JSON, too large, too slow."""
        self.rejected(service_id, None, reply, note)
        return reply

    def rejected(self, service_id: str, body: Any, reply: Reply, note: str | None = None) -> None:
        """Every hook call to one of these services leaves a row, also one answered with an error:
        what was asked (as far as the body says), the status `rejected_<HTTP status>` and the
        message sent back (or `note`). A path naming no service is no call to one: no row."""
        service = self.services.get(service_id)
        if service is None:
            return
        body = body if isinstance(body, dict) else {}
        context = body.get("context") if isinstance(body.get("context"), dict) else {}
        hook_instance = body.get("hookInstance")
        patient = context.get("patientId")
        row = _row(
            service,
            hook_instance if isinstance(hook_instance, str) else "",
            patient if isinstance(patient, str) else None,
        )
        self._log(row, None, f"rejected_{reply.status}", [], note=(note or diagnostics(reply))[:MAX_REASON])

    @staticmethod
    def _check_request(service: HookService, body: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(body, dict):
            raise RequestProblem(400, "the request body must be a JSON object")
        missing = [k for k in ("hook", "hookInstance", "context") if body.get(k) in (None, "")]
        if missing:
            raise RequestProblem(400, f"missing required field(s): {', '.join(missing)}", "required")
        if body["hook"] != service.hook:
            raise RequestProblem(400, f"service {service.id} answers hook {service.hook}, not {_shown(body['hook'])}")
        if not isinstance(body["hookInstance"], str) or not UUID_TEXT.fullmatch(body["hookInstance"]):
            shown = _shown(body["hookInstance"])
            raise RequestProblem(
                400, f"hookInstance must be a UUID (CDS Hooks 2.0), as 8-4-4-4-12 hexadecimal digits, not {shown}"
            )
        context = body["context"]
        if not isinstance(context, dict):
            raise RequestProblem(400, "context must be an object")
        if context.get("patientId") in (None, ""):
            raise RequestProblem(400, "context.patientId is required", "required")
        if not isinstance(context["patientId"], str):
            kind = type(context["patientId"]).__name__
            raise RequestProblem(400, f"context.patientId must be text (the Patient's id), not {kind}")
        if not PATIENT_ID.fullmatch(context["patientId"]):
            raise RequestProblem(
                400,
                "context.patientId must be a FHIR id (the Patient's: 1 to 64 letters, digits, '-', '.' or '_'), "
                f"not {_shown(context['patientId'])}",
            )
        problem = fhir_access_problem(body.get("fhirServer"), body.get("fhirAuthorization"))
        if problem is not None:
            raise RequestProblem(400, problem, "required" if "without fhirServer" in problem else "invalid")
        return body["hookInstance"], context

    def _answer(
        self, service: HookService, hook_instance: str, context: dict[str, Any], body: dict[str, Any], fetched: Fetched
    ) -> Reply:
        patient_id = context["patientId"]
        row = _row(service, hook_instance, patient_id)
        as_of = today()  # the service's calendar day, as for the command line (engine/fhir/dates.py)
        drafts, drafts_aside = (
            cyclosporine_drafts(context, self.fmap, patient_id, as_of, body.get("prefetch"), fetched.entries)
            if service.hook in ORDER_HOOKS
            else ([], [])
        )
        drafts_aside = explain_unfetched(drafts_aside, fetched.problems)
        if service.hook in ORDER_HOOKS and not drafts:  # nothing to evaluate: no data needed
            logged_aside = self.decisions.logged_set_aside(drafts_aside)
            said = "cyclosporine drafts set aside: " + "; ".join(a["message"] for a in logged_aside)
            # every cyclosporine draft set aside: one card says the order could not be checked (none
            # when there was no cyclosporine draft at all). Its uuid stands on this call as logged
            # (no decision was made): the same call gives the same card, and feedback finds its row.
            call = {"hook_instance": hook_instance, "service": service.id, "set_aside": logged_aside}
            call_id = decision_id(
                self.kb.fingerprint, input_sha256({**call, "patient": self.decisions.pseudonym(patient_id)})
            )
            made = self.cards.order_not_checked(call_id, DRUG, drafts_aside)
            note = _joined(said if drafts_aside else None, fetched.said())
            self._log(row, None, "no_cyclosporine_draft", made.rows, note=note)
            return Reply(200, {"cards": made.cards})
        got = collect(body.get("prefetch"), list(self.templates.keys), patient_id, body.get("fhirServer"))
        missing = self.templates.required(got.absent)  # an optional key not sent is no 412 (service/prefetch.py)
        if missing and not body.get("fhirAuthorization"):
            self._log(row, None, "prefetch_missing", [], note="absent: " + ", ".join(got.absent))
            return outcome(412, "prefetch missing and no fhirAuthorization: " + ", ".join(missing), "incomplete")
        # the Medications the draft orders' Bundle holds and those fetched from the FHIR server are
        # read with the rest, so an order naming one by medicationReference is read as that drug
        gathered = got.entries + extra_medications(got.entries, context if drafts else {}, fetched.entries)
        entries, renamed = draft_regimen(drafts, gathered, self.fmap, as_of) if drafts else (gathered, {})
        origins = {**got.origins, **(draft_origins(context) if drafts else {})}
        origins |= {
            ("MedicationRequest", new): got.origins.get(("MedicationRequest", old), "") for new, old in renamed.items()
        }
        where = tuple(origins.get(origin_key(e["resource"]) or ("", ""), "") for e in entries)
        try:
            done = convert_bundle(bundle_of(entries), self.fmap, as_of=as_of)
        except FhirInputError as exc:
            said = f"{in_request(exc.pointer, where)}: {exc.message}" if exc.pointer else exc.message
            raise RequestProblem(400, f"prefetch cannot be read as one patient's data: {said}") from None
        record, prov = done.record, restore_ids(done.sources, renamed)
        converted = explain_unfetched(
            [restore_ids(located(item.to_dict(), where), renamed) for item in done.set_aside], fetched.problems
        )
        if (someone_else := about_someone_else(got, converted)) is not None:
            raise RequestProblem(400, someone_else)
        set_aside = drafts_aside + got.unread + converted
        if drafts:
            signed_record(record, prov, drafts)
        record["id"] = self.decisions.pseudonym(record["id"])
        result = self.kb.evaluate(record, include_input=True)
        if result["status"] == "error":
            log.warning("evaluation error for hookInstance %s: %s", hook_instance, result["errors"])
        elif result["status"] == "invalid":  # the EHR's data, not a fault: codes and pointers, no values
            said = ", ".join(f"{e.get('code')} at {e.get('pointer') or '/'}" for e in result["errors"])
            log.warning("record not evaluated (invalid) for hookInstance %s: %s", hook_instance, said)
        made = self.cards.make(
            result,
            prov,
            patient_view=service.hook == "patient-view",
            absent=got.absent,
            set_aside=set_aside,
            empty=None if got.received else got.empty,
        )
        authorized = "with fhirAuthorization" if body.get("fhirAuthorization") else "(optional keys)"
        note = _joined(f"absent {authorized}: " + ", ".join(got.absent) if got.absent else None, fetched.said())
        # the log keeps the result at standard detail (what the patient decided; the knowledge
        # base of its fingerprint holds the rest, so `expand` and `replay` rebuild it) and what
        # was set aside (carried beside it, as for FHIR input on the command line; replay skips it)
        # `origin`: the Patient the EHR named (context.patientId, as the row's patient column holds
        # it), which replay ties the column to; the result's patient_id is the record id, which the
        # map may read from an identifier (an MRN) rather than from the Patient's FHIR id
        logged = {
            **self.kb.reduce(result, "standard"),
            "origin": patient_origin(self.decisions.pseudonym(patient_id)),
            "set_aside": self.decisions.logged_set_aside(set_aside),
        }
        self._log(row, logged, result["status"], made.rows, note)
        return Reply(200, {"cards": made.cards})

    def _log(
        self, row: dict[str, Any], result: dict[str, Any] | None, status: str, cards: Any, note: str | None = None
    ) -> None:
        self.decisions.record_decision(**row, kb=self.kb_record, result=result, status=status, cards=cards, note=note)

    # ---- feedback -------------------------------------------------------------------------------
    def refused_feedback(self, service_id: str, reply: Reply, note: str | None = None) -> Reply:
        """The row of a feedback call answered with an error (`feedback_refused`): when, which
        service, the status and the message sent back (or `note`, the gate's reason for a 401),
        never the body. A path naming no service is no call to one: no row."""
        if service_id in self.services:
            self.decisions.record_refused_feedback(service_id, reply.status, note or diagnostics(reply))
        return reply

    def feedback(self, service_id: str, body: Any) -> Reply:
        if service_id not in self.services:
            return outcome(404, f"no CDS service {service_id!r}", "not-found")
        if not within_depth(body, self.max_depth):
            return outcome(400, f"the request is nested more than {self.max_depth} levels deep", "too-costly")
        items = body.get("feedback") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return outcome(400, "feedback must be a non-empty list", "required")
        for i, item in enumerate(items):
            problem = _feedback_problem(item)
            if problem:
                return outcome(400, f"feedback[{i}]: {problem}")
        try:
            self.decisions.record_feedback(service_id, items)
        except FeedbackRefused as refused:  # nothing of the request was written
            code = {409: "conflict", 404: "not-found"}.get(refused.status, "business-rule")
            return outcome(refused.status, f"feedback[{refused.index}]: {refused.message}", code)
        return Reply(200, {})


def _joined(*notes: str | None) -> str | None:
    """A row's note of several parts (None when there is none)."""
    return "; ".join(n for n in notes if n) or None


def diagnostics(reply: Reply) -> str:
    """The message an error answer gave (its OperationOutcome's first diagnostics)."""
    issues = reply.body.get("issue")
    first = issues[0] if isinstance(issues, list) and issues and isinstance(issues[0], dict) else {}
    return str(first.get("diagnostics", ""))


def _shown(value: Any, limit: int = 60) -> str:
    """A request's value as JSON (control characters and all non-ASCII escaped, so it cannot forge
    a log line), cut to `limit` characters: how an error names what the EHR sent."""
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_kind(value: Any) -> str:
    """A value's JSON type, as an integrator reads it (not Python's name for it)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "an array" if isinstance(value, list) else "an object"


def fhir_access_problem(server: Any, authorization: Any) -> str | None:
    """What is wrong with a request's fhirServer and fhirAuthorization (CDS Hooks 2.0), naming the
    field, or None. `null` is taken as absent for both.

    The service never queries the FHIR server, but whether the EHR gave FHIR access decides what
    a missing prefetch key means (412 without it; with it, the values it would have fed are
    unknown), and fhirServer is the Patient's server when prefetched resources name it by URL.
    So a fhirAuthorization that is not one (`"yes"`, an object without its token) counted as FHIR
    access, and `{}` as none; and a fhirServer that is no URL was silently ignored. CDS Hooks 2.0
    requires fhirServer with fhirAuthorization, and access_token, token_type (Bearer), expires_in
    (integer), scope and subject in it. The access token is never quoted. A fhirServer longer than
    MAX_URL (4,096 characters, beyond which no reference is matched against it) or with a port past
    65535 is no URL either (both were taken)."""
    if server is not None:
        try:
            url = urlsplit(server) if isinstance(server, str) and len(server) <= MAX_URL else None
            _ = url.port if url is not None else None  # read to check it: ":99999" raises
        except ValueError:  # "https://[::1": a bracket never closed; a port past 65535
            url = None
        if url is None or url.scheme.lower() not in ("http", "https") or not url.hostname:
            shown = repr(server[:100]) if isinstance(server, str) else _json_kind(server)
            return f"fhirServer must be the base URL of the EHR's FHIR server (an absolute https URL), not {shown}"
    if authorization is None:
        return None
    if not isinstance(authorization, dict):
        return (
            "fhirAuthorization must be an object (CDS Hooks 2.0: access_token, token_type, expires_in, scope, "
            f"subject), not {_json_kind(authorization)}"
        )
    if server is None:
        return "fhirAuthorization is given without fhirServer, which CDS Hooks 2.0 requires with it"
    # Only the token itself is required here: CDS Hooks 2.0 also requires token_type, expires_in,
    # scope and subject, but 1.0 clients omit subject, many omit more, and the service never uses
    # them; what is given must have its type.
    for name in ("access_token", "token_type", "scope", "subject"):
        value = authorization.get(name)
        if value is None and name != "access_token":
            continue
        if not isinstance(value, str) or not value.strip():
            said = "is missing" if value is None else f"must be non-empty text, not {_json_kind(value)}"
            return f"fhirAuthorization.{name} {said}"
    token_type = authorization.get("token_type")
    if token_type is not None and token_type.lower() != "bearer":
        return f"fhirAuthorization.token_type must be Bearer, not {token_type[:40]!r}"
    expires = authorization.get("expires_in")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, (int, float)) or expires < 0):
        said = (
            "must not be negative"
            if isinstance(expires, (int, float)) and not isinstance(expires, bool)
            else (f"must be a number of seconds, not {_json_kind(expires)}")
        )
        return f"fhirAuthorization.expires_in {said}"
    patient = authorization.get("patient")
    if patient is not None and not isinstance(patient, str):
        return f"fhirAuthorization.patient must be text (a Patient id), not {_json_kind(patient)}"
    return None


def _instant_problem(value: Any) -> str | None:
    """Why `value` is not a FHIR instant (a date and time to the second, with a time zone from
    -14:00 to +14:00), or None. The text is logged as given (any fraction digits kept)."""
    if not isinstance(value, str):
        return f"must be an instant (text such as 2025-01-15T09:30:00Z), not {type(value).__name__}"
    shown = value[:40]
    found = INSTANT.fullmatch(value)
    if not found:
        return (
            "must be an instant such as 2025-01-15T09:30:00Z (date, time to the second, "
            f"time zone Z or -14:00 to +14:00), not {shown!r}"
        )
    try:
        day = date.fromisoformat(found["date"])
    except ValueError:
        return f"{shown!r} is not a date that exists"
    if found["second"] == "60" and not _leap_second(day, found["time"], found["zone"]):
        return f"{shown!r} has second 60, which only a leap second has (23:59:60 UTC on a month's last day)"
    return None


def _leap_second(day: date, hour_minute: str, zone: str) -> bool:
    """Whether hh:mm:60 on `day` in `zone` is 23:59:60 UTC on the last day of a month, where a
    leap second is inserted (FHIR allows second 60 for one)."""
    local = datetime.fromisoformat(f"{day.isoformat()}T{hour_minute}:59{zone.replace('Z', '+00:00')}")
    try:
        utc = local.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01 at +14:00: before year 1 in UTC, and no leap second anyway
        return False
    return (utc.hour, utc.minute) == (23, 59) and utc.day == calendar.monthrange(utc.year, utc.month)[1]


def _feedback_problem(item: Any) -> str | None:
    """What is wrong with one feedback item (CDS Hooks 2.0 Feedback), naming the field; None when
    nothing is. What only the decision log can tell (which card, which reasons it offered) is
    checked when the item is written."""
    if not isinstance(item, dict):
        return "must be an object"
    if not isinstance(item.get("card"), str) or not item["card"]:
        return "card (the card's uuid) is required"
    if item.get("outcome") not in OUTCOMES:
        return f"outcome must be one of {', '.join(OUTCOMES)}"
    if "outcomeTimestamp" not in item:
        return "outcomeTimestamp (when the user accepted or overrode the card) is required"
    when = _instant_problem(item["outcomeTimestamp"])
    if when:
        return f"outcomeTimestamp {when}"
    reason = item.get("overrideReason")
    if reason is not None:
        if item["outcome"] != "overridden":
            return "overrideReason is given only with outcome overridden"
        if not isinstance(reason, dict):
            return "overrideReason must be an object"
        if reason.get("reason") is not None and not isinstance(reason["reason"], dict):
            return "overrideReason.reason must be a Coding"
        comment = reason.get("userComment")
        if comment is not None and not isinstance(comment, str):
            return "overrideReason.userComment must be a string"
        if isinstance(comment, str) and len(comment) > MAX_USER_COMMENT:
            return f"overrideReason.userComment is longer than {MAX_USER_COMMENT} characters ({len(comment)})"
    if "acceptedSuggestions" in item:
        accepted = item["acceptedSuggestions"]
        if item["outcome"] != "accepted":
            return "acceptedSuggestions is given only with outcome accepted"
        if not isinstance(accepted, list) or not all(
            isinstance(a, dict) and isinstance(a.get("id"), str) for a in accepted
        ):
            return "acceptedSuggestions must be a list of objects each with an id"
        if accepted:  # this service's cards carry no suggestions (service/cards.py)
            named = accepted[0]["id"][:60]
            return f"acceptedSuggestions names {named!r}, a suggestion the card did not have (it had none)"
    return None


def in_request(pointer: str, where: tuple[str, ...]) -> str:
    """A pointer into the Bundle the service made (`/entry/0/resource/identifier/1`) as a pointer
    into the request (`/prefetch/patient/identifier/1`), where the entry's origin is known."""
    match = re.fullmatch(r"/entry/([0-9]+)/resource(/.*)?", pointer)
    if match is None or int(match.group(1)) >= len(where) or not where[int(match.group(1))]:
        return pointer
    return where[int(match.group(1))] + (match.group(2) or "")


def _row(service: HookService, hook_instance: str, patient: str | None) -> dict[str, Any]:
    """What the decision log records of every call: which call, to which service, for whom."""
    return {"hook_instance": hook_instance, "service": service.id, "hook": service.hook, "patient": patient}
