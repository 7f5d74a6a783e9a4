"""The handbook as one Markdown file (`fsgs-kb docs --format md`)."""

from __future__ import annotations

from fsgs_kb.engine.explain.wording import plain_lines, provenance_label
from fsgs_kb.engine.report.fhir_map import map_markdown
from fsgs_kb.engine.report.handbook import Handbook


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def markdown(book: Handbook) -> str:
    model = book.model
    m = model.manifest
    out = [
        f"# {m['title']}",
        "",
        f"Knowledge base `{m['id']}` version {m['version']}, released {m['released']}; "
        f"fingerprint `{book.fingerprint[:16]}`.",
        "",
        "## Rules",
        "",
    ]
    for rule in book.rules:
        out += [
            f"### {rule.id}: {_one_line(rule.title)}",
            "",
            f"{rule.kind} · version {rule.version} · {rule.status}",
            "",
            "Fires when:",
            "",
        ]
        out += [f"{'  ' * indent}- {text}" for indent, text in plain_lines(model, rule.when)]
        out += ["", f"Says: {_one_line(rule.says)}", ""]
        out += [f"> “{_one_line(q.quote)}” ({q.sentence})" for q in rule.citations]
        out += ["", *[f"- Interpretation: {_one_line(n)}" for n in rule.interpretation]]
        out += [f"- History {h['version']} ({h['date']}): {_one_line(h['change'])}" for h in rule.history] + [""]
    out += ["## The source", ""]
    encoders = book._encoders()
    for sid, text in model.source.sentences.items():
        status = (
            ("encoded by " + ", ".join(encoders[sid]))
            if sid in encoders
            else "not encoded: " + _one_line(model.source.not_encoded.get(sid, ""))
        )
        out += [f"- **{sid}** {_one_line(text)} — *{status}*"]
    out += ["", "## Parameters", "", "| Name | Value | Provenance |", "|---|---|---|"]
    out += [
        f"| {p.name} | {_one_line(p.value)} {p.unit} | {provenance_label(model, p.name)} |"
        for p in model.parameters.values()
    ]
    out += ["", *map_markdown(book.fhir_map)]
    out += ["## Changelog", ""]
    for entry in m["changelog"]:
        out += [f"- {entry['version']} ({entry['date']}): " + "; ".join(_one_line(c) for c in entry["changes"])]
    return "\n".join(out) + "\n"
