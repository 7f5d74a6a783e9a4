"""A key the EHR removes from its JWKS stops being accepted within `jwks_max_age_seconds` (sooner
when the JWKS answer's Cache-Control max-age says so), and at once when a `jwks_file` changes.
Before, a key set was fetched again only for an unknown kid, so a revoked key stayed trusted until
the service restarted.

Real servers (`fsgs-kb serve` subprocesses) and real key servers on loopback, as in test_cds_auth.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cds_support import PUBLIC, KeyServer, Server, Signer, hook_request, write_config

PV = "/cds-services/fsgs-csa-patient-view"
AUD = PUBLIC + PV
MAX_AGE = 2  # seconds, the configuration's jwks_max_age_seconds in the first server


class Keys:
    """Three issuers: one whose JWKS says nothing of caching, one whose JWKS says max-age=1, one
    with a key file."""

    def __init__(self, work: Path) -> None:
        self.plain, self.cached, self.filed = (Signer(kid=f"k-{n}", iss=f"https://{n}.example.org") for n in "abc")
        self.plain_keys = KeyServer([self.plain.jwk()])
        self.cached_keys = KeyServer([self.cached.jwk()], cache_control="public, max-age=1")
        self.file = work / "jwks.json"
        self.file.write_text(json.dumps({"keys": [self.filed.jwk()]}))

    def issuers(self) -> list[dict[str, Any]]:
        return [
            {"iss": self.plain.iss, "jwks_url": self.plain_keys.url},
            {"iss": self.cached.iss, "jwks_url": self.cached_keys.url},
            {"iss": self.filed.iss, "jwks_file": self.file.name},
        ]


@pytest.fixture()
def keys(tmp_path: Path) -> Iterator[Keys]:
    made = Keys(tmp_path)
    yield made
    made.plain_keys.close()
    made.cached_keys.close()


def serve(keys: Keys, tmp_path: Path, max_age: float) -> Server:
    config = write_config(tmp_path / "cds.yaml", keys.issuers(), jwks_refetch_seconds=1, jwks_max_age_seconds=max_age)
    return Server(config)


def status(server: Server, signer: Signer) -> int:
    body = hook_request("patient-view", "nobody", {})
    headers = {"Authorization": "Bearer " + signer.token(AUD)}
    return int(server.client.post(PV, json=body, headers=headers).status_code)  # 412: through the gate


def refused_within(server: Server, signer: Signer, limit: float) -> float:
    """Seconds until a token of `signer` is refused (401), polling; fails past `limit`."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if status(server, signer) == 401:
            return time.monotonic() - start
        time.sleep(0.1)  # polling interval; the loop ends on the observed answer
    raise AssertionError(f"a removed key was still accepted after {limit} s")


def test_a_key_removed_from_the_jwks_is_refused_within_the_maximum_age(keys: Keys, tmp_path: Path) -> None:
    server = serve(keys, tmp_path, MAX_AGE)
    try:
        assert status(server, keys.plain) == 412
        fetched = keys.plain_keys.requests
        keys.plain_keys.keys = []  # the EHR revokes its key
        assert status(server, keys.plain) == 412  # the set is cached, not fetched per call
        assert keys.plain_keys.requests == fetched
        assert refused_within(server, keys.plain, MAX_AGE + 3) <= MAX_AGE + 1
        assert keys.plain_keys.requests == fetched + 1
        assert "unknown kid" in server.log_text()
    finally:
        server.stop()


def test_the_jwks_cache_control_max_age_shortens_it(keys: Keys, tmp_path: Path) -> None:
    """max-age=1 from the JWKS answer, 300 s in the configuration: refused within about a second."""
    server = serve(keys, tmp_path, 300)
    try:
        assert status(server, keys.cached) == 412 and status(server, keys.plain) == 412
        keys.cached_keys.keys = []
        assert refused_within(server, keys.cached, 4) <= 2.5
        keys.plain_keys.keys = []  # no Cache-Control: kept for the configured 300 s
        assert status(server, keys.plain) == 412
    finally:
        server.stop()


def test_a_jwks_file_is_read_again_when_it_changes(keys: Keys, tmp_path: Path) -> None:
    server = serve(keys, tmp_path, 300)
    try:
        assert status(server, keys.filed) == 412
        keys.file.write_text(json.dumps({"keys": []}))
        assert status(server, keys.filed) == 401  # at once, not after 300 s
        keys.file.write_text(json.dumps({"keys": [keys.filed.jwk()]}))
        assert status(server, keys.filed) == 412
    finally:
        server.stop()


def test_a_key_set_past_its_age_that_cannot_be_fetched_is_not_trusted(keys: Keys, tmp_path: Path) -> None:
    """Fail closed: the EHR's JWKS endpoint gone, its keys are not trusted past the maximum age."""
    server = serve(keys, tmp_path, MAX_AGE)
    try:
        assert status(server, keys.plain) == 412
        keys.plain_keys.close()
        refused_within(server, keys.plain, MAX_AGE + 3)
        assert "key set unavailable" in server.log_text()
    finally:
        server.stop()
