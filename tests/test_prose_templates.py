"""Prose that cannot contradict the parameters: `{parameter}` in titles, advice and notes."""

from __future__ import annotations

from pathlib import Path

import fsgs_kb
from fsgs_kb.engine.load.templating import placeholders, quantity, render


def test_values_are_written_as_clinicians_write_them() -> None:
    values = {
        "dose": (4.5, "mg/kg/day"),
        "rise": (30, "%"),
        "centile": (90, "percentile"),
        "causes": (["secondary", "genetic", "undetermined"], "none"),
        "none_yet": ([], "none"),
    }
    text = "{dose}; {rise}; {centile}; {causes}; {none_yet}; {{literal}}"
    assert (
        render(text, values)
        == "4.5 mg/kg/day; 30%; the 90th percentile; secondary, genetic or undetermined; none; {literal}"
    )
    assert quantity(5.0, "mg/kg/day") == "5.0 mg/kg/day" or quantity(5, "mg/kg/day") == "5 mg/kg/day"
    assert placeholders("a {x} b {{ c }} {y}") == (["x", "y"], [])
    assert placeholders("a { b")[1] == ["{"]


def test_a_changed_parameter_changes_every_sentence_that_names_it(kb_copy: Path) -> None:
    params = kb_copy / "parameters.yaml"
    text = params.read_text(encoding="utf-8").replace("    value: 12\n", "    value: 9\n", 1)
    text = text.replace(
        "      source:\n        source: cattran-2003\n        sentence: S5\n"
        "        quote: duration to less than 12 months\n",
        '      local: {rationale: a shorter site limit, decided_on: "2026-11-30"}\n',
        1,
    )
    params.write_text(text, "utf-8")
    kb = fsgs_kb.load(kb_copy)
    exceeds, within = kb.model.rules["CSA-DUR-EXCEEDS"], kb.model.rules["CSA-DUR-WITHIN"]
    assert exceeds.title == "Current cyclosporine course at or beyond 9 months"
    assert "The current course has lasted 9 months or more" in exceeds.says
    assert (
        within.title == "Current cyclosporine course shorter than 9 months" and "shorter than 9 months" in within.says
    )
    assert "A course of exactly 9 months is not within" in within.interpretation[0]
    # the quotes of the source are never templated: they stay the review's words
    assert within.citations[0].quote == "duration to less than 12 months"


def test_the_bundled_rules_name_every_threshold(kb: fsgs_kb.KnowledgeBase) -> None:
    """No rendered text still holds a placeholder, and validate found no literal threshold."""
    for rule in kb.model.rules.values():
        for text in (rule.title, rule.says, *rule.interpretation):
            assert "{" not in text and "}" not in text, (rule.id, text)
    assert not [p for p in kb.report.problems if p.code == "rule.literal_threshold"]
