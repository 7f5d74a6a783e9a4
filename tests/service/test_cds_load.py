"""Fifty concurrent signed calls to a two-worker service with a masking secret: every answer right,
no error in the server log, one decision row each in the shared SQLite log, and no clear patient
identifier anywhere in the log's files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cds_support import (
    EXAMPLES,
    PUBLIC,
    Server,
    hook_request,
    iter_rows,
    patient_bundle,
    patient_id,
    prefetch_for,
    write_config,
)

from fsgs_kb.engine.kb import KnowledgeBase

PV = "/cds-services/fsgs-csa-patient-view"
MASK_ENV = "FSGS_KB_TEST_MASK_SECRET"
CARD_KINDS = ("advice", "warning", "info")


@pytest.fixture(scope="module")
def masked_server(ehr: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("masked")
    (work / "file-jwks.json").write_text((ehr.work / "file-jwks.json").read_text())
    config = write_config(work / "cds.yaml", ehr.issuers(), mask_key_env=MASK_ENV)
    running = Server(config, workers=2, env={MASK_ENV: "a long random secret for the test"})
    yield running
    running.stop()


def test_fifty_concurrent_calls_two_workers(masked_server: Server, ehr: Any, kb: KnowledgeBase) -> None:
    headers = {"Authorization": "Bearer " + ehr.signer.token(PUBLIC + "/cds-services")}
    templates = masked_server.client.get("/cds-services", headers=headers).json()["services"][0]["prefetch"]
    records = [json.loads(p.read_text()) for p in EXAMPLES]
    jobs = []
    for i in range(50):
        record = records[i % len(records)]
        bundle = patient_bundle(record)
        pid = patient_id(bundle)
        expected = kb.evaluate(record)
        fired = [e["id"] for e in expected["rules"] if e["outcome"] == "fired" and e["kind"] in CARD_KINDS]
        jobs.append((hook_request("patient-view", pid, prefetch_for(templates, bundle, pid)), fired, record["id"]))
    tokens = [ehr.signer.token(PUBLIC + PV) for _ in jobs]

    def send(i: int) -> tuple[int, Any]:
        with httpx.Client(base_url=masked_server.base, timeout=60) as client:
            answer = client.post(PV, json=jobs[i][0], headers={"Authorization": f"Bearer {tokens[i]}"})
            return answer.status_code, answer.json()

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(send, range(len(jobs))))
    for (status, body), (_, fired, _) in zip(answers, jobs, strict=True):
        assert status == 200, body
        codes = [c["source"]["topic"]["code"] for c in body["cards"] if c["source"]["topic"]["code"] != "UNDETERMINED"]
        assert codes == fired
    log = masked_server.log_text()
    assert "ERROR" not in log and "Traceback" not in log, log
    assert log.count("Started server process") == 2
    db = masked_server.log.parent / "decisions.sqlite"
    instances = {row[0] for row in iter_rows(db, "SELECT hook_instance FROM decisions")}
    assert instances == {job[0]["hookInstance"] for job in jobs}
    check_masked(db, {job[2] for job in jobs} | {job[0]["context"]["patientId"] for job in jobs})


def check_masked(db: Path, identifiers: set[str]) -> None:
    for pid, result in iter_rows(db, "SELECT patient, result FROM decisions"):
        assert pid.startswith("hmac-sha256:")
        assert json.loads(result)["patient_id"].startswith("hmac-sha256:")
    blobs = b"".join(p.read_bytes() for p in db.parent.glob("decisions.sqlite*"))
    for ident in identifiers:
        assert ident.encode() not in blobs, ident
    replay = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "replay", "--decision-log", str(db)], capture_output=True, text=True
    )
    assert replay.returncode == 0 and "50 replayed" in replay.stdout and "(100.0 %)" in replay.stdout, replay.stdout
