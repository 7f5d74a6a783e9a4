"""The handbook as one Markdown file (`fsgs-kb docs --format md`): the same content as the site."""

from __future__ import annotations

from fsgs_kb.engine.explain.clinical import parameter_text, provenance_short, requirement_lines
from fsgs_kb.engine.report.fhir_map import map_markdown
from fsgs_kb.engine.report.handbook import KIND_TITLES, KIND_WORD, Handbook, authors_without_notes, first_sentence
from fsgs_kb.engine.report.mdtext import md_cell as _cell
from fsgs_kb.engine.report.mdtext import md_code as _code
from fsgs_kb.engine.report.mdtext import md_text as _one_line


def markdown(book: Handbook) -> str:
    model = book.model
    m = model.manifest
    out = [f"# {_one_line(m['title'])}", ""]
    if book.banner_text:
        out += [f"> **{_one_line(book.banner_text)}**", ""]
    out += [
        f"Knowledge base `{_code(m['id'])}` version {_one_line(m['version'])}, released {_one_line(m['released'])}; "
        f"fingerprint `{book.fingerprint[:16]}`.",
        "",
        "## The rules",
        "",
    ]
    for kind, heading, what in KIND_TITLES:
        chosen = [r for r in book.rules if r.kind == kind]
        if chosen:
            out += [f"**{heading}** ({what}):", ""]
            out += [
                f"- [{_one_line(r.title)}](#{_code(r.id.lower())}) `{_code(r.id)}` ({_one_line(r.status)}): "
                f"{_one_line(first_sentence(r.says))}"
                for r in chosen
            ]
            out.append("")
    out += [
        "## How to read this",
        "",
        "- A rule fires when everything under *Fires when* holds; it then says what is under *Says* and rests on the "
        "quoted sentence of the review.",
        "- Missing data is never guessed: a rule that needs it is *undetermined*.",
        "- Every threshold says where it comes from: the review, another publication (verified or not), or local "
        "policy.",
        "- A rule is a *draft* until a clinician signs it off; no draft is for clinical use.",
        "",
    ]
    for rule in book.rules:
        signed = "signed off" if rule.status == "active" else f"{rule.status}, not signed off"
        out += [
            f"### {_one_line(rule.id)}",
            "",
            f"**{_one_line(rule.title)}** — {_one_line(KIND_WORD.get(rule.kind, rule.kind))} · version "
            f"{_one_line(rule.version)} · {_one_line(signed)}",
            "",
            f"Says: {_one_line(rule.says)}",
            "",
            "Fires when:",
            "",
        ]
        out += [
            f"{'  ' * indent}- {_one_line(text)}" for indent, text in requirement_lines(model, book.fields, rule.when)
        ]
        out += ["", *[f"> “{_one_line(q.quote)}” ({_one_line(q.sentence)})" for q in rule.citations], ""]
        out += [
            f"- Threshold: {_one_line(model.parameters[n].title)}: {_one_line(parameter_text(model, n))} "
            f"({_one_line(provenance_short(model, n))})"
            for n in book.params_of(rule)
        ]
        out += [f"- How the source was read: {_one_line(n)}" for n in rule.interpretation]
        out += [
            f"- History {_one_line(h['version'])} ({_one_line(h['date'])}): {_one_line(h['change'])}"
            for h in rule.history
        ] + [""]
    record = model.source.record
    authors = authors_without_notes(str(record.get("authors", "")))
    out += ["## The source", "", f"{_one_line(authors) + '. ' if authors else ''}*{_one_line(record['title'])}*.", ""]
    encoders = book.encoders()
    for sid, text in model.source.sentences.items():
        status = (
            ("encoded by " + ", ".join(_one_line(e) for e in encoders[sid]))
            if sid in encoders
            else "not encoded: " + _one_line(model.source.not_encoded.get(sid, ""))
        )
        out += [f"- **{_one_line(sid)}** {_one_line(text)} — *{status}*"]
    out += ["", "## Thresholds", "", "| Threshold | Value | Where it comes from |", "|---|---|---|"]
    out += [
        f"| {_cell(p.title)} (`{_code(p.name)}`) | {_cell(parameter_text(model, p.name))} | "
        f"{_cell(provenance_short(model, p.name))} |"
        for p in model.parameters.values()
    ]
    out += ["", *map_markdown(book.fhir_map)]
    out += ["## Changelog", ""]
    for entry in m["changelog"]:
        out += [
            f"- {_one_line(entry['version'])} ({_one_line(entry['date'])}): "
            + "; ".join(_one_line(c) for c in entry["changes"])
        ]
    return "\n".join(out) + "\n"
