"""The FHIR map for people: which resources and codes feed each patient field, and where each code
was checked (or the note saying it was not). One listing (engine/fhir/requirements.map_listing),
three renderings: the handbook page (HTML), the handbook's Markdown section and `audit`'s text.
"""

from __future__ import annotations

import html
from typing import Any

from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.fhir.requirements import map_listing
from fsgs_kb.engine.report.mdtext import md_code, md_text


def _esc(text: Any) -> str:
    return html.escape(" ".join(str(text).split()))


def _how(src: dict[str, Any]) -> str:
    parts = [src["how"]]
    if src["lookback_days"] is not None:
        parts.append(f"look-back {src['lookback_days']} days")
    if src["units"]:
        parts.append("units " + ", ".join(src["units"]))
    return "; ".join(parts)


def _policy(fmap: FhirMap) -> str:
    if fmap.settings["unverified_codes"] == "use":
        return "unverified codes are USED (settings.unverified_codes: use)"
    return "unverified codes are ignored (settings.unverified_codes: ignore): fields they alone would fill stay empty"


def map_html(fmap: FhirMap | None) -> str:
    """The body of the handbook's FHIR map page."""
    if fmap is None:
        return "<p>This knowledge base has no FHIR map (rules/fhir-map.yaml).</p>"
    unverified = len(fmap.unverified_codes())
    head = (
        f"<p>Map version {_esc(fmap.version)} for FHIR {_esc(fmap.data['fhir_version'])} "
        f"(sha256 <code>{fmap.sha256[:16]}</code>): {len(fmap.code_info)} codes, {unverified} not verified; "
        f"{_esc(_policy(fmap))}. Fields no standard code carries are read from an Observation coded "
        f"<code>{_esc(fmap.settings['local_systems']['field'])}|&lt;field path&gt;</code>.</p>"
    )
    rows = []
    for item in map_listing(fmap):
        schema = "" if item["in_patient_schema"] else ' <span class="muted">(carried under /ext)</span>'
        for i, src in enumerate(item["sources"]):
            codes = "".join(
                f"<li><code>{_esc(c['system'])}|{_esc(c['code'])}</code> {_esc(c['display'])} — "
                + ("verified: " if c["verified"] else '<span class="unverified">NOT verified</span>: ')
                + f"{_esc(c['provenance'])}</li>"
                for c in src["codes"]
            )
            field = f'<td id="{_esc(item["field"])}">{_esc(item["field"])}{schema}</td>' if i == 0 else "<td></td>"
            note = f'<br><span class="muted">{_esc(src["note"])}</span>' if src["note"] else ""
            rows.append(f"<tr>{field}<td>{_esc(_how(src))}{note}</td><td><ul>{codes}</ul></td></tr>")
    table = f"<table><tr><th>Field</th><th>Filled from</th><th>Codes and provenance</th></tr>{''.join(rows)}</table>"
    return head + table


def map_markdown(fmap: FhirMap | None) -> list[str]:
    """The handbook's Markdown section on the FHIR map."""
    out = ["## FHIR map", ""]
    if fmap is None:
        return out + ["This knowledge base has no FHIR map.", ""]
    out += [f"Map version {md_text(fmap.version)} (sha256 `{fmap.sha256[:16]}`); {_policy(fmap)}.", ""]
    for item in map_listing(fmap):
        out.append(f"- **{md_text(item['field'])}**" + ("" if item["in_patient_schema"] else " (carried under /ext)"))
        for src in item["sources"]:
            out.append(f"  - {md_text(_how(src))}")
            for c in src["codes"]:
                flag = "verified" if c["verified"] else "NOT verified"
                out.append(
                    f"    - `{md_code(c['system'])}|{md_code(c['code'])}` {md_text(c['display'])} — {flag}: "
                    f"{md_text(c['provenance'])}"
                )
    return out + [""]


def map_audit_lines(audit: dict[str, Any]) -> list[str]:
    """`audit`: every code of the map once, with the fields it feeds and its provenance."""
    codes = audit["codes"]
    unverified = [c for c in codes if not c["verified"]]
    policy = "used" if audit["unverified_codes"] == "use" else "ignored (the fields they alone feed stay empty)"
    lines = [
        f"FHIR map {audit['version']} (sha256 {audit['sha256'][:16]}): {len(codes)} codes, "
        f"{len(unverified)} NOT verified, which are {policy}"
    ]
    for c in codes:
        fields = ", ".join(c["fields"]) or "no field"
        where = f"verified: {c['source']}" if c["verified"] else f"NOT VERIFIED: {c['note']}"
        text = f"{c['system']}|{c['code']} {c['display']} [{c['code_set']} → {fields}] {where}"
        lines.append("  " + " ".join(text.split()))
    return lines
