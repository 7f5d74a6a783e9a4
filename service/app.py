"""The ASGI application (Starlette): routes, CORS, the JWT gate, request bodies.

Loaded by uvicorn from its import string (`fsgs_kb.service.app:create_app`) in each worker, so
only serving imports Starlette. The configuration file's path comes in $FSGS_KB_CDS_CONFIG.

Every route but CORS preflight, /healthz and the static handbook (public knowledge-base pages a
card links to; a browser following a link cannot send a token) requires a valid JWT whose
audience is that route's public URL. A rejected token gets 401 and a fixed body; the reason goes
to the server log, the token nowhere. Evaluation runs on the event loop's thread: it is CPU-bound
and short (a few milliseconds), and the knowledge base's durable-rules sessions are not shared
between threads.

Every error answer is JSON, an OperationOutcome naming what is wrong (application/json): also the
ones Starlette makes itself (404 for an unknown path, 405 for a method a route does not take), a
refused CORS preflight (400), and a request the HTTP parser cannot read (431, 400: service/wire.py,
the protocol class `fsgs-kb serve` gives uvicorn). A path with a trailing slash the routes do not
name is unknown (404), never redirected. A request body that gives one key twice in an object is refused
(400, naming the key), as the command line's readers refuse such a record: which value was meant
is unknowable. A body is read as JSON when its Content-Type says JSON (`application/json`, a `+json`
type such as `application/fhir+json`) or is what HTTP tools send undeclared (none, `text/plain`,
a form type), in UTF-8; another charset, or a type that says the body is something else, is
refused with 415 naming what was sent, before the body is read (`media_type_problem`); so is a
Content-Type given twice and a compressed body (`body_format_problem`).
A body not complete `read_timeout_seconds` after its head gets 408 and the connection is closed
(the head's own time is bounded in service/wire.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from fsgs_kb.engine.drills import planned
from fsgs_kb.engine.fhir import default_map_path, load_map
from fsgs_kb.engine.kb import load
from fsgs_kb.engine.read.jsontext import duplicate_key, key_count, loads
from fsgs_kb.engine.report.handbook import Handbook
from fsgs_kb.service.config import ServiceConfig, load_config
from fsgs_kb.service.decisionlog import DecisionLog
from fsgs_kb.service.fhirfetch import Fetched, MedicationFetcher
from fsgs_kb.service.hooks import ORDER_HOOKS, Hooks, Reply, fhir_access_problem, outcome
from fsgs_kb.service.jwtcheck import KeyStore, Rejected, TokenChecker
from fsgs_kb.service.refusals import RefusalBudget
from fsgs_kb.service.run import CONFIG_ENV, ignore_inherited

log = logging.getLogger("fsgs_kb.service")
UNAUTHORIZED = outcome(401, "unauthorized", "login")
CLIENT_CLOSED = 499  # what proxies log for a request its client closed: its row is rejected_499 (never sent)


class Json(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _reply(reply: Reply, headers: dict[str, str] | None = None) -> Response:
    if reply.status == 408:  # the rest of the body may never come: the connection ends with the answer
        headers = {**(headers or {}), "Connection": "close"}
    return Json(reply.body, status_code=reply.status, headers=headers)


HTTP_CODES = {404: "not-found", 405: "not-supported"}
JSON_MEDIA_TYPE = "application/json"


# What HTTP tools send when told nothing (curl -d and urllib send a form type, some clients none or
# text/plain): the body is still the JSON text meant, and is read as such.
UNDECLARED_TYPES = ("", "text/plain", "text/json", "application/x-www-form-urlencoded", "application/octet-stream")


def media_type_problem(content_type: str | None) -> str | None:
    """Why a request body of this Content-Type is not read as JSON, or None when it is.

    CDS Hooks 2.0 has the client POST "a JSON document" and RFC 8259 has JSON between systems in
    UTF-8: `application/json` or a structured `+json` type (RFC 6839: `application/fhir+json`).
    The defaults of HTTP tools (no type, `text/plain`, curl's and urllib's form type) are read as
    JSON too: the bytes are the JSON text an integrator typed, a body that is not JSON gets its 400
    naming where, and no cross-origin browser form can reach a hook (every call needs the bearer
    token, which a simple request cannot carry). Refused (415), naming what was received and
    what is expected: a charset other than UTF-8 (its bytes would be misread) and a type that
    says the body is something else (`multipart/form-data`, XML, `application/json-seq`)."""
    media, *params = (part.strip() for part in (content_type or "").split(";"))
    shown = (content_type or "").strip()[:100]
    kind, _, subtype = media.lower().partition("/")
    json_type = kind == "application" and (subtype == "json" or (subtype.endswith("+json") and len(subtype) > 5))
    if not json_type and media.lower() not in UNDECLARED_TYPES:
        return f"Content-Type {shown!r} is not JSON; send the body as {JSON_MEDIA_TYPE}"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8", "us-ascii"):
            return f"Content-Type {shown!r} names another charset than UTF-8; send JSON as UTF-8 ({JSON_MEDIA_TYPE})"
    return None


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (an unknown path, a method a route does not take) as OperationOutcome."""
    assert isinstance(exc, HTTPException)
    reply = outcome(
        exc.status_code,
        f"{request.method} {request.url.path}: {exc.detail}",
        HTTP_CODES.get(exc.status_code, "invalid"),
    )
    return _reply(reply, dict(exc.headers or {}))


def _too_large(limit: int) -> Reply:
    return outcome(413, f"request body larger than {limit} bytes", "too-costly")


def body_format_problem(headers: Headers) -> str | None:
    """Why a body with these headers is not read as JSON, or None: its Content-Type
    (`media_type_problem`), given once (two say two things, and which was meant is unknowable),
    and no Content-Encoding but `identity` (a gzip body was read as JSON and refused as invalid
    UTF-8; RFC 7694 answers an unsupported coding with 415)."""
    types = headers.getlist("content-type")
    if len(types) > 1:
        shown = ", ".join(repr(t.strip()[:60]) for t in types)
        return f"Content-Type is given {len(types)} times ({shown}); send it once, as {JSON_MEDIA_TYPE}"
    codings = [c.strip().lower() for value in headers.getlist("content-encoding") for c in value.split(",")]
    coded = [c for c in codings if c and c != "identity"]
    if coded:
        return f"Content-Encoding {', '.join(coded)[:60]!r} is not supported; send the JSON body uncompressed"
    return media_type_problem(types[0] if types else None)


class Cors(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered as an OperationOutcome, not plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")}
        reason = bytes(response.body).decode("utf-8", "replace")
        return _reply(outcome(response.status_code, f"CORS preflight refused: {reason}", "security"), headers)


class Service:
    """One worker's state: configuration, knowledge base, map, decision log, key store."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        kb = load(config.rules)
        fmap = load_map(config.fhir_map or default_map_path())
        self.decisions = DecisionLog(config.decision_log, config.mask_key())
        self.hooks = Hooks(config, kb, fmap, self.decisions)
        self.keys = KeyStore(config.jwks_refetch_seconds, config.jwks_max_age_seconds)
        self.tokens = TokenChecker(config, self.keys, self.decisions.remember_jti)
        self.medications = MedicationFetcher(config.fetch_medications)
        self.refusals = RefusalBudget()
        self.handbook = Handbook(kb.model, kb.fingerprint).pages()
        if self.hooks.note:
            log.warning("%s", self.hooks.note)
        if config.mask_key() is None:
            log.info("no masking secret configured: patient identifiers are stored in clear in the decision log")

    async def refusal(self, request: Request) -> str | None:
        """Why the gate refuses this request's token (the answer is 401 whatever the reason; the
        reason goes to the server log and a refused call's row, the token nowhere), or None."""
        try:
            await self.tokens.check(request.headers.get("authorization"), self.config.url(request.url.path))
        except Rejected as why:
            log.info("401 %s %s: %s", request.method, request.url.path, why)
            return f"token refused: {why}"
        except Exception as exc:  # a bug in the gate still closes it (the token is not in the message)
            log.error("401 %s %s: token check failed: %s", request.method, request.url.path, type(exc).__name__)
            return f"token refused: token check failed ({type(exc).__name__})"
        return None

    async def body(self, request: Request) -> Any:
        """The JSON body, refusing another media type and more than max_request_bytes; Reply on failure."""
        unreadable = body_format_problem(request.headers)
        if unreadable is not None:
            return outcome(415, unreadable, "not-supported")
        limit = self.config.max_request_bytes
        declared = request.headers.get("content-length")
        announced = int(declared) if declared and declared.isdigit() else None
        of = f" of {announced}" if announced is not None else ""
        if announced is not None and announced > limit:
            return _too_large(limit)
        raw = bytearray()

        async def read() -> bool:
            """Read the body into `raw`; False once it is larger than the limit."""
            async for chunk in request.stream():
                raw.extend(chunk)
                if len(raw) > limit:
                    return False
            return True

        try:  # a body trickling in (or never sent) holds the connection no longer than its head may
            if not await asyncio.wait_for(read(), self.config.read_timeout_seconds):
                return _too_large(limit)
        except asyncio.TimeoutError:
            seconds = f"{self.config.read_timeout_seconds:g}"
            said = f"the request body did not arrive within {seconds} s ({len(raw)}{of} bytes received)"
            log.info("408 %s %s: %s", request.method, request.url.path, said)
            return outcome(408, said, "timeout")
        except ClientDisconnect:  # the client went away: not a bug, no traceback; the call still leaves a row
            said = f"the client disconnected before the request body was complete ({len(raw)}{of} bytes received)"
            log.info("%s %s %s: %s", CLIENT_CLOSED, request.method, request.url.path, said)
            return outcome(CLIENT_CLOSED, said, "incomplete")
        try:
            value = loads(bytes(raw))
        except orjson.JSONDecodeError as exc:
            return outcome(400, f"the request body is not JSON: {exc}", "structure")
        twice = duplicate_key(bytes(raw), key_count(value))
        if twice is not None:
            return outcome(
                400, f"the request body gives key {orjson.dumps(twice).decode()} twice in one object", "structure"
            )
        return value

    @staticmethod
    def _guarded(handler: Any, service_id: str, *args: Any) -> Reply:
        """A bug answers 500 with an OperationOutcome and one log line with its traceback."""
        try:
            reply: Reply = handler(service_id, *args)
        except Exception:
            log.exception("internal error in %s for service %s", getattr(handler, "__name__", "?"), service_id)
            return outcome(500, "internal error; the service log has the details", "exception")
        return reply

    # ---- routes ---------------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return Json({"status": "ok"})

    async def discovery(self, request: Request) -> Response:
        if await self.refusal(request) is not None:
            return _reply(UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
        return Json(self.hooks.discovery())

    async def _unsigned(self, request: Request, record: Any, service_id: str) -> Response | None:
        """The fixed 401 of a call whose token the gate refuses, its row written by `record` with
        the gate's reason (service/refusals.py bounds how many: such a call needs no credentials);
        None for a call the gate lets through."""
        refused = await self.refusal(request)
        if refused is None:
            return None
        note = self.refusals.note(refused)
        if note is not None:
            self._guarded(record, service_id, UNAUTHORIZED, note)
        return _reply(UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})

    async def hook(self, request: Request) -> Response:
        """A hook call. Every answer leaves one decision row: refused ones (a token the gate
        refused, a body not read) as `rejected_<status>` with the reason, never the body."""
        start = time.perf_counter()
        service_id = request.path_params["service"]
        unsigned = await self._unsigned(request, self.hooks.rejected_call, service_id)
        if unsigned is not None:
            return unsigned
        body = await self.body(request)
        if isinstance(body, Reply):  # signed, but not JSON or too large: still one row in the log
            self._guarded(self.hooks.rejected_call, service_id, body)
            return _reply(body)
        fetched = await self._medications(service_id, body)
        reply = self._guarded(self.hooks.call, service_id, body, fetched)
        elapsed = (time.perf_counter() - start) * 1000
        return _reply(reply, {"Server-Timing": f"app;dur={elapsed:.2f}"})  # token check to cards, in ms

    async def _medications(self, service_id: str, body: Any) -> Fetched:
        """The Medications the call's orders name and it lacks, read from the EHR's FHIR server
        (service/fhirfetch.py) when the call is to a service here and its FHIR access is of the
        right shape (else the call is refused, and nothing is fetched for it)."""
        service = self.hooks.services.get(service_id)
        if service is None or not isinstance(body, dict):
            return Fetched()
        if fhir_access_problem(body.get("fhirServer"), body.get("fhirAuthorization")) is not None:
            return Fetched()
        try:
            return await self.medications.fetch(body, self.hooks.templates.keys, service.hook in ORDER_HOOKS)
        except Exception:  # a bug here costs the fetch, not the call: its orders are named as unresolved
            log.exception("internal error fetching Medications for service %s", service_id)
            return Fetched()

    async def feedback(self, request: Request) -> Response:
        """Feedback. A refused call (any answer but 200: the token, the body, an item) writes no
        feedback and leaves one `feedback_refused` row with its status and reason, never the body."""
        service_id = request.path_params["service"]
        unsigned = await self._unsigned(request, self.hooks.refused_feedback, service_id)
        if unsigned is not None:
            return unsigned
        body = await self.body(request)
        reply = body if isinstance(body, Reply) else self._guarded(self.hooks.feedback, service_id, body)
        if reply.status != 200:
            self._guarded(self.hooks.refused_feedback, service_id, reply)
        return _reply(reply)

    async def handbook_page(self, request: Request) -> Response:
        page = request.path_params.get("page") or "index.html"
        html = self.handbook.get(page)
        if html is None:
            return _reply(outcome(404, f"no handbook page {page!r}", "not-found"))
        return HTMLResponse(html)

    async def close(self) -> None:
        await self.keys.close()
        await self.medications.close()
        self.decisions.close()


def build_app(config: ServiceConfig) -> Starlette:
    service = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await service.close()

    routes = [
        Route("/healthz", service.healthz, methods=["GET"]),
        Route("/cds-services", service.discovery, methods=["GET"]),
        Route("/cds-services/{service}", service.hook, methods=["POST"]),
        Route("/cds-services/{service}/feedback", service.feedback, methods=["POST"]),
        Route("/handbook/", service.handbook_page, methods=["GET"]),
        Route("/handbook/{page:path}", service.handbook_page, methods=["GET"]),
    ]
    cors = Middleware(
        Cors,
        allow_origins=list(config.cors_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    app = Starlette(routes=routes, middleware=[cors], lifespan=lifespan, exception_handlers={HTTPException: http_error})
    # no redirect to the path without (or with) a trailing slash: Starlette builds its Location from
    # the Host header (the service never builds a URL from Host), answers before the JWT gate, and a
    # client re-sends the body to it. Such a path is unknown: 404 with an OperationOutcome.
    app.router.redirect_slashes = False
    return app


def hold_at_gate(gate: str) -> None:
    """The startgate drill (FSGS_KB_FAULT=startgate:PATH): say `PATH.PID.waiting`, then wait until
    PATH exists, so that a test can signal a worker exactly while it starts (tests/service/test_cds_stop.py)."""
    Path(f"{gate}.{os.getpid()}.waiting").touch()
    while not os.path.exists(gate):
        time.sleep(0.01)  # a drill's wait on the test's file, in a worker that does nothing else


def create_app() -> Starlette:
    """uvicorn's factory: the configuration file named in $FSGS_KB_CDS_CONFIG."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for gate in planned("startgate"):  # a drill: hold this worker where it starts, before its app
        hold_at_gate(gate)
    ignore_inherited()
    return build_app(load_config(Path(os.environ[CONFIG_ENV])))
