"""The data-flow diagram of the handbook, as inline SVG: patient fields → derived values → rules.

Each box names its item as a clinician would (the field's title from the patient schema, the
derived value's or rule's title) with its identifier beneath in small type; a title too long
for its box is shortened, and the whole title is the box's tooltip.
"""

from __future__ import annotations

import html
import textwrap

from fsgs_kb.engine.load.conditions import expression_refs, walk
from fsgs_kb.engine.load.fields import FieldInfo
from fsgs_kb.engine.model import KnowledgeBaseModel, rule_order

ROW, BOX_W, BOX_H, GAP_X = 58, 300, 50, 110
LINE_CHARS = 46  # of a 12px title in a 300px box; two lines at most


def _edges(model: KnowledgeBaseModel) -> tuple[list[str], list[str], list[str], set[tuple[str, str]]]:
    edges: set[tuple[str, str]] = set()
    for d in model.derived.values():
        conds = ([d.condition] if d.condition else []) + [w for w, _ in d.cases]
        exprs = ([d.value] if d.value else []) + [e for _, e in d.cases]
        for leaf in (leaf for c in conds for leaf in walk(c)):
            edges.add((("f:" if leaf.source == "field" else "d:") + leaf.name, "d:" + d.name))
        for ref in (r for e in exprs for r in expression_refs(e) if r.source != "param"):
            edges.add((("f:" if ref.source == "field" else "d:") + ref.name, "d:" + d.name))
    for rule in model.rules.values():
        for leaf in walk(rule.when):
            edges.add((("f:" if leaf.source == "field" else "d:") + leaf.name, "r:" + rule.id))
    fields = sorted({a[2:] for a, _ in edges if a.startswith("f:")})
    derived = [n for n in model.derived_order]
    rules = [r.id for r in sorted(model.rules.values(), key=rule_order)]
    return fields, derived, rules, edges


def _title(model: KnowledgeBaseModel, fields: dict[str, FieldInfo], col: str, name: str) -> str:
    if col == "f":
        info = fields.get(name)
        title = info.title if info is not None and info.title else name
    elif col == "d":
        title = model.derived[name].title
    else:
        title = model.rules[name].title
    title = " ".join(title.split())
    return title[0].upper() + title[1:] if title else name


def _fit(text: str) -> list[str]:
    """The title on at most two lines, shortened at a word with … when longer."""
    lines = textwrap.wrap(text, LINE_CHARS)
    if len(lines) > 2:
        lines = [lines[0], textwrap.shorten(" ".join(lines[1:]), LINE_CHARS, placeholder="…")]
    return lines


def svg(model: KnowledgeBaseModel, fields: dict[str, FieldInfo]) -> str:
    names, derived, rules, edges = _edges(model)
    columns = {"f": names, "d": derived, "r": rules}
    x = {"f": 10, "d": 10 + BOX_W + GAP_X, "r": 10 + 2 * (BOX_W + GAP_X)}
    pos = {f"{col}:{name}": (x[col], 40 + i * ROW) for col, items in columns.items() for i, name in enumerate(items)}
    height = 50 + ROW * max(len(v) for v in columns.values())
    width = 20 + 3 * BOX_W + 2 * GAP_X
    parts = [
        f'<svg id="dataflow" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="max-width:100%;height:auto" role="img" '
        'aria-label="Patient data feeds computed values and rules">'
    ]
    for col, title in (("f", "Recorded about the patient"), ("d", "Computed from the record"), ("r", "Rules")):
        parts.append(f'<text x="{x[col]}" y="24" font-weight="bold">{title}</text>')
    for source, target in sorted(edges):
        if source in pos and target in pos:
            (x1, y1), (x2, y2) = pos[source], pos[target]
            parts.append(
                f'<path d="M{x1 + BOX_W},{y1 + BOX_H / 2} C{x1 + BOX_W + 50},{y1 + BOX_H / 2} '
                f'{x2 - 50},{y2 + BOX_H / 2} {x2},{y2 + BOX_H / 2}" fill="none" stroke="#8ab" '
                f'stroke-width="1"/>'
            )
    for key, (bx, by) in pos.items():
        col, name = key.split(":", 1)
        fill = {"f": "#eef", "d": "#efe", "r": "#fee"}[col]
        if col == "r" and model.rules[name].status != "active":
            fill = "#fde68a"  # unsigned: the banner's colour
        title = _title(model, fields, col, name)
        ident = name + (" · draft" if col == "r" and model.rules[name].status != "active" else "")
        box = (
            f"<g><title>{html.escape(title)} ({html.escape(name)})</title>"
            f'<rect x="{bx}" y="{by}" width="{BOX_W}" height="{BOX_H}" rx="4" fill="{fill}" stroke="#99a"/>'
            + "".join(
                f'<text x="{bx + 6}" y="{by + 15 + 14 * i}">{html.escape(line)}</text>'
                for i, line in enumerate(_fit(title))
            )
            + f'<text class="id" x="{bx + 6}" y="{by + 43}">{html.escape(ident)}</text></g>'
        )
        parts.append(f'<a href="rules/{name}.html">{box}</a>' if col == "r" else box)
    parts.append("</svg>")
    return "".join(parts)
