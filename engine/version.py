"""Versions from the installed package metadata: pyproject.toml is the one source of truth."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def _installed(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:  # a checkout imported without installing: say so, never guess
        return "0+unknown"


__version__ = _installed("fsgs-kb")
DURABLE_RULES_VERSION = _installed("durable_rules")
