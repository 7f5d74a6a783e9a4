"""Helpers for the CDS Hooks service tests: a real server in a subprocess, a JWKS server in a
thread that counts its requests, a test EHR's signing key, and an EHR-side executor of the
service's prefetch templates over a FHIR Bundle."""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from fsgs_kb.engine.fhir import default_map_path, load_map, record_to_bundle

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
ISS = "https://ehr.example.org"
PUBLIC = "https://cds.example.org"
FMAP = load_map(default_map_path())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class KeyServer:
    """A JWKS endpoint on loopback, in a thread; `requests` counts every request it received."""

    def __init__(self, keys: list[dict[str, Any]], cache_control: str | None = None) -> None:
        self.keys = keys
        self.requests = 0
        self.cache_control = cache_control  # the Cache-Control header of its answers, if any
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if outer.cache_control is not None:
                    self.send_header("Cache-Control", outer.cache_control)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Signer:
    """An EHR's EC P-384 signing key and the tokens it makes."""

    def __init__(self, kid: str = "ehr-key-1", iss: str = ISS) -> None:
        self.key = ec.generate_private_key(ec.SECP384R1())
        self.kid = kid
        self.iss = iss

    def jwk(self) -> dict[str, Any]:
        jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": "ES384", "use": "sig"}

    def token(self, aud: str, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.iss, "aud": aud, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4()), **claims}
        payload = {k: v for k, v in payload.items() if v is not None}
        head = {"kid": self.kid, "typ": "JWT", **(headers or {})}
        return jwt.encode(payload, self.key, algorithm="ES384", headers=head)


def write_config(path: Path, issuers: list[dict[str, Any]], **extra: Any) -> Path:
    """A service configuration (JSON is YAML too)."""
    config = {
        "public_base_url": PUBLIC,
        "trusted_issuers": issuers,
        "allow_drafts": True,
        "decision_log": "decisions.sqlite",
        "cors_origins": ["https://sandbox.example.org"],
        **extra,
    }
    path.write_text(json.dumps(config, indent=2))
    return path


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_RUNNING: list[Server] = []  # every server started, stopped at the latest when the test run ends


@atexit.register
def _stop_left_running() -> None:
    """A test that fails between starting a server and stopping it left it running after the whole
    run (started in a session of its own, nothing else ends it): stopped here, with its workers."""
    for server in _RUNNING:
        server.stop()


class Server:
    """`fsgs-kb serve` in a subprocess on a free loopback port, ready when /healthz answers."""

    def __init__(
        self,
        config: Path,
        workers: int = 1,
        env: dict[str, str] | None = None,
        ignore_sigint: bool = False,
        wait: bool = True,
    ) -> None:
        """`ignore_sigint`: started as a shell starts a background job, SIGINT ignored, in a
        process group of its own (so that a test can send SIGINT to the whole group, as Ctrl-C does).
        `wait`: return once /healthz answers (else the test calls `wait_ready` itself)."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = config.parent / f"server-{self.port}.log"
        command = [sys.executable, "-m", "fsgs_kb", "serve", "--config", str(config), "--port", str(self.port)]
        command += ["--workers", str(workers)]
        self.stream = self.log.open("wb")
        self.proc = subprocess.Popen(
            command,
            stdout=self.stream,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=_ignore_sigint if ignore_sigint else None,
            start_new_session=ignore_sigint,
        )
        self.client = httpx.Client(base_url=self.base, timeout=30)
        _RUNNING.append(self)
        if wait:
            self.wait_ready()

    def wait_ready(self, limit: float = 60.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # a polling interval, bounded by the deadline: not a wait for an event
        self.stop()
        raise RuntimeError(f"server not ready in {limit} s: {self.log.read_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stream.close()


# ---- the EHR side: prefetch from a Bundle ---------------------------------------------------


def prefetch_templates(server: Server, ehr: Any) -> dict[str, dict[str, str]]:
    """Each service's prefetch templates, by service id, as discovery lists them (a signed GET)."""
    services = signed_call(server, ehr, "/cds-services").json()["services"]
    return {s["id"]: s["prefetch"] for s in services}


def signed_call(server: Server, ehr: Any, path: str, body: dict[str, Any] | None = None) -> Any:
    """GET (no body) or POST `path` on the running service with a token the EHR signed for it."""
    headers = {"Authorization": "Bearer " + ehr.signer.token(PUBLIC + path)}
    if body is None:
        return server.client.get(path, headers=headers)
    return server.client.post(path, json=body, headers=headers)


def example(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "examples" / f"{name}.json").read_text()))


def patient_bundle(record: dict[str, Any], as_of: date | None = None) -> dict[str, Any]:
    return record_to_bundle(record, FMAP, as_of=as_of or date.today())


def _codings(concept: Any) -> set[str]:
    return {f"{c.get('system')}|{c.get('code')}" for c in (concept or {}).get("coding", [])}


def _medication_of(resource: dict[str, Any], resources: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The Medication (by `Medication/<id>`) an order or statement names by medicationReference."""
    ref = (resource.get("medicationReference") or {}).get("reference")
    medications = (r for r in resources if r["resourceType"] == "Medication")
    return next((r for r in medications if f"Medication/{r.get('id')}" == ref), None)


def _matches(
    resource: dict[str, Any], rtype: str, params: dict[str, list[str]], patient: str, resources: list[dict[str, Any]]
) -> bool:
    """FHIR R4 search as the templates use it: `code` on an order or statement is its
    medicationCodeableConcept only; `medication.code` is the code of the Medication it names."""
    if resource.get("resourceType") != rtype:
        return False
    if rtype == "Patient":
        return True
    if (resource.get("subject") or {}).get("reference") != f"Patient/{patient}":
        return False
    if "medication.code" in params:
        wanted = set(params["medication.code"][0].split(","))
        medication = _medication_of(resource, resources)
        return medication is not None and bool(_codings(medication.get("code")) & wanted)
    wanted = set(params["code"][0].split(","))
    concept = resource.get("code") or resource.get("medicationCodeableConcept")
    return bool(_codings(concept) & wanted)


def _date(resource: dict[str, Any]) -> str:
    return str(resource.get("effectiveDateTime") or resource.get("authoredOn") or resource.get("recordedDate") or "")


def run_query(template: str, bundle: dict[str, Any], patient: str) -> Any:
    """What a FHIR server answers for one prefetch template (the few search features they use)."""
    query = template.replace("{{context.patientId}}", patient)
    path, _, qs = query.partition("?")
    resources = [e["resource"] for e in bundle["entry"]]
    if path.startswith("Patient/"):
        return next(r for r in resources if r["resourceType"] == "Patient" and r["id"] == path.split("/")[1])
    params = parse_qs(qs)
    assert params["patient"] == [patient] and params["_sort"][0].startswith("-"), template
    found = [r for r in resources if _matches(r, path, params, patient, resources)]
    found.sort(key=_date, reverse=True)
    included = []
    if params.get("_include") == [f"{path}:medication"]:  # the Medications the matches name, once each
        for res in found:
            medication = _medication_of(res, resources)
            if medication is not None and medication not in included:
                included.append(medication)
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found),
        "entry": [{"resource": r} for r in found] + [{"resource": m, "search": {"mode": "include"}} for m in included],
    }


def prefetch_for(templates: dict[str, str], bundle: dict[str, Any], patient: str) -> dict[str, Any]:
    return {key: run_query(t, bundle, patient) for key, t in templates.items()}


def patient_id(bundle: dict[str, Any]) -> str:
    return next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


def hook_request(hook: str, pid: str, prefetch: dict[str, Any] | None, **context: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example.org/fhir",
        "context": {"userId": "Practitioner/example", "patientId": pid, **context},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def cyclosporine_draft(
    rid: str, subject: str, mg_a_day: float, bounds: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    """A draft MedicationRequest of cyclosporine (RxNorm 3008), `mg_a_day` in two doses a day,
    `bounds` its boundsPeriod, `fields` replacing or adding top-level fields (status, intent…)."""
    repeat: dict[str, Any] = {"frequency": 2, "period": 1, "periodUnit": "d"}
    if bounds is not None:
        repeat["boundsPeriod"] = bounds
    half = {"value": mg_a_day / 2, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": subject},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "3008"}]
        },
        "dosageInstruction": [{"timing": {"repeat": repeat}, "doseAndRate": [{"doseQuantity": half}]}],
        **fields,
    }


def url_path(url: str) -> str:
    return urlsplit(url).path


def iter_rows(db: Path, sql: str) -> Iterator[tuple[Any, ...]]:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        yield from con.execute(sql).fetchall()
    finally:
        con.close()


def log_copy(server: Server, directory: Path) -> Path:
    """A consistent copy of a running server's decision log (SQLite's backup, which reads the WAL
    too), for replaying or editing while the server still holds the file."""
    copied = directory / "decisions.sqlite"
    source, target = sqlite3.connect(server.log.parent / "decisions.sqlite"), sqlite3.connect(copied)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return copied


# ---- decision-log forgeries (test_cds_log_forgery, test_cds_log_unevaluated) -------------------------
def forged_log(logged: tuple[Path, Any], tmp_path: Path, edit: Any) -> Path:
    """A copy of the logged SQLite file with `edit(connection, logged[1])` applied and committed."""
    db = tmp_path / "forged.sqlite"
    db.write_bytes(logged[0].read_bytes())
    con = sqlite3.connect(db)
    try:
        edit(con, logged[1])
        con.commit()
    finally:
        con.close()
    return db


def replay_log(db: Path) -> tuple[subprocess.CompletedProcess[str], dict[int, dict[str, Any]]]:
    """`fsgs-kb replay --decision-log DB --format json` for real; its verdicts by row (never a traceback)."""
    run = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "replay", "--decision-log", str(db), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode != 3 and "Traceback" not in run.stderr + run.stdout, run.stderr
    return run, {r["row"]: r for r in json.loads(run.stdout)["decisions"]} if run.stdout.strip() else {}
