"""The handbook: the knowledge base as a document for clinicians, generated from the rules.

A static, self-contained HTML site (no script, no network: one inline stylesheet, the diagram
as inline SVG) or one Markdown file. A front page says what the knowledge base is, that it is a
draft not for clinical use while any rule is unsigned, and lists the rules by kind with a line
each; every rule is written out in clinical words from its condition, with the sentence it
rests on, its thresholds as clinicians write them and where each comes from, its reading of
the source, status and history. Every page carries the draft banner while any rule is unsigned.
"""

from __future__ import annotations

import errno
import html
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsgs_kb.engine.explain.clinical import (
    parameter_text,
    provenance_short,
    requirement_lines,
    short_reference,
)
from fsgs_kb.engine.explain.wording import shaping_parameters
from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.fresh import write_replacing
from fsgs_kb.engine.load.conditions import expression_refs, walk
from fsgs_kb.engine.load.fields import FieldInfo, catalogue
from fsgs_kb.engine.model import KnowledgeBaseModel, ParamRef, Rule, rule_order
from fsgs_kb.engine.report.diagram import svg
from fsgs_kb.engine.report.fhir_map import map_html

STYLE = """body{font:16px/1.5 system-ui,sans-serif;max-width:62rem;margin:1.5rem auto;padding:0 1rem;color:#222}
nav{border-bottom:1px solid #ccc;padding-bottom:.4rem}nav a{margin-right:1rem}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.35rem .5rem;text-align:left;
vertical-align:top}th{background:#f3f3f3}
blockquote{border-left:4px solid #8ab;margin:.5rem 0;padding:.2rem 1rem;background:#f4f8fa}
.banner{background:#fde68a;border:2px solid #b45309;color:#6b2105;padding:.5rem 1rem;font-weight:600;margin:1rem 0}
.badge{border-radius:3px;padding:0 .35rem;font-size:.85em;white-space:nowrap}
.badge.draft,.badge.retired{background:#fde68a;border:1px solid #b45309;color:#6b2105}
.badge.active{background:#dcfce7;border:1px solid #15803d;color:#14532d}
.kind-warning{color:#a40}.kind-advice{color:#060}.kind-info{color:#046}.kind-out_of_scope{color:#555}
.id{color:#666;font-family:ui-monospace,monospace;font-size:.85em;white-space:nowrap}.unverified{color:#a40;font-weight:600}
.sentence{margin:.6rem 0}.muted{color:#666}.cond div{margin:.15rem 0}
ul.rules{list-style:none;padding-left:0}ul.rules li{margin:.5rem 0}
footer{margin-top:2rem;border-top:1px solid #ccc;padding-top:.4rem;color:#666;font-size:.85em}
svg text{font:12px system-ui,sans-serif}svg .id{font:10px ui-monospace,monospace;fill:#666}"""
KIND_TITLES = (
    ("warning", "Warnings", "when something is outside what the review calls safe"),
    ("advice", "Advice", "what the review recommends or requires"),
    ("info", "Information", "facts that change how the review applies"),
    ("caveat", "Caveats", "where the evidence behind some advice may not apply"),
    ("out_of_scope", "Scope", "patients the review does not cover"),
)
KIND_WORD = {
    "warning": "warning",
    "advice": "advice",
    "info": "information",
    "caveat": "caveat",
    "out_of_scope": "scope",
}
PROVENANCE_WORDS = {"source": "from the review", "cited": "cited from another publication", "local": "local policy"}


def _esc(text: Any) -> str:
    return html.escape(" ".join(str(text).split()))


def first_sentence(text: str) -> str:
    """The first sentence of a rule's advice: its one-line summary."""
    text = " ".join(text.split())
    match = re.search(r"(?<=[a-z)]\.)\s", text)
    return text[: match.start()] if match else text


def authors_without_notes(authors: str) -> str:
    """`Cattran DC (from memory: …)` → `Cattran DC`: an editor's note is not part of a citation."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", " ".join(authors.split()))


class Handbook:
    def __init__(self, model: KnowledgeBaseModel, fingerprint: str, fhir_map: FhirMap | None = None) -> None:
        self.model = model
        self.fingerprint = fingerprint
        self.fhir_map = fhir_map
        self.rules = sorted(model.rules.values(), key=rule_order)
        self.fields: dict[str, FieldInfo] = catalogue()
        self.unsigned = [r for r in self.rules if r.status != "active"]

    # ---- page frame -----------------------------------------------------------------------------
    @property
    def banner_text(self) -> str:
        if not self.unsigned:
            return ""
        return (
            f"DRAFT — not signed off, not for clinical use. {len(self.unsigned)} of {len(self.rules)} rules "
            "have not been signed off by a clinician."
        )

    def page(self, title: str, body: str, up: str = "", subtitle: str = "") -> str:
        nav = " ".join(
            f'<a href="{up}{href}">{label}</a>'
            for href, label in (
                ("index.html", "Overview"),
                ("rules.html", "Rules"),
                ("source.html", "The source"),
                ("parameters.html", "Thresholds"),
                ("diagram.html", "Diagram"),
                ("fhir-map.html", "FHIR map"),
                ("changelog.html", "Changelog"),
            )
        )
        m = self.model.manifest
        banner = f'<div class="banner" role="alert">{_esc(self.banner_text)}</div>' if self.banner_text else ""
        sub = f'<p class="muted">{subtitle}</p>' if subtitle else ""
        footer = (
            f"<footer>{_esc(m.get('title', ''))} · knowledge base {_esc(m['id'])} version {_esc(m['version'])} · "
            f"fingerprint <code>{self.fingerprint[:16]}</code> · generated from the rules</footer>"
        )
        return (
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width"><style>{STYLE}</style></head><body>'
            f"<nav>{nav}</nav>{banner}<h1>{_esc(title)}</h1>{sub}{body}{footer}</body></html>\n"
        )

    def status_badge(self, rule: Rule) -> str:
        text = "signed off" if rule.status == "active" else f"{rule.status} — not signed off"
        return f'<span class="badge {rule.status}">{_esc(text)}</span>'

    # ---- what the pages share --------------------------------------------------------------------
    def encoders(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for rule in self.rules:
            for quote in rule.citations:
                out.setdefault(quote.sentence, []).append(rule.id)
        return out

    def params_of(self, rule: Rule) -> list[str]:
        """The parameters a rule reads, directly or through the derived values it relies on."""
        names = [leaf.operand.name for leaf in walk(rule.when) if isinstance(leaf.operand, ParamRef)]
        todo = [leaf.name for leaf in walk(rule.when) if leaf.source == "derived"]
        seen: set[str] = set()
        while todo:
            name = todo.pop(0)
            if name in seen or name not in self.model.derived:
                continue
            seen.add(name)
            spec = self.model.derived[name]
            conds = ([spec.condition] if spec.condition else []) + [w for w, _ in spec.cases]
            for leaf in (leaf for c in conds for leaf in walk(c)):
                if isinstance(leaf.operand, ParamRef):
                    names.append(leaf.operand.name)
                if leaf.source == "derived":
                    todo.append(leaf.name)
            exprs = ([spec.value] if spec.value else []) + [e for _, e in spec.cases]
            names += [r.name for e in exprs for r in expression_refs(e) if r.source == "param"]
        names += shaping_parameters(self.model, rule)
        return list(dict.fromkeys(names))

    def _users_of(self, name: str) -> list[Rule]:
        return [r for r in self.rules if name in self.params_of(r)]

    def _id_link(self, rule: Rule) -> str:
        return f'<a class="id" href="rules/{rule.id}.html" title="{_esc(rule.title)}">{rule.id}</a>'

    def _rule_link(self, rule: Rule, up: str = "") -> str:
        return f'<a href="{up}rules/{rule.id}.html">{_esc(rule.title)}</a> <span class="id">{rule.id}</span>'

    def pages(self) -> dict[str, str]:
        pages = {
            "index.html": self.index(),
            "rules.html": self.rule_index(),
            "source.html": self.source(),
            "parameters.html": self.parameters(),
            "changelog.html": self.changelog(),
            "diagram.html": self.page(
                "How patient data feeds the rules",
                '<p class="muted">Left: what is recorded about the patient. Middle: values the knowledge base '
                "computes from it. Right: the rules. Each box names the item as a clinician would, with its "
                "identifier beneath; a rule's box links to its page.</p>" + self.diagram(),
            ),
            "fhir-map.html": self.page("FHIR map: where each patient field comes from", map_html(self.fhir_map)),
        }
        for rule in self.rules:
            pages[f"rules/{rule.id}.html"] = self.rule_page(rule)
        return pages

    # ---- pages ----------------------------------------------------------------------------------
    def index(self) -> str:
        m = self.model.manifest
        kinds: dict[str, int] = {}
        for p in self.model.parameters.values():
            kinds[p.provenance_kind] = kinds.get(p.provenance_kind, 0) + 1
        groups = []
        for kind, heading, what in KIND_TITLES:
            chosen = [r for r in self.rules if r.kind == kind]
            if not chosen:
                continue
            items = "".join(
                f"<li>{self._rule_link(r)} {self.status_badge(r)}<br>{_esc(first_sentence(r.says))}</li>"
                for r in chosen
            )
            groups.append(
                f'<h3 class="kind-{kind}">{heading}</h3><p class="muted">{what}</p><ul class="rules">{items}</ul>'
            )
        provenance = ", ".join(f"{v} {PROVENANCE_WORDS.get(k, k)}" for k, v in sorted(kinds.items()))
        body = (
            f"<p>What the review <i>{_esc(self.model.source.record.get('title', ''))}</i> "
            f"({_esc(self.model.source.record.get('journal_abbreviation', ''))} "
            f"{_esc(self.model.source.record.get('year', ''))}) says about cyclosporine in idiopathic FSGS, "
            "written as rules a program can apply to a patient record. Knowledge base "
            f"<b>{_esc(m['id'])}</b> version <b>{_esc(m['version'])}</b>, released {_esc(m['released'])}; "
            f"content fingerprint <code>{self.fingerprint[:16]}</code>.</p>"
            f"<h2>The rules</h2>{''.join(groups)}"
            "<h2>How to read this</h2><ul>"
            "<li><b>A rule</b> fires for a patient when everything under <i>Fires when</i> holds. It then shows "
            "what it <i>says</i>, and the sentence of the review it rests on, quoted word for word.</li>"
            "<li><b>Warnings</b> flag what lies outside the conditions under which the review calls the drug "
            "safe; <b>advice</b> is what the review recommends or requires; <b>information</b> changes how the "
            "review applies; <b>scope</b> rules set aside patients the review does not cover.</li>"
            "<li><b>Missing data is never guessed.</b> When the record lacks a value a rule needs, the rule is "
            "<i>undetermined</i> and the program says what to record.</li>"
            f"<li><b>Every threshold says where it comes from</b> ({_esc(provenance)}): the review itself (with "
            "the sentence), another publication (and whether it was checked against that publication), or a "
            'decision of the deploying site. See <a href="parameters.html">Thresholds</a>.</li>'
            "<li><b>How the source was read</b>: where the abstract needed reading, each rule says how.</li>"
            "<li><b>Status</b>: a rule is a <i>draft</i> until a clinician signs it off; no draft is for "
            "clinical use.</li>"
            f'<li>The rules rest on <a href="source.html">the review\'s abstract</a> alone; '
            f"{_esc(self.model.source.record.get('full_text_note', ''))}</li></ul>"
        )
        return self.page(m["title"], body)

    def rule_index(self) -> str:
        rows = "".join(
            f'<tr><td>{self._rule_link(r)}</td><td class="kind-{r.kind}">{KIND_WORD.get(r.kind, r.kind)}</td>'
            f"<td>{_esc(first_sentence(r.says))}</td><td>{', '.join(q.sentence for q in r.citations)}</td>"
            f"<td>{self.status_badge(r)}</td></tr>"
            for r in self.rules
        )
        return self.page(
            "Rules",
            "<table><tr><th>Rule</th><th>Kind</th><th>In one line</th><th>Rests on</th><th>Status</th></tr>"
            f"{rows}</table>",
        )

    def rule_page(self, rule: Rule) -> str:
        condition = "".join(
            f'<div style="margin-left:{indent * 1.5}rem">{_esc(text)}</div>'
            for indent, text in requirement_lines(self.model, self.fields, rule.when)
        ).replace(">all of:<", ">All of these:<", 1)
        quotes = "".join(
            f'<blockquote>“{_esc(q.quote)}” — <a href="../source.html#{q.sentence}">{q.sentence}</a></blockquote>'
            for q in rule.citations
        )
        params = "".join(
            f'<li><a href="../parameters.html#{n}">{_esc(self.model.parameters[n].title)}</a>: '
            f"<b>{_esc(parameter_text(self.model, n))}</b> — {_esc(provenance_short(self.model, n))} "
            f'<span class="id">{n}</span></li>'
            for n in self.params_of(rule)
        )
        notes = "".join(f"<li>{_esc(n)}</li>" for n in rule.interpretation)
        applicability = self._applicability(rule)
        history = "".join(
            f"<li>{_esc(h['version'])} ({_esc(h['date'])}): {_esc(h['change'])}</li>" for h in rule.history
        )
        signed = f" (by {_esc(rule.approved_by)} on {_esc(rule.approved_on)})" if rule.approved_by else ""
        subtitle = (
            f'<span class="id">{rule.id}</span> · <span class="kind-{rule.kind}">{KIND_WORD.get(rule.kind, rule.kind)}'
            f"</span> · version {_esc(rule.version)} · {self.status_badge(rule)}{signed}"
        )
        body = (
            f"<h2>Says</h2><p>{_esc(rule.says)}</p>{applicability}"
            f'<h2>Fires when</h2><div class="cond">{condition}</div>'
            f"<h2>Rests on</h2>{quotes or '<p>no sentence of the review (see provenance above)</p>'}"
            f'<p class="muted">Evidence note ({rule.evidence.sentence}): “{_esc(rule.evidence.quote)}”.</p>'
            f"<h2>Thresholds</h2><ul>{params or '<li>none</li>'}</ul>"
            f"<h2>How the source was read</h2><ul>{notes or '<li>no reading was needed</li>'}</ul>"
            f"<h2>History</h2><ul>{history}</ul>"
        )
        return self.page(rule.title, body, up="../", subtitle=subtitle)

    def _applicability(self, rule: Rule) -> str:
        """For a caveat: what it qualifies and where it comes from; for advice: the rule on the other
        side of its threshold (`complements`) and its caveats."""
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
        other = self.model.rules.get(rule.complements) if rule.complements else None
        pair = (
            f'<h2>The other side of the threshold</h2><p><a href="{other.id}.html">{other.id}</a>: '
            f"{_esc(other.title)}. The two never fire for the same patient and leave no value between "
            "them (validate checks it).</p>"
            if other is not None
            else ""
        )
        caveats = [c for c in self.rules if rule.id in c.qualifies]
        if not caveats:
            return pair
        items = "".join(f'<li><a href="{c.id}.html">{c.id}</a>: {_esc(c.title)}</li>' for c in caveats)
        return f"{pair}<h2>Caveats (where the evidence may not apply)</h2><ul>{items}</ul>"

    def source(self) -> str:
        src = self.model.source
        record = src.record
        encoders = self.encoders()
        items = []
        for sid, text in src.sentences.items():
            if sid in encoders:
                links = ", ".join(self._rule_link(self.model.rules[r]) for r in encoders[sid])
                status = f"encoded by {links}"
            else:
                status = f"not encoded: {_esc(src.not_encoded.get(sid, 'no reason given'))}"
            items.append(
                f'<div class="sentence" id="{sid}"><b>{sid}</b> {_esc(text)}<br>'
                f'<span class="muted">{status}</span></div>'
            )
        authors = authors_without_notes(str(record.get("authors", "")))
        head = (
            f"<p>{_esc(authors) + '. ' if authors else ''}<i>{_esc(record['title'])}</i>. {_esc(record['journal'])} "
            f"{record['year']};{_esc(record['volume'])}({_esc(record['issue'])}):{_esc(record['pages'])}. "
            f"doi:{_esc(record['doi'])}. PMID {_esc(record['pmid'])}.</p>"
            f'<p class="muted">{_esc(record.get("full_text_note", ""))}</p>'
        )
        return self.page("The source: the review's abstract, sentence by sentence", head + "".join(items))

    def parameters(self) -> str:
        rows = []
        for p in self.model.parameters.values():
            data = p.provenance
            if p.provenance_kind == "source":
                detail = (
                    f"From the review: “{_esc(data['quote'])}” "
                    f'(<a href="source.html#{data["sentence"]}">{data["sentence"]}</a>)'
                )
            elif p.provenance_kind == "cited":
                flag = (
                    "checked against that publication"
                    if data["verified"]
                    else '<span class="unverified">not verified against that publication</span>'
                )
                detail = (
                    f"Cited: {_esc(short_reference(data['reference'], data.get('year')))} — {_esc(data['says'])} "
                    f'({flag})<br><span class="muted">{_esc(data["reference"])}</span>'
                )
            else:
                detail = (
                    f"Local policy: {_esc(data['rationale'])} (decided {_esc(data['decided_on'])}; signed by: "
                    f"{_esc(data.get('decided_by') or 'nobody yet')})"
                )
            using = self._users_of(p.name)
            others = [r for r in self.rules if r not in using]
            if len(using) > len(self.rules) / 2:
                users = "every rule" + (" except " + ", ".join(self._id_link(r) for r in others) if others else "")
            else:
                users = ", ".join(self._id_link(r) for r in using) or "no rule"
            boundary = f'<br><span class="muted">{_esc(p.boundary)}</span>' if p.boundary else ""
            rows.append(
                f'<tr id="{p.name}"><td>{_esc(p.title)}<br><span class="id">{p.name}</span></td>'
                f"<td><b>{_esc(parameter_text(self.model, p.name))}</b>"
                f"{boundary}</td>"
                f"<td>{detail}</td><td>{users}</td></tr>"
            )
        return self.page(
            "Thresholds and lists",
            '<p class="muted">Every number or list a rule compares with, as clinicians write it, and where it '
            "comes from. <i>Inclusive</i>: a value exactly at the threshold counts on the side the rule "
            "states (5 mg/kg/day is within “5 mg/kg or less”); <i>exclusive</i>: it does not.</p>"
            '<table><tr><th style="width:24%">Threshold</th><th style="width:14%">Value</th>'
            '<th style="width:46%">Where it comes from</th><th>Used by</th></tr>'
            f"{''.join(rows)}</table>",
        )

    def changelog(self) -> str:
        entries = "".join(
            f"<h2>{_esc(e['version'])} — {_esc(e['date'])}</h2><ul>"
            + "".join(f"<li>{_esc(c)}</li>" for c in e["changes"])
            + "</ul>"
            for e in self.model.manifest["changelog"]
        )
        return self.page("Changelog", entries)

    def diagram(self) -> str:
        return svg(self.model, self.fields)


SITE_RECORD = ".fsgs-kb-handbook.json"  # the pages the last `docs -o` wrote into a folder
SITE_FORMAT = "fsgs-kb handbook 1"
MAX_RECORD_BYTES = 1 << 20


@dataclass
class SiteWritten:
    """What `write_site` did: the pages written, the pages of the handbook it replaced that this
    one no longer has (removed), and HTML pages it found that no handbook run recorded (left)."""

    written: list[Path]
    removed: list[Path]
    unknown: list[Path]


def write_site(handbook: Handbook, out: Path) -> SiteWritten:
    """Write the HTML site into `out` (created if needed). Pages are written with write_replacing
    (engine/fresh.py), and a folder inside `out` that is a symbolic link is refused: nothing is
    written outside `out`.

    A rule renamed or removed left its old page in the folder, with advice no longer in the
    knowledge base, linked from nowhere but found by a search or a bookmark. So the folder keeps
    a record of the pages written (SITE_RECORD), and the next run removes the pages of that record
    that it does not write again (only names it wrote: never another file, never through a link).
    HTML pages found that no run recorded (a handbook written before this record existed, or
    someone's own files) are left, and named."""
    out.mkdir(parents=True, exist_ok=True)
    pages = handbook.pages()
    folders = sorted({(out / name).parent for name in pages} - {out})
    for folder in folders:
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise OSError(errno.ENOTDIR, f"{folder} is not a plain folder (a symbolic link?); nothing was written")
    before = _recorded_pages(out)
    for folder in folders:
        folder.mkdir(exist_ok=True)
    written = []
    for name, content in pages.items():
        write_replacing(out / name, content)
        written.append(out / name)
    record = {"format": SITE_FORMAT, "pages": sorted(pages)}
    write_replacing(out / SITE_RECORD, json.dumps(record, indent=1) + "\n")
    removed = [out / name for name in sorted(set(before or ()) - set(pages)) if _remove_page(out, name)]
    known = set(pages) | set(before or ())
    unknown = sorted(  # in the folders the handbook writes only: `-o ~` must not walk a home directory
        path
        for folder in [out, *folders]
        for path in folder.glob("*.html")
        if path.relative_to(out).as_posix() not in known
    )
    return SiteWritten(written, removed, unknown)


def _recorded_pages(out: Path) -> list[str] | None:
    """The page names the folder's record lists, or None (no record, or one that is not ours:
    not a regular file, too large, not our JSON, a name that is not a plain relative path)."""
    path = out / SITE_RECORD
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode) or os.lstat(path).st_size > MAX_RECORD_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != SITE_FORMAT or not isinstance(data.get("pages"), list):
        return None
    names = data["pages"]
    if not all(isinstance(n, str) and _plain_page_name(n) for n in names):
        return None
    return list(names)


def _plain_page_name(name: str) -> bool:
    parts = name.split("/")
    return name.endswith(".html") and all(part not in ("", ".", "..") and "\\" not in part for part in parts)


def _remove_page(out: Path, name: str) -> bool:
    """Remove one recorded page no longer written: a regular file (or a link, as a link) in a
    plain folder inside `out`; anything else is left. Whether it was removed."""
    path = out / name
    if any(p.is_symlink() for p in path.parents if p != out and out in p.parents):
        return False
    try:
        mode = os.lstat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            return False
        os.unlink(path)
    except OSError:
        return False
    return True
