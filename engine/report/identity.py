"""The line every command starts with: which knowledge base it used, and how it was found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fsgs_kb.engine.load.loader import display_path
from fsgs_kb.engine.load.paths import FOUND_BY_TEXT
from fsgs_kb.engine.report.text import escape_control


def kb_place(path: str | Path, found_by: str) -> str:
    """`rules/ (the nearest rules/kb.yaml at or above the working directory)`."""
    where = display_path(Path(path)).rstrip("/") + "/"
    return escape_control(f"{where} ({FOUND_BY_TEXT.get(found_by, found_by)})")


def kb_line(identity: dict[str, Any]) -> str:
    """`knowledge base fsgs-csa 0.1.0, fingerprint f6c57a9f5d1d, in rules/ (how it was found)`."""
    text = "knowledge base"
    if identity.get("id"):
        text += f" {identity['id']} {identity.get('version')}"
    if identity.get("fingerprint"):
        text += f", fingerprint {str(identity['fingerprint'])[:12]}"
    return escape_control(text) + ", in " + kb_place(identity["path"], str(identity.get("found_by")))
