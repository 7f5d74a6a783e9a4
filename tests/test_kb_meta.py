"""The bundled knowledge base itself: every required rule, cited, quoted verbatim, with provenance."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import RULES, SHARED

from fsgs_kb.cli import main
from fsgs_kb.engine.check.checks import normalise
from fsgs_kb.engine.check.validate import validate_dir

REQUIRED_IDS = {
    "SCOPE-OUT",
    "SR-NOT-CONFIRMED",
    "CSA-SR-CANDIDATE",
    "CSA-PRIMARY-GC-RISK",
    "CSA-DOSE-WITHIN",
    "CSA-DOSE-EXCEEDS",
    "CSA-DUR-WITHIN",
    "CSA-DUR-EXCEEDS",
    "CSA-MONITOR-BP",
    "CSA-BP-ABOVE-TARGET",
    "CSA-MONITOR-RENAL",
    "CSA-NEPHROTOX-SUSPECTED",
    "CSA-RELAPSE-REINTRODUCE",
}


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    return validate_dir(RULES)


def test_bundled_kb_is_clean(report) -> None:  # type: ignore[no-untyped-def]
    assert report.problems == []


def test_every_required_rule_is_present(report) -> None:  # type: ignore[no-untyped-def]
    assert REQUIRED_IDS <= set(report.load.model.rules)


def test_every_rule_cites_a_verbatim_sentence(report) -> None:  # type: ignore[no-untyped-def]
    model = report.load.model
    for rule in model.rules.values():
        assert rule.citations or (rule.kind == "caveat" and rule.provenance_kind), rule.id
        for quote in (*rule.citations, rule.evidence):
            sentence = model.sources[quote.source].sentences[quote.sentence]
            assert normalise(quote.quote) in normalise(sentence), (rule.id, quote.quote)
        assert rule.evidence.sentence == "S3", rule.id


def test_unsigned_rules_ship_as_drafts(report) -> None:  # type: ignore[no-untyped-def]
    for rule in report.load.model.rules.values():
        assert rule.status == "draft" and not rule.approved_by, rule.id


def test_sentences_match_the_pubmed_record(report) -> None:  # type: ignore[no-untyped-def]
    """The sentences in rules/sources are the seed abstract, word for word, in order."""
    seed_files = sorted((SHARED / "seed").glob("*.txt")) if SHARED.is_dir() else []
    if not seed_files:
        pytest.skip("the shared seed is not beside this checkout")
    seed = normalise(seed_files[0].read_text(encoding="utf-8"))
    source = report.load.model.sources["cattran-2003"]
    body = " ".join(normalise(source.sentences[f"S{i}"]) for i in range(1, 8))
    assert body in seed
    assert normalise(source.sentences["T"]) in seed


def test_every_parameter_has_exactly_one_provenance(report) -> None:  # type: ignore[no-untyped-def]
    for param in report.load.model.parameters.values():
        assert param.provenance_kind in ("source", "cited", "local"), param.name
        if param.provenance_kind == "cited":
            assert isinstance(param.provenance["verified"], bool)
        if param.provenance_kind == "local":
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", param.provenance["decided_on"])
            assert not param.provenance.get("decided_by"), "nobody has signed: decided_by stays empty"


def test_thresholds_the_abstract_gives_are_sourced_and_others_are_not(report) -> None:  # type: ignore[no-untyped-def]
    params = report.load.model.parameters
    assert params["max_daily_dose"].provenance_kind == "source" and params["max_daily_dose"].value == 5
    assert params["max_duration_months"].provenance_kind == "source" and params["max_duration_months"].value == 12
    for name in (
        "nephrotoxicity_creatinine_rise",
        "bp_target_systolic_adult",
        "sr_min_high_dose_weeks_adult",
        "sr_min_high_dose_weeks_child",
        "child_age_cutoff_years",
        "high_gc_risk_factors",
    ):
        assert params[name].provenance_kind != "source", name


def test_coverage_is_reported(report) -> None:  # type: ignore[no-untyped-def]
    coverage = report.coverage
    assert coverage is not None and coverage.uncovered == [] and coverage.total == 8
    assert set(coverage.not_encoded) == {"S1", "S2", "S3"}
    output = CliRunner().invoke(main, ["validate"]).output
    assert "coverage: 5/8 sentences encoded by rules (T, S4, S5, S6, S7)" in output


def test_yaml_files_declare_their_schema() -> None:
    """In the checkout (where editors work), every file points at its schema by a working path,
    the scenario files (rules/tests) included."""
    for path in (Path(__file__).resolve().parent.parent / "rules").rglob("*.yaml"):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = (path.parent / first.split("=", 1)[1]).resolve()
        assert target.is_file(), (path, target)
