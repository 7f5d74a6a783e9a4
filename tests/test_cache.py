"""The validated-knowledge-base cache never serves a stale knowledge base."""

from __future__ import annotations

from pathlib import Path

import pytest

import fsgs_kb
from fsgs_kb.engine import cache
from fsgs_kb.engine.errors import KBErrors


def test_an_edit_is_seen_at_once(kb_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSGS_KB_CACHE", str(tmp_path / "cache"))
    first = fsgs_kb.load(kb_copy)
    assert list((tmp_path / "cache").glob("*.json")), "a clean knowledge base is cached"
    again = fsgs_kb.load(kb_copy)
    assert again.fingerprint == first.fingerprint
    params = kb_copy / "parameters.yaml"
    params.write_text(params.read_text(encoding="utf-8").replace("    value: 30\n", "    value: 25\n"), "utf-8")
    changed = fsgs_kb.load(kb_copy)
    assert changed.fingerprint != first.fingerprint
    assert changed.model.parameters["nephrotoxicity_creatinine_rise"].value == 25


def test_a_broken_edit_is_not_hidden_by_the_cache(
    kb_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FSGS_KB_CACHE", str(tmp_path / "cache"))
    fsgs_kb.load(kb_copy)
    (kb_copy / "kb.yaml").write_text("id: [", encoding="utf-8")
    with pytest.raises(KBErrors):
        fsgs_kb.load(kb_copy)


def test_cache_can_be_switched_off(kb_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSGS_KB_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    fsgs_kb.load(kb_copy)
    assert not (tmp_path / "xdg").exists()


def test_a_stored_entry_is_served(kb_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stored report decodes to the same model (a decode that fails is a silent miss, which
    once turned the cache off for every knowledge base unnoticed: keyword-only model classes)."""
    monkeypatch.setenv("FSGS_KB_CACHE", str(tmp_path / "cache"))
    first = fsgs_kb.load(kb_copy)
    key = cache.content_key(kb_copy)
    assert key is not None
    served = cache.load_cached(key)
    assert served is not None, "the entry just stored is not served"
    assert served.load.model == first.report.load.model
