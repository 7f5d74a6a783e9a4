"""Numbers in prose that should be parameters: a rule's title, advice text or interpretation note
that writes a threshold's value (`5 mg/kg`, `12 months`) instead of naming the parameter
(`{max_daily_dose}`) goes stale the day the parameter changes. Text inside quotation marks is
the source's own words and is left alone.
"""

from __future__ import annotations

import re
from typing import Any

from fsgs_kb.engine.errors import KBError, pointer_join
from fsgs_kb.engine.load.conditions import reach
from fsgs_kb.engine.load.templating import PLACEHOLDER, TEMPLATED_FIELDS
from fsgs_kb.engine.load.yamlsafe import Located
from fsgs_kb.engine.model import KnowledgeBaseModel, Rule

QUOTED = re.compile(r'"[^"]*"|“[^”]*”')
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:st|nd|rd|th)?(?!\w|\.\d)")  # 5, 5.0, 90th


def reached_parameters(model: KnowledgeBaseModel, rule: Rule) -> list[str]:
    return reach(model, rule)[0]


def _texts(data: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key in TEMPLATED_FIELDS:
        value = data.get(key)
        if isinstance(value, str):
            out.append((f"/{key}", value))
        elif isinstance(value, list):
            out += [(pointer_join(f"/{key}", i), v) for i, v in enumerate(value) if isinstance(v, str)]
    return out


def literal_thresholds(model: KnowledgeBaseModel, docs: dict[str, Located]) -> list[KBError]:
    """Every number in a rule's prose (outside quotation marks and placeholders) equal to the
    value of a parameter the rule uses: write `{name}` instead."""
    problems = []
    for rule in model.rules.values():
        doc = docs.get(rule.file)
        if doc is None or not isinstance(doc.data, dict):
            continue
        values = {n: model.parameters[n].value for n in reached_parameters(model, rule) if n in model.parameters}
        numeric = {
            name: float(value)
            for name, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        for pointer, text in _texts(doc.data):
            bare = PLACEHOLDER.sub(" ", QUOTED.sub(" ", text))
            for match in NUMBER.finditer(bare):
                same = [name for name, value in numeric.items() if float(match.group(1)) == value]
                if same:
                    problems.append(
                        doc.error(
                            "rule.literal_threshold",
                            f"'{match.group(1)}' in the text is the value of parameter {same[0]}: it will go "
                            "stale when the parameter changes",
                            pointer,
                            f"write {{{same[0]}}} (rendered as the value with its unit), or quote the source's words",
                            rule_id=rule.id,
                        )
                    )
    return problems
