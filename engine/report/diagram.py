"""The data-flow diagram of the handbook, as inline SVG: patient fields → derived values → rules."""

from __future__ import annotations

import html

from fsgs_kb.engine.load.conditions import expression_refs, walk
from fsgs_kb.engine.model import KnowledgeBaseModel, rule_order

ROW, BOX_W, BOX_H, GAP_X = 26, 230, 20, 140


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


def svg(model: KnowledgeBaseModel) -> str:
    fields, derived, rules, edges = _edges(model)
    columns = {"f": fields, "d": derived, "r": rules}
    x = {"f": 10, "d": 10 + BOX_W + GAP_X, "r": 10 + 2 * (BOX_W + GAP_X)}
    pos = {f"{col}:{name}": (x[col], 40 + i * ROW) for col, names in columns.items() for i, name in enumerate(names)}
    height = 60 + ROW * max(len(v) for v in columns.values())
    width = 20 + 3 * BOX_W + 2 * GAP_X
    parts = [
        f'<svg id="dataflow" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Patient fields feed derived values and rules">'
    ]
    for col, title in (("f", "Patient fields"), ("d", "Derived values"), ("r", "Rules")):
        parts.append(f'<text x="{x[col]}" y="24" font-weight="bold">{title}</text>')
    for source, target in sorted(edges):
        if source in pos and target in pos:
            (x1, y1), (x2, y2) = pos[source], pos[target]
            parts.append(
                f'<path d="M{x1 + BOX_W},{y1 + BOX_H / 2} C{x1 + BOX_W + 60},{y1 + BOX_H / 2} '
                f'{x2 - 60},{y2 + BOX_H / 2} {x2},{y2 + BOX_H / 2}" fill="none" stroke="#8ab" '
                f'stroke-width="1"/>'
            )
    for key, (bx, by) in pos.items():
        col, name = key.split(":", 1)
        fill = {"f": "#eef", "d": "#efe", "r": "#fee"}[col]
        label = html.escape(name)
        link = f"rules/{name}.html" if col == "r" else ("parameters.html" if col == "p" else None)
        box = (
            f'<rect x="{bx}" y="{by}" width="{BOX_W}" height="{BOX_H}" rx="4" fill="{fill}" stroke="#99a"/>'
            f'<text x="{bx + 6}" y="{by + 14}">{label}</text>'
        )
        parts.append(f'<a href="{link}">{box}</a>' if link else box)
    parts.append("</svg>")
    return "".join(parts)
