"""The Medications an order names that the request did not include, read from the EHR's FHIR server.

An order or statement may name its drug only by a medicationReference (`Medication/abc`). When
the request holds that Medication (contained, in the draft orders' Bundle, in the prefetch, as the
`*-by-medication` templates `_include` it), the reader resolves it. A draft order's Medication can
never be asked for by a prefetch template (CDS Hooks 2.0 makes only a context's root-level
primitive fields prefetch tokens, and `draftOrders` is a Bundle), and an EHR may answer a prefetch
query without the Medications its orders name: such an order's drug cannot be told, and it is set
aside and named on a card. CDS Hooks 2.0 (Prefetch, FHIR Resource Access) leaves it to the service
to fetch what it lacks when the EHR gives `fhirServer` and `fhirAuthorization`; so it does, for
these Medications only: `GET {fhirServer}/Medication/{id}` (or `/_history/{vid}` for a version-specific
reference) with the EHR's access token, before the call is evaluated.

Bounds, because the EHR's server may be slow, wrong or not what `fhirServer` says: at most
MAX_FETCHES Medications a call, all within FETCH_SECONDS together; an answer of at most
MAX_MEDICATION_BYTES, read by the bounded JSON reader (size, depth, duplicate keys), and used only
when it is the Medication asked for (resourceType and id). The token is sent only over https (or
plain http to this machine, for tests), never to a URL with credentials, a query or a fragment,
never through a redirect (not followed), and never logged. A reference to another server, or in a
form other than `Medication/<id>`, is not fetched. What could not be fetched is said, with why,
in the message of the order set aside for it (`explain_unfetched`), so the card naming that order
says it too; the call is never refused for it. Off unless the configuration says
`fetch_medications: true`: the CDS Hooks issue's contract has the service fetch nothing itself.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from fsgs_kb.engine.fhir.codes import as_dict, reference
from fsgs_kb.engine.fhir.refs import HISTORY, without_version
from fsgs_kb.engine.fhir.setaside import quoted
from fsgs_kb.engine.read.records import parse_json
from fsgs_kb.service.config import is_loopback

log = logging.getLogger("fsgs_kb.service")

MAX_FETCHES = 8  # Medications fetched in one call at most (more are named as not fetched)
FETCH_SECONDS = 3.0  # for all of a call's fetches together
MAX_MEDICATION_BYTES = 256 * 1024
ORDER_TYPES = ("MedicationRequest", "MedicationStatement")
NOT_TOLD = "medication_not_identified"  # the reader's reason for an order whose drug cannot be told
_FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"
_RELATIVE = re.compile(rf"Medication/(?P<id>{_FHIR_ID})(?:{HISTORY}(?P<vid>{_FHIR_ID}))?")


@dataclass
class Fetched:
    """The Medications fetched for a call (entries with the fullUrl they were read at), and for
    each reference that could not be, why."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)

    def said(self) -> str | None:
        """What the call's row notes: which Medications came from the FHIR server, which did not."""
        parts = []
        if self.entries:
            parts.append("fetched from fhirServer: " + ", ".join(e["fullUrl"] for e in self.entries))
        if self.problems:
            parts.append("not fetched: " + "; ".join(f"{quoted(ref)} ({why})" for ref, why in self.problems.items()))
        return "; ".join(parts) or None


def _entries(value: Any) -> list[dict[str, Any]]:
    """The entries (resource, fullUrl) a prefetch value or a Bundle holds (one resource, or a
    Bundle's entries), read leniently: the request's shape is checked, and refused, by the hook
    call itself."""
    value = as_dict(value)
    if value.get("resourceType") != "Bundle":
        return [{"resource": value}] if isinstance(value.get("resourceType"), str) else []
    entries = value.get("entry")
    found = [as_dict(e) for e in entries] if isinstance(entries, list) else []
    return [e for e in found if as_dict(e.get("resource"))]


def unresolved(body: dict[str, Any], keys: Collection[str], drafts: bool) -> list[str]:
    """The medicationReferences of the orders and statements the call reads (the prefetch under
    `keys`, the draft orders when `drafts`) that name no Medication the request holds, each once,
    in the order met: as the reader looks one up (engine/fhir/medication.py), by
    `Medication/<id>`, by fullUrl, or by a fullUrl that ends with the reference, its version
    aside. A contained one (`#id`) is the reader's to resolve, or not."""
    prefetch = as_dict(body.get("prefetch"))
    sources = [v for k, v in prefetch.items() if k in keys]
    sources += [as_dict(body.get("context")).get("draftOrders")] if drafts else []
    entries = [e for source in sources for e in _entries(source)]
    held: set[str] = set()
    for entry in entries:
        res = entry["resource"]
        if res.get("resourceType") == "Medication":
            held |= {f"Medication/{res['id']}"} if isinstance(res.get("id"), str) else set()
            held |= {entry["fullUrl"]} if isinstance(entry.get("fullUrl"), str) else set()
    out: list[str] = []
    for entry in entries:
        res = entry["resource"]
        ref = reference(res.get("medicationReference")) if res.get("resourceType") in ORDER_TYPES else None
        if not ref or ref.startswith("#") or ref in out:
            continue
        plain = without_version(ref)
        if plain in held or any(h.endswith("/" + plain) for h in held):
            continue
        out.append(ref)
    return out


def server_problem(server: str) -> str | None:
    """Why the access token may not be sent to this fhirServer, or None."""
    try:
        url = urlsplit(server)
        host = url.hostname
    except ValueError:
        return "fhirServer is not a URL"
    if url.username is not None or url.password is not None or url.query or url.fragment:
        return "fhirServer has credentials, a query or a fragment: the access token is not sent there"
    if url.scheme.lower() != "https" and not (url.scheme.lower() == "http" and is_loopback(host)):
        return "fhirServer is not https: the access token is not sent in clear"
    return None


def medication_url(server: str, ref: str) -> tuple[str, str] | None:
    """(the URL to read, the Medication's id) of a reference on `server`: relative
    `Medication/<id>[/_history/<vid>]`, or absolute under that server; None for any other
    reference (another server's, another form)."""
    base = server.rstrip("/")
    relative = ref[len(base) + 1 :] if ref.startswith(base + "/") else ref
    found = _RELATIVE.fullmatch(relative)
    return (f"{base}/{relative}", found["id"]) if found else None


class MedicationFetcher:
    """One worker's client for the EHR's FHIR server (connections kept across calls)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.client: httpx.AsyncClient | None = None

    async def fetch(self, body: dict[str, Any], keys: Collection[str], drafts: bool) -> Fetched:
        """The Medications the orders a call reads name and it did not include (`unresolved`), when
        it gives FHIR access (fhirServer and fhirAuthorization with an access_token, which the
        caller has checked); else nothing."""
        done = Fetched()
        if not self.enabled:
            return done
        server, access = body.get("fhirServer"), body.get("fhirAuthorization")
        token = as_dict(access).get("access_token")
        if not isinstance(server, str) or not isinstance(token, str) or not token.strip():
            return done
        wanted = unresolved(body, keys, drafts)
        if not wanted:
            return done
        if (problem := server_problem(server)) is not None:
            done.problems = dict.fromkeys(wanted, problem)
            return done
        urls: dict[str, tuple[str, str]] = {}
        for ref in wanted:
            url = medication_url(server, ref)
            if url is None:
                done.problems[ref] = "it names another server than fhirServer, or is not of the form Medication/(id)"
            elif len(urls) >= MAX_FETCHES:
                done.problems[ref] = f"more than {MAX_FETCHES} Medications to fetch in one call"
            else:
                urls[ref] = url
        if not urls:
            return done
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=FETCH_SECONDS, follow_redirects=False, trust_env=False)
        tasks = {ref: asyncio.ensure_future(self._one(*url, token.strip())) for ref, url in urls.items()}
        finished, late = await asyncio.wait(tasks.values(), timeout=FETCH_SECONDS)
        for task in late:
            task.cancel()
        for ref, task in tasks.items():
            if task in late:
                outcome: dict[str, Any] | str = f"no answer within {FETCH_SECONDS:g} s"
            else:
                outcome = task.result()
            if isinstance(outcome, str):
                done.problems[ref] = outcome
                log.info("Medication for %s not fetched from %s: %s", quoted(ref), urlsplit(server).hostname, outcome)
            else:
                # its fullUrl is the Medication's own (no version): the reader finds it by that,
                # by Medication/<id>, and by its meta.versionId for a version-specific reference
                done.entries.append({"fullUrl": f"{server.rstrip('/')}/Medication/{urls[ref][1]}", "resource": outcome})
        return done

    async def _one(self, url: str, wanted: str, token: str) -> dict[str, Any] | str:
        """The Medication `wanted` at `url`, or why it could not be read (never raises)."""
        assert self.client is not None
        # identity only: a compressed answer could expand far past the byte limit in one chunk
        headers = {"Accept": "application/fhir+json", "Accept-Encoding": "identity", "Authorization": f"Bearer {token}"}
        try:
            async with self.client.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    return f"the FHIR server answered {response.status_code}"
                coding = response.headers.get("content-encoding", "identity").strip().lower()
                if coding not in ("", "identity"):
                    return f"the FHIR server's answer is compressed ({quoted(coding)}), which is not read"
                raw = bytearray()
                async for chunk in response.aiter_raw():
                    raw.extend(chunk)
                    if len(raw) > MAX_MEDICATION_BYTES:
                        return f"the FHIR server's answer is larger than {MAX_MEDICATION_BYTES} bytes"
        except Exception as exc:  # noqa: BLE001 - any failure (network, a URL or token httpx refuses) is this reference's
            return f"the FHIR server could not be read ({type(exc).__name__})"
        value, problem = parse_json(bytes(raw), MAX_MEDICATION_BYTES)
        if problem is not None:
            return "the FHIR server's answer is not JSON within the reader's limits"
        if not isinstance(value, dict) or value.get("resourceType") != "Medication" or value.get("id") != wanted:
            return f"the FHIR server's answer is not Medication/{wanted}"
        return value

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


def explain_unfetched(items: list[dict[str, Any]], problems: dict[str, str]) -> list[dict[str, Any]]:
    """Set-aside entries with, for an order whose drug could not be told because its Medication
    could not be fetched, why not (added to the reader's message, which names the reference)."""
    if not problems:
        return items
    out = []
    for item in items:
        message = item.get("message")
        if item.get("reason") == NOT_TOLD and isinstance(message, str):
            for ref, why in problems.items():
                if f"medicationReference {quoted(ref)} names no Medication sent" in message:
                    item = {**item, "message": f"{message} (fetching it from fhirServer failed: {why})"}
                    break
        out.append(item)
    return out
