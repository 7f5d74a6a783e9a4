"""Fixtures of the CDS Hooks service tests: key servers, signing keys and one running service
for the session (one start keeps the suite's added time small; every test still talks HTTP to the
real `fsgs-kb serve` subprocess)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cds_support import ISS, KeyServer, Server, Signer, write_config


class Ehr:
    """The test EHR: its signing key, its JWKS server, a second issuer, an attacker's key server."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.signer = Signer()
        self.keys = KeyServer([self.signer.jwk()])
        self.other = Signer(kid="other-key-1", iss="https://other-ehr.example.org")
        self.other_keys = KeyServer([self.other.jwk()])
        self.file_signer = Signer(kid="file-key-1", iss="https://file-ehr.example.org")
        (work / "file-jwks.json").write_text(json.dumps({"keys": [self.file_signer.jwk()]}))
        self.evil_keys = KeyServer([self.signer.jwk()])
        self.late = Signer(kid="late-key-1", iss="https://late-ehr.example.org")  # rotates a key in
        self.late_keys = KeyServer([self.late.jwk()])

    def issuers(self) -> list[dict[str, Any]]:
        return [
            {"iss": ISS, "jwks_url": self.keys.url, "allowed_jku": [self.keys.url]},
            {"iss": self.other.iss, "jwks_url": self.other_keys.url},
            {"iss": self.file_signer.iss, "jwks_file": "file-jwks.json"},
            {"iss": self.late.iss, "jwks_url": self.late_keys.url},
        ]

    def close(self) -> None:
        for server in (self.keys, self.other_keys, self.evil_keys, self.late_keys):
            server.close()


@pytest.fixture(scope="session")
def ehr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ehr]:
    found = Ehr(tmp_path_factory.mktemp("ehr"))
    yield found
    found.close()


@pytest.fixture(scope="session")
def server(ehr: Ehr) -> Iterator[Server]:
    config = write_config(ehr.work / "cds.yaml", ehr.issuers(), jwks_refetch_seconds=1)
    running = Server(config)
    yield running
    running.stop()
