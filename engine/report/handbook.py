"""The handbook: the knowledge base as a document for clinicians, generated from the rules.

A static, self-contained HTML site (no script, no network: one inline stylesheet, the diagram
as inline SVG) or one Markdown file. Every rule is written out in plain English from its
condition, with its citation, parameters and their provenance, status and history.
"""

from __future__ import annotations

import errno
import html
import os
import secrets
from pathlib import Path
from typing import Any

from fsgs_kb.engine.explain.wording import plain_lines, provenance_label, shaping_parameters
from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.load.conditions import walk
from fsgs_kb.engine.model import KnowledgeBaseModel, ParamRef, Rule, rule_order
from fsgs_kb.engine.report.diagram import svg
from fsgs_kb.engine.report.fhir_map import map_html

STYLE = """body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
nav a{margin-right:1rem}table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3rem .5rem;
text-align:left;vertical-align:top}
blockquote{border-left:4px solid #8ab;margin:.5rem 0;padding:.2rem 1rem;background:#f4f8fa}
.kind-warning{color:#a40}.kind-advice{color:#060}.draft{background:#fe8;padding:0 .3rem}.unverified{color:#a40}
.sentence{margin:.6rem 0}.muted{color:#666}svg text{font:12px sans-serif}"""


def _esc(text: Any) -> str:
    return html.escape(" ".join(str(text).split()))


def _page(title: str, body: str, up: str = "") -> str:
    nav = " ".join(
        f'<a href="{up}{href}">{label}</a>'
        for href, label in (
            ("index.html", "Overview"),
            ("rules.html", "Rules"),
            ("source.html", "The source"),
            ("parameters.html", "Parameters"),
            ("diagram.html", "Diagram"),
            ("fhir-map.html", "FHIR map"),
            ("changelog.html", "Changelog"),
        )
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f'<meta name="viewport" content="width=device-width"><style>{STYLE}</style></head><body>'
        f"<nav>{nav}</nav><h1>{_esc(title)}</h1>{body}</body></html>\n"
    )


class Handbook:
    def __init__(self, model: KnowledgeBaseModel, fingerprint: str, fhir_map: FhirMap | None = None) -> None:
        self.model = model
        self.fingerprint = fingerprint
        self.fhir_map = fhir_map
        self.rules = sorted(model.rules.values(), key=rule_order)

    def _encoders(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for rule in self.rules:
            for quote in rule.citations:
                out.setdefault(quote.sentence, []).append(rule.id)
        return out

    def _params_of(self, rule: Rule) -> list[str]:
        names = [leaf.operand.name for leaf in walk(rule.when) if isinstance(leaf.operand, ParamRef)]
        names += shaping_parameters(self.model, rule)
        return list(dict.fromkeys(names))

    def pages(self) -> dict[str, str]:
        pages = {
            "index.html": self.index(),
            "rules.html": self.rule_index(),
            "source.html": self.source(),
            "parameters.html": self.parameters(),
            "changelog.html": self.changelog(),
            "diagram.html": _page("How patient data feeds the rules", self.diagram()),
            "fhir-map.html": _page("FHIR map: where each patient field comes from", map_html(self.fhir_map)),
        }
        for rule in self.rules:
            pages[f"rules/{rule.id}.html"] = self.rule_page(rule)
        return pages

    def index(self) -> str:
        m = self.model.manifest
        kinds: dict[str, int] = {}
        for p in self.model.parameters.values():
            kinds[p.provenance_kind] = kinds.get(p.provenance_kind, 0) + 1
        drafts = sum(1 for r in self.rules if r.status != "active")
        body = (
            f"<p>Knowledge base <b>{_esc(m['id'])}</b> version <b>{_esc(m['version'])}</b>, released "
            f"{_esc(m['released'])}; content fingerprint <code>{self.fingerprint[:16]}</code>.</p>"
            f"<p>{len(self.rules)} rules ({drafts} not yet signed off), {len(self.model.parameters)} parameters "
            f"({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}), all resting on the abstract of "
            f'<a href="source.html">the review</a>.</p><p>Every threshold says where it comes from: the review '
            f"itself, another cited publication (and whether that was verified against the primary document), "
            f"or local policy.</p>"
        )
        return _page(m["title"], body)

    def rule_index(self) -> str:
        rows = "".join(
            f'<tr><td><a href="rules/{r.id}.html">{r.id}</a></td><td class="kind-{r.kind}">{r.kind}</td>'
            f"<td>{_esc(r.title)}</td><td>{', '.join(q.sentence for q in r.citations)}</td>"
            f'<td><span class="{r.status}">{r.status}</span></td></tr>'
            for r in self.rules
        )
        return _page(
            "Rules",
            f"<table><tr><th>Rule</th><th>Kind</th><th>Title</th><th>Cites</th><th>Status</th></tr>{rows}</table>",
        )

    def rule_page(self, rule: Rule) -> str:
        condition = "".join(
            f'<div style="margin-left:{indent * 1.5}rem">{_esc(text)}</div>'
            for indent, text in plain_lines(self.model, rule.when)
        )
        quotes = "".join(
            f'<blockquote>“{_esc(q.quote)}” — <a href="../source.html#{q.sentence}">{q.sentence}</a></blockquote>'
            for q in rule.citations
        )
        params = "".join(
            f'<li><a href="../parameters.html#{n}">{n}</a>: {_esc(self.model.parameters[n].value)} '
            f"{_esc(self.model.parameters[n].unit)} — {_esc(provenance_label(self.model, n))}</li>"
            for n in self._params_of(rule)
        )
        notes = "".join(f"<li>{_esc(n)}</li>" for n in rule.interpretation)
        applicability = self._applicability(rule)
        history = "".join(
            f"<li>{_esc(h['version'])} ({_esc(h['date'])}): {_esc(h['change'])}</li>" for h in rule.history
        )
        signed = (
            f"approved by {_esc(rule.approved_by)} on {_esc(rule.approved_on)}"
            if rule.approved_by
            else "not signed off"
        )
        body = (
            f'<p><span class="kind-{rule.kind}">{rule.kind}</span> · version {rule.version} · '
            f'<span class="{rule.status}">{rule.status}</span> ({signed})</p><h2>Fires when</h2>{condition}'
            f"<h2>Says</h2><p>{_esc(rule.says)}</p>{applicability}"
            f"<h2>Source</h2>{quotes or '<p>none (see provenance)</p>'}"
            f'<p class="muted">Evidence note ({rule.evidence.sentence}): “{_esc(rule.evidence.quote)}”.</p>'
            f"<h2>Parameters</h2><ul>{params or '<li>none</li>'}</ul>"
            f"<h2>Interpretation</h2><ul>{notes or '<li>none</li>'}</ul><h2>History</h2><ul>{history}</ul>"
        )
        return _page(f"{rule.id}: {rule.title}", body, up="../")

    def _applicability(self, rule: Rule) -> str:
        """For a caveat: what it qualifies and where it comes from; for advice: its caveats."""
        if rule.kind == "caveat":
            links = ", ".join(f'<a href="{q}.html">{q}</a>' for q in rule.qualifies)
            data = rule.provenance
            if rule.provenance_kind == "source":
                sid = data["sentence"]
                where = f'the review, <a href="../source.html#{sid}">{sid}</a>: “{_esc(data["quote"])}”'
            elif rule.provenance_kind == "cited":
                flag = (
                    "verified"
                    if data["verified"]
                    else '<span class="unverified">not verified against the primary document</span>'
                )
                where = f"{_esc(data['reference'])}: {_esc(data['says'])} ({flag})"
            else:
                where = f"local policy: {_esc(data['rationale'])}"
            return (
                f"<h2>Qualifies</h2><p>{links}: shown beside that advice when it fires and this holds; "
                f"it never changes or hides it.</p><h2>Provenance</h2><p>{where}</p>"
            )
        caveats = [c for c in self.rules if rule.id in c.qualifies]
        if not caveats:
            return ""
        items = "".join(f'<li><a href="{c.id}.html">{c.id}</a>: {_esc(c.title)}</li>' for c in caveats)
        return f"<h2>Caveats (where the evidence may not apply)</h2><ul>{items}</ul>"

    def source(self) -> str:
        src = self.model.source
        record = src.record
        encoders = self._encoders()
        items = []
        for sid, text in src.sentences.items():
            if sid in encoders:
                links = ", ".join(f'<a href="rules/{r}.html">{r}</a>' for r in encoders[sid])
                status = f"encoded by {links}"
            else:
                status = f"not encoded: {_esc(src.not_encoded.get(sid, 'no reason given'))}"
            items.append(
                f'<div class="sentence" id="{sid}"><b>{sid}</b> {_esc(text)}<br>'
                f'<span class="muted">{status}</span></div>'
            )
        head = (
            f"<p>{_esc(record.get('authors', ''))}. <i>{_esc(record['title'])}</i>. {_esc(record['journal'])} "
            f"{record['year']};{_esc(record['volume'])}({_esc(record['issue'])}):{_esc(record['pages'])}. "
            f"doi:{_esc(record['doi'])}. PMID {_esc(record['pmid'])}.</p>"
            f'<p class="muted">{_esc(record.get("full_text_note", ""))}</p>'
        )
        return _page("The source: the review's abstract, sentence by sentence", head + "".join(items))

    def parameters(self) -> str:
        rows = []
        for p in self.model.parameters.values():
            data = p.provenance
            if p.provenance_kind == "source":
                detail = f'“{_esc(data["quote"])}” (<a href="source.html#{data["sentence"]}">{data["sentence"]}</a>)'
            elif p.provenance_kind == "cited":
                flag = "verified" if data["verified"] else '<span class="unverified">not verified</span>'
                detail = f"{_esc(data['reference'])}: {_esc(data['says'])} ({flag})"
            else:
                detail = (
                    f"{_esc(data['rationale'])} (decided {_esc(data['decided_on'])}; signed by: "
                    f"{_esc(data.get('decided_by') or 'nobody yet')})"
                )
            rows.append(
                f'<tr id="{p.name}"><td>{p.name}</td><td>{_esc(p.value)} {_esc(p.unit)}</td>'
                f"<td>{p.boundary or ''}</td><td>{p.provenance_kind}</td><td>{detail}</td></tr>"
            )
        return _page(
            "Parameters",
            "<table><tr><th>Name</th><th>Value</th><th>Boundary</th><th>Provenance</th>"
            f"<th>Where it comes from</th></tr>{''.join(rows)}</table>",
        )

    def changelog(self) -> str:
        entries = "".join(
            f"<h2>{_esc(e['version'])} — {_esc(e['date'])}</h2><ul>"
            + "".join(f"<li>{_esc(c)}</li>" for c in e["changes"])
            + "</ul>"
            for e in self.model.manifest["changelog"]
        )
        return _page("Changelog", entries)

    def diagram(self) -> str:
        return svg(self.model)


def write_page(path: Path, content: str) -> None:
    """Write a file without ever writing through what is there: the text goes to a new file
    (O_CREAT | O_EXCL, a random name, in the same folder) that is then renamed over `path`.
    A symbolic link planted at `path` is replaced, never followed."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_site(handbook: Handbook, out: Path) -> list[Path]:
    """Write the HTML site into `out` (created if needed). Pages are written with write_page, and
    a folder inside `out` that is a symbolic link is refused: nothing is written outside `out`."""
    out.mkdir(parents=True, exist_ok=True)
    pages = handbook.pages()
    folders = sorted({(out / name).parent for name in pages} - {out})
    for folder in folders:
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise OSError(errno.ENOTDIR, f"{folder} is not a plain folder (a symbolic link?); nothing was written")
    for folder in folders:
        folder.mkdir(exist_ok=True)
    written = []
    for name, content in pages.items():
        write_page(out / name, content)
        written.append(out / name)
    return written
