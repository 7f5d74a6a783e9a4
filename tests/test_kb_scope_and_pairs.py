"""Clinical knowledge lives in rules/: the scope's explanation (kb.yaml `scope`) and the pairs of
rules on either side of a threshold (a rule's `complements`) are data. Edited in a copy of the
knowledge base, they change what results, explain and the CDS card say, and which rules the
static checks pair, with no change of code. (The hostile cases are tests/kb_invalid/53-61.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from support import RULES

import fsgs_kb
from fsgs_kb.engine.check.static import pairs
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.report.cds import undetermined_detail
from fsgs_kb.engine.report.explain import explanation

KB_RECORD = {"id": "fsgs-csa", "version": "0", "fingerprint": "f"}
PATIENT: dict[str, Any] = {
    "id": "scope",
    "age_years": 40,
    "weight_kg": 70,
    "fsgs": {"etiology": "primary", "biopsy_proven": True},
    "cyclosporine": {"status": "current", "daily_dose": {"value": 350, "unit": "mg/day"}, "months_on_therapy": 3},
}


def _patient(**fsgs: Any) -> dict[str, Any]:
    record = json.loads(json.dumps(PATIENT))
    for key, value in fsgs.items():
        if value is None:
            del record["fsgs"][key]
        else:
            record["fsgs"][key] = value
    return record


def _edited(tmp_path: Path, edits: dict[str, list[tuple[str, str]]]) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    for name, pairs_ in edits.items():
        text = (rules / name).read_text(encoding="utf-8")
        for old, new in pairs_:
            assert text.count(old) == 1, (name, old)
            text = text.replace(old, new)
        (rules / name).write_text(text, encoding="utf-8")
    return rules


def _scopes(kb: KnowledgeBase, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The result's scope from every evaluator: compiled, reference, and compiled straight to JSON."""
    return [
        kb.evaluate(record)["scope"],
        kb.reference_evaluate(record)["scope"],
        orjson.loads(kb.evaluate_json(record))["scope"],
    ]


def _scope(kb: KnowledgeBase, record: dict[str, Any]) -> dict[str, Any]:
    """The one scope every evaluator gives."""
    first, *others = _scopes(kb, record)
    assert all(other == first for other in others), (first, others)
    return first


def test_the_bundled_scope_reasons(kb: KnowledgeBase) -> None:
    """The texts of kb.yaml, chosen by in_scope's outcome and each case's condition."""
    reason = "biopsy-proven primary (idiopathic) FSGS"
    assert _scope(kb, _patient()) == {"in_scope": True, "missing": [], "reason": reason}
    reason = "cannot tell whether the patient is in the review's scope: needs /fsgs/etiology"
    assert _scope(kb, _patient(etiology=None)) == {"in_scope": None, "missing": ["/fsgs/etiology"], "reason": reason}
    # not met, but the case's undetermined_needs reports it undetermined; the biopsy is recorded
    # (false), so it is in the reason, not under missing
    reason = "the diagnosis is not biopsy-proven"
    assert _scope(kb, _patient(biopsy_proven=False)) == {"in_scope": None, "missing": [], "reason": reason}
    # not met by the cause, which comes first (with or without a biopsy)
    reason = "the cause recorded is not primary (idiopathic) FSGS"
    for biopsy in (True, False):
        secondary = _scope(kb, _patient(etiology="secondary", biopsy_proven=biopsy))
        assert secondary == {"in_scope": False, "missing": [], "reason": reason}


def test_edited_scope_texts_change_every_output(tmp_path: Path) -> None:
    rules = _edited(
        tmp_path,
        {
            "kb.yaml": [
                ("covers: idiopathic FSGS", "covers: idiopathic FSGS (site wording)"),
                ("reason: biopsy-proven primary (idiopathic) FSGS", "reason: in scope (site wording)"),
                ("reason: the diagnosis is not biopsy-proven", "reason: no biopsy on record (site wording)"),
                ("scope: needs {missing}", "scope; record {missing} (site wording)"),
            ]
        },
    )
    kb = fsgs_kb.load(rules)
    assert _scope(kb, _patient())["reason"] == "in scope (site wording)"
    assert _scope(kb, _patient(biopsy_proven=False))["reason"] == "no biopsy on record (site wording)"
    assert _scope(kb, _patient(etiology=None, biopsy_proven=None))["reason"] == (
        "cannot tell whether the patient is in the review's scope; record /fsgs/etiology, /fsgs/biopsy_proven"
        " (site wording)"
    )
    out = _patient(etiology="secondary")
    status = explanation(kb, out, kb.evaluate(out))["status_text"]
    assert status == "out of scope: the review covers idiopathic FSGS (site wording) only"
    card = undetermined_detail(
        {"scope_reason": "r", "covers": kb.model.scope_covers, "items": [], "decision_id": "d", "kb": KB_RECORD}
    )
    assert card.startswith("The review covers idiopathic FSGS (site wording) only, and whether")


def test_a_scope_case_condition_may_read_a_field_no_rule_reads(tmp_path: Path) -> None:
    """The fields a scope case reads are read from the record, though no rule needs them."""
    rules = _edited(
        tmp_path,
        {
            "kb.yaml": [
                (
                    "    - when: {field: fsgs.biopsy_proven, eq: true}\n",
                    "    - when: {field: fsgs.secondary_cause, present: true}\n"
                    "      reason: a secondary cause is recorded, yet the etiology is primary\n"
                    "    - when: {field: fsgs.biopsy_proven, eq: true}\n",
                )
            ]
        },
    )
    kb = fsgs_kb.load(rules)
    reason = _scope(kb, _patient(secondary_cause="obesity-related"))["reason"]
    assert reason == "a secondary cause is recorded, yet the etiology is primary"
    assert _scope(kb, _patient())["reason"] == "biopsy-proven primary (idiopathic) FSGS"


def test_without_a_scope_block_the_reason_is_in_scopes_own_account(tmp_path: Path) -> None:
    """A knowledge base older than kb.yaml's `scope` (as `diff git:REV` reads one) still loads."""
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    manifest = (rules / "kb.yaml").read_text(encoding="utf-8")
    start, end = manifest.index("\nscope:\n"), manifest.index("\nchangelog:\n")
    (rules / "kb.yaml").write_text(manifest[:start] + manifest[end:], encoding="utf-8")
    kb = fsgs_kb.load(rules)
    assert kb.model.scope == () and kb.model.scope_covers is None
    assert _scope(kb, _patient())["reason"].startswith("fsgs.etiology = primary")
    out = _patient(etiology="secondary")
    assert explanation(kb, out, kb.evaluate(out))["status_text"] == "out of scope"


def test_pairs_are_the_declared_complements(kb: KnowledgeBase, tmp_path: Path) -> None:
    """The static checks pair what `complements` declares, advice first; the ids play no part."""
    assert [(a.id, b.id) for a, b in pairs(kb.model)] == [
        ("CSA-DOSE-WITHIN", "CSA-DOSE-EXCEEDS"),
        ("CSA-DUR-WITHIN", "CSA-DUR-EXCEEDS"),
    ]
    rules = _edited(
        tmp_path,
        {
            "recommendations/CSA-DOSE-WITHIN.yaml": [("complements: CSA-DOSE-EXCEEDS\n", "")],
            "recommendations/CSA-DOSE-EXCEEDS.yaml": [("complements: CSA-DOSE-WITHIN\n", "")],
        },
    )
    unpaired = fsgs_kb.load(rules)
    assert [(a.id, b.id) for a, b in pairs(unpaired.model)] == [("CSA-DUR-WITHIN", "CSA-DUR-EXCEEDS")]


@pytest.mark.parametrize("covers", ["idiopathic FSGS", None])
def test_the_cds_scope_card_names_who_the_review_covers(covers: str | None) -> None:
    detail = {"scope_reason": "the diagnosis is not biopsy-proven", "items": [], "decision_id": "d", "kb": KB_RECORD}
    if covers:
        detail["covers"] = covers
    text = undetermined_detail(detail)
    first = text.splitlines()[0]
    if covers:
        assert first.startswith("The review covers idiopathic FSGS only, and whether this patient has it")
    else:
        assert first.startswith("Whether the review applies to this patient cannot be told: the diagnosis")
