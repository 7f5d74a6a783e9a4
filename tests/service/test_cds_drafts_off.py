"""allow_drafts: false with a knowledge base whose rules are all drafts: no advice card, and the
service says why (in its discovery descriptions and in its log)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cds_support import PUBLIC, Server, example, hook_request, patient_bundle, patient_id, prefetch_for, write_config

from fsgs_kb.engine.kb import KnowledgeBase

PV = "/cds-services/fsgs-csa-patient-view"


@pytest.fixture(scope="module")
def strict_server(ehr: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("strict")
    (work / "file-jwks.json").write_text((ehr.work / "file-jwks.json").read_text())
    running = Server(write_config(work / "cds.yaml", ehr.issuers(), allow_drafts=False))
    yield running
    running.stop()


def test_only_signed_off_rules_give_cards(strict_server: Server, ehr: Any, kb: KnowledgeBase) -> None:
    everything = f"all {len(kb.model.rules)} rules"
    auth = {"Authorization": "Bearer " + ehr.signer.token(PUBLIC + "/cds-services")}
    services = strict_server.client.get("/cds-services", headers=auth).json()["services"]
    assert all(everything in s["description"] and "no advice cards" in s["description"] for s in services)
    for name in ("dose-above-ceiling", "missing-weight", "not-biopsy-proven"):
        bundle = patient_bundle(example(name))
        pid = patient_id(bundle)
        body = hook_request("patient-view", pid, prefetch_for(services[0]["prefetch"], bundle, pid))
        answer = strict_server.client.post(
            PV, json=body, headers={"Authorization": "Bearer " + ehr.signer.token(PUBLIC + PV)}
        )
        assert answer.status_code == 200 and answer.json() == {"cards": []}, name
    assert f"allow_drafts is false and {everything}" in strict_server.log_text()
