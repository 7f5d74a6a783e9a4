"""The service's configuration file: strict YAML, checked against schema/cds-config.schema.json.

Read with the same safe YAML loader as the rules, so a mistake is reported at file:line:col the
way a rule's is. Beyond the schema: trusted key locations must be https (http only on a loopback
host, for development and tests), issuers are unique, a key file exists, and a configured masking
secret is actually set. Relative paths are relative to the configuration file, so a service starts
the same from any working directory.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fsgs_kb.engine.errors import KBError, KBErrors, pointer_join
from fsgs_kb.engine.load.schemas import schema_errors
from fsgs_kb.engine.load.yamlsafe import MAX_FILE_BYTES, Located, parse_yaml

SCHEMA = "cds-config"
DEFAULT_REFETCH_SECONDS = 30.0
DEFAULT_JWKS_MAX_AGE_SECONDS = 300.0  # a key removed from the EHR's JWKS is refused within this time
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
DEFAULT_READ_TIMEOUT_SECONDS = 20.0  # a request's head, then its body, must each arrive within this


@dataclass(frozen=True)
class Issuer:
    """One trusted EHR: its iss, where its keys are, and the only jku values it may name."""

    iss: str
    jwks_url: str | None
    jwks_file: Path | None
    allowed_jku: tuple[str, ...]

    @property
    def key_source(self) -> str:
        """The default key set: the URL, or the file as a path string."""
        return self.jwks_url or str(self.jwks_file)


@dataclass(frozen=True)
class ServiceConfig:
    file: Path
    public_base_url: str  # without a trailing slash
    issuers: dict[str, Issuer]
    allow_drafts: bool
    decision_log: Path
    cors_origins: tuple[str, ...]
    rules: Path | None
    fhir_map: Path | None
    mask_key_env: str | None
    handbook_url: str
    jwks_refetch_seconds: float
    max_request_bytes: int
    jwks_max_age_seconds: float = DEFAULT_JWKS_MAX_AGE_SECONDS
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS
    fetch_medications: bool = False  # opt-in: read a Medication an order names, not sent (fhirfetch.py)

    def mask_key(self) -> bytes | None:
        """The masking secret from the environment, if one is configured."""
        if not self.mask_key_env:
            return None
        value = os.environ.get(self.mask_key_env)
        return value.encode("utf-8") if value else None

    def url(self, path: str) -> str:
        """The public URL of a path of this service: what a JWT's aud must be."""
        return self.public_base_url + path


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secure_url(url: str) -> bool:
    """https anywhere; plain http only to this machine."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname))


def _url_errors(doc: Located) -> list[KBError]:
    data = doc.data
    hint = "use https (plain http is accepted only for 127.0.0.1, ::1 or localhost)"
    checks = [("/public_base_url", data.get("public_base_url"))]
    for i, issuer in enumerate(data.get("trusted_issuers", [])):
        base = pointer_join("/trusted_issuers", i)
        checks.append((pointer_join(base, "jwks_url"), issuer.get("jwks_url")))
        checks += [(pointer_join(base, "allowed_jku", j), u) for j, u in enumerate(issuer.get("allowed_jku", []))]
    return [
        doc.error("config.insecure_url", f"{url} is not a secure URL", pointer, hint)
        for pointer, url in checks
        if isinstance(url, str) and not secure_url(url)
    ]


def _issuer_errors(doc: Located, base: Path) -> list[KBError]:
    out: list[KBError] = []
    seen: set[str] = set()
    for i, issuer in enumerate(doc.data.get("trusted_issuers", [])):
        pointer = pointer_join("/trusted_issuers", i)
        if issuer["iss"] in seen:
            out.append(doc.error("config.duplicate_issuer", f"issuer {issuer['iss']} is listed twice", pointer))
        seen.add(issuer["iss"])
        if "jwks_file" in issuer and not (base / issuer["jwks_file"]).is_file():
            out.append(
                doc.error(
                    "config.no_jwks_file",
                    f"JWKS file {issuer['jwks_file']} does not exist",
                    pointer_join(pointer, "jwks_file"),
                    "paths are relative to the configuration file",
                )
            )
    return out


def _path_errors(doc: Located, base: Path) -> list[KBError]:
    """The files and directories the configuration names, checked where it names them (a
    missing rules directory or an unwritable log's directory is the configuration's mistake)."""
    hint = "paths are relative to the configuration file"
    out: list[KBError] = []
    rules = doc.data.get("rules")
    if rules and not (base / str(rules) / "kb.yaml").is_file():
        what = "is not a knowledge base (no kb.yaml in it)" if (base / str(rules)).is_dir() else "does not exist"
        out.append(doc.error("config.no_rules", f"rules directory {rules} {what}", "/rules", hint))
    fhir_map = doc.data.get("fhir_map")
    if fhir_map and not (base / str(fhir_map)).is_file():
        out.append(doc.error("config.no_fhir_map", f"FHIR map {fhir_map} does not exist", "/fhir_map", hint))
    log = doc.data.get("decision_log")
    if log:
        folder = (base / str(log)).parent
        if not folder.is_dir():
            out.append(
                doc.error(
                    "config.decision_log",
                    f"the decision log's directory {folder} does not exist",
                    "/decision_log",
                    hint,
                )
            )
        elif (base / str(log)).is_dir():
            out.append(doc.error("config.decision_log", f"decision_log {log} is a directory", "/decision_log", hint))
    return out


def _mask_errors(doc: Located) -> list[KBError]:
    name = doc.data.get("mask_key_env")
    if name and not os.environ.get(name):
        return [
            doc.error(
                "config.mask_key_unset",
                f"mask_key_env names ${name}, which is not set (or empty)",
                "/mask_key_env",
                f"export {name}=<a long random secret>, or remove mask_key_env to store identifiers in clear",
            )
        ]
    return []


def _read(path: Path) -> bytes:
    """The file's bytes, bounded like a knowledge-base file."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise KBErrors([KBError("config.io", f"cannot read: {exc.strerror}", str(path), 1, 1)]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise KBErrors([KBError("config.too_large", f"larger than {MAX_FILE_BYTES} bytes", str(path), 1, 1)])
    return raw


def load_config(path: Path) -> ServiceConfig:
    """Read and check a configuration file; raise KBErrors listing every problem with its place."""
    doc = parse_yaml(_read(path), str(path))
    errors = schema_errors(SCHEMA, doc)
    if errors:
        raise KBErrors(errors)
    base = path.resolve().parent
    errors = _url_errors(doc) + _issuer_errors(doc, base) + _path_errors(doc, base) + _mask_errors(doc)
    if errors:
        raise KBErrors(errors)
    return _build(doc.data, path, base)


def _build(data: dict[str, Any], path: Path, base: Path) -> ServiceConfig:
    def rel(value: Any) -> Path | None:
        return base / str(value) if value else None

    issuers = {
        i["iss"]: Issuer(i["iss"], i.get("jwks_url"), rel(i.get("jwks_file")), tuple(i.get("allowed_jku", [])))
        for i in data["trusted_issuers"]
    }
    public = str(data["public_base_url"]).rstrip("/")
    log = rel(data["decision_log"])
    assert log is not None
    return ServiceConfig(
        file=path.resolve(),
        public_base_url=public,
        issuers=issuers,
        allow_drafts=bool(data.get("allow_drafts", False)),
        decision_log=log,
        cors_origins=tuple(data.get("cors_origins", [])),
        rules=rel(data.get("rules")),
        fhir_map=rel(data.get("fhir_map")),
        mask_key_env=data.get("mask_key_env"),
        handbook_url=str(data.get("handbook_url") or public + "/handbook/"),
        jwks_refetch_seconds=float(data.get("jwks_refetch_seconds", DEFAULT_REFETCH_SECONDS)),
        max_request_bytes=int(data.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES)),
        jwks_max_age_seconds=float(data.get("jwks_max_age_seconds", DEFAULT_JWKS_MAX_AGE_SECONDS)),
        read_timeout_seconds=float(data.get("read_timeout_seconds", DEFAULT_READ_TIMEOUT_SECONDS)),
        fetch_medications=bool(data.get("fetch_medications", False)),
    )
