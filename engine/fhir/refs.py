"""Whether a reference names the Bundle's Patient, server included.

`Patient/123` on one FHIR server and `Patient/123` on another are two people. FHIR R4 resolves a
reference inside a Bundle against the fullUrl of the entry that holds it (Bundle "Resolving
references in Bundles"): a relative reference is on the server of its own entry, an absolute one
names its server, and a `urn:uuid:` reference matches a fullUrl exactly. So a resource is about
the Bundle's Patient when its reference is the Patient entry's fullUrl, or `Patient/<id>` read on
the Patient's server, or `<base>/Patient/<id>` with that base. When the Patient entry gives no
server (no fullUrl, or a `urn:`), the server of the referring entry stands in for it: an absolute
reference to a server that neither entry names is another server's patient. A version-specific
reference (`Patient/123/_history/2`) names the same patient as `Patient/123`: the version says
which state of the resource was seen, not who it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from fsgs_kb.engine.fhir.setaside import quoted

# [base]/[type]/[id] (FHIR R4 "Literal references"); a version part is removed first (without_version)
_RESTFUL = re.compile(
    r"^(?P<base>(?i:https?)://[^?#\s]+?)/(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})\Z"
)
_RELATIVE = re.compile(r"^Patient/(?P<id>[A-Za-z0-9\-.]{1,64})\Z")
_VERSION = re.compile(r"^[A-Za-z0-9\-.]{1,64}\Z")  # a FHIR id, as the version id of `_history/<vid>` is
HISTORY = "/_history/"
# A Patient's id as it comes from outside a Bundle, where it is all that names the patient (a Bulk
# Data export's Patient, a CDS call's context.patientId): FHIR R4's `id`, and an underscore too
# (ids minted outside FHIR carry them, and nothing here reads an id as a path).
PATIENT_ID = re.compile(r"[A-Za-z0-9\-._]{1,64}")
MAX_URL = 4096  # a longer "reference" is read as naming no patient, and never scanned by a regex


def without_version(ref: str) -> str:
    """A reference without its version part: `Patient/123/_history/2` -> `Patient/123` (FHIR R4
    "Literal references": `[type]/[id]/_history/[vid]` is a version of the resource `[type]/[id]`).
    Anything else is returned as it is."""
    head, sep, vid = ref.rpartition(HISTORY)
    return head if sep and head and len(ref) <= MAX_URL and _VERSION.match(vid) else ref


def _normal(base: str) -> str:
    """A server base compared as servers are: scheme and host in lower case, no trailing slash."""
    scheme, _, rest = base.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}".rstrip("/")


def server_of(url: str | None) -> str | None:
    """The server base of an absolute RESTful URL (`https://a.example/fhir/Observation/1` ->
    `https://a.example/fhir`); None for a `urn:`, a relative URL or anything else."""
    found = _RESTFUL.match(url) if url and len(url) <= MAX_URL else None
    return _normal(found["base"]) if found else None


def patient_ref(ref: str) -> tuple[str | None, str] | None:
    """(server base or None, `Patient/<id>`) of a relative or absolute reference to a Patient,
    version-specific or not."""
    if len(ref) > MAX_URL:
        return None
    ref = without_version(ref)
    relative = _RELATIVE.match(ref)
    if relative:
        return None, ref
    found = _RESTFUL.match(ref)
    if found and found["type"] == "Patient":
        return _normal(found["base"]), f"Patient/{found['id']}"
    return None


@dataclass(frozen=True)
class ThePatient:
    """The Bundle's Patient as references may name it: its entry's fullUrl, its id, its server."""

    full_url: str | None
    pid: str | None

    @cached_property
    def server(self) -> str | None:
        """Worked out once: `why_not` reads it for every resource of the Bundle."""
        return server_of(self.full_url)

    def named(self) -> str:
        return self.full_url or f"Patient/{self.pid}"

    def why_not(self, ref: str | None, entry_url: str | None) -> str | None:
        """None when `ref`, held by the entry whose fullUrl is `entry_url`, names this Patient;
        else why not, in words."""
        if ref is None:
            return "refers to no patient (no subject or patient reference)"
        if self.full_url is not None and without_version(ref) == self.full_url:
            return None
        ours = f"the Bundle's Patient ({quoted(self.named())})"
        parsed = patient_ref(ref)
        if parsed is None or self.pid is None or parsed[1] != f"Patient/{self.pid}":
            return f"refers to {quoted(ref)}, not {ours}"
        base, here = parsed[0], server_of(entry_url)
        if base is None:  # relative: on the server of its own entry
            if here is None or self.server is None or here == self.server:
                return None
            return f"refers to {ref} on the server of its own entry, {quoted(here)}: not {ours}"
        if base == (self.server or here):
            return None
        return f"refers to {quoted(ref)}, a patient on another server than {ours}"
