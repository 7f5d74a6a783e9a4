"""Advice text keeps the source's modality and gives no instruction it does not give; local
choices are data, shown next to the values they shape (issue 12)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from fsgs_kb.cli import main
from fsgs_kb.engine.check.checks import has_phrase, normalise

ROOT = Path(__file__).resolve().parent.parent


def test_each_rule_keeps_the_modal_words_of_the_sentence_it_quotes(kb: Any) -> None:
    """The modal words of each sentence (the source file's `modality` list) that occur in a
    rule's quote must occur in the rule's text; the list itself names the hedges of S4-S7."""
    model = kb.model
    source = model.sources["cattran-2003"]
    modality = source.record["modality"]
    assert modality["S4"] == ["indicate"] and "would suggest" in modality["S7"]
    assert "should be reintroduced" in modality["S6"] and {"provided", "is safe"} <= set(modality["S5"])
    checked = 0
    for rule in model.rules.values():
        says = normalise(rule.says).lower()
        for quote in rule.citations:
            for phrase in modality.get(quote.sentence, ()):
                if has_phrase(normalise(quote.quote).lower(), phrase):
                    assert has_phrase(says, phrase), (rule.id, phrase)
                    checked += 1
    assert checked >= 11


def test_no_rule_says_a_strong_word_its_sentences_do_not(kb: Any) -> None:
    model = kb.model
    strong = model.sources["cattran-2003"].record["strong_words"]
    assert {"reassess", "show", "stop", "must"} <= set(strong)
    for rule in model.rules.values():
        sentences = [normalise(model.sources[q.source].sentences[q.sentence]).lower() for q in rule.citations]
        for word in strong:
            if has_phrase(normalise(rule.says).lower(), word):
                assert any(has_phrase(s, word) for s in sentences), (rule.id, word)


def test_doses_are_written_per_day_except_when_quoting_the_review(kb: Any) -> None:
    """S5 says "5 mg/kg"; the parameter is mg/kg/day. The text may quote the review's words,
    but its own statements of a dose say mg/kg/day."""
    for rule in kb.model.rules.values():
        text = normalise(rule.says)
        for match in re.finditer(r"\d+(\.\d+)? mg/kg(?!/day)", text):
            assert text[match.start() :].startswith("5 mg/kg or less"), (rule.id, text)


def test_the_dose_warning_gives_no_instruction(kb: Any) -> None:
    says = kb.model.rules["CSA-DOSE-EXCEEDS"].says
    assert "reassess" not in says.lower() and "5 mg/kg/day" in says
    assert "indicate" in kb.model.rules["CSA-SR-CANDIDATE"].says
    assert "would suggest" in kb.model.rules["CSA-PRIMARY-GC-RISK"].says


def _rule(result: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in result["rules"] if r["id"] == rule_id)


def test_local_choices_are_shown_next_to_the_values_they_shape(kb: Any) -> None:
    patient = json.loads((ROOT / "examples" / "dose-above-ceiling.json").read_text())
    result = kb.evaluate(patient)
    dose = _rule(result, "CSA-DOSE-EXCEEDS")
    per_kg = next(d for d in dose["derived"] if d["name"] == "dose_mg_per_kg_day")
    assert [p["parameter"] for p in per_kg["policy"]] == ["dose_weight_basis"]
    assert per_kg["policy"][0]["value"] == "actual_body_weight"
    assert per_kg["policy"][0]["provenance"]["kind"] == "local"
    compared = next(c for c in dose["conditions"] if c.get("derived") == "dose_mg_per_kg_day")
    assert compared["policy"][0]["parameter"] == "dose_weight_basis"
    months = next(
        c for c in _rule(result, "CSA-DUR-WITHIN")["conditions"] if c.get("field", "").endswith("months_on_therapy")
    )
    assert months["policy"][0]["parameter"] == "duration_basis"
    scope = next(d for d in dose["derived"] if d["name"] == "in_scope")
    assert [p["parameter"] for p in scope["policy"]] == ["in_scope_biopsy_proven"]


def test_local_choices_are_in_the_audit_and_the_handbook(tmp_path: Path) -> None:
    runner = CliRunner()
    audit = runner.invoke(main, ["audit", "--rule", "CSA-DOSE-EXCEEDS"]).output
    assert "parameter dose_weight_basis = actual body weight: local policy" in audit
    assert "parameter in_scope_biopsy_proven" in audit
    scope = runner.invoke(main, ["audit", "--rule", "SCOPE-OUT"]).output
    assert "parameter out_of_scope_etiologies = secondary or genetic: from the review, T" in scope
    assert "parameter out_of_scope_etiologies_local = undetermined: local policy" in scope
    assert runner.invoke(main, ["docs", "-o", str(tmp_path / "site")]).exit_code == 0
    page = (tmp_path / "site" / "rules" / "CSA-DUR-WITHIN.html").read_text()
    assert "duration_basis" in page and "local policy" in page


def test_a_site_may_accept_an_unbiopsied_diagnosis_by_changing_data(kb_copy: Path) -> None:
    import fsgs_kb

    params = kb_copy / "parameters.yaml"
    params.write_text(params.read_text().replace("    value: [true]\n", "    value: [true, false]\n", 1))
    patient = {
        "id": "p",
        "fsgs": {"biopsy_proven": False, "etiology": "primary"},
        "cyclosporine": {"status": "current"},
    }
    assert fsgs_kb.load().evaluate(patient)["status"] == "scope_undetermined"
    site = fsgs_kb.load(kb_copy).evaluate(patient)
    assert site["status"] == "evaluated", site["scope"]
    assert "CSA-MONITOR-RENAL" in site["advice"]


def test_a_value_just_past_a_threshold_is_never_worded_as_the_threshold(kb: Any) -> None:
    """Review 5: 350.0003 mg/day at 70 kg is 5.0000043 mg/kg/day; six significant digits wrote
    it "5", and the explanation read "dose … is 5 mg/kg/day, above 5 mg/kg/day". Every text
    (condition, derived value, explain) shows enough digits, in both evaluators, and the
    outcome is the exact one."""
    patient = json.loads((ROOT / "examples" / "dose-above-ceiling.json").read_text())
    patient["cyclosporine"]["daily_dose"] = {"value": 350.0003, "unit": "mg/day"}
    patient["weight_kg"] = 70
    for result in (kb.evaluate(patient), kb.reference_evaluate(patient)):
        rules = {rule["id"]: rule for rule in result["rules"]}
        assert rules["CSA-DOSE-EXCEEDS"]["outcome"] == "fired"
        texts = [c["text"] for c in rules["CSA-DOSE-EXCEEDS"]["conditions"] if "dose_mg_per_kg_day" in c["text"]]
        assert texts == ["dose_mg_per_kg_day = 5.000004 mg/kg/day (needs > 5 mg/kg/day): true"]
        how = [d["how"] for d in rules["CSA-DOSE-EXCEEDS"]["derived"] if d["name"] == "dose_mg_per_kg_day"]
        assert how and how[0].startswith("350.0003 mg/day ÷ 70 kg = 5.000004 mg/kg/day"), how
    out = CliRunner().invoke(main, ["explain", "-"], input=json.dumps(patient)).output
    assert "5.000004 mg/kg/day" in out and " is 5 mg/kg/day" not in out
    # a rounded value that shows it is rounded stays at six digits
    patient["cyclosporine"]["daily_dose"] = {"value": 350, "unit": "mg/day"}
    patient["weight_kg"] = 70.5
    hows = {d["how"] for r in kb.evaluate(patient)["rules"] for d in r["derived"] if d["name"] == "dose_mg_per_kg_day"}
    assert len(hows) == 1 and hows.pop().startswith("350 mg/day ÷ 70.5 kg = 4.96454 mg/kg/day")
