"""Where the knowledge base and the schemas live, and which knowledge base a command uses.

The package `fsgs_kb` is the checkout's top level (see pyproject.toml), so `rules/` and
`schema/` sit beside `engine/` both in the wheel and in an editable install, where they are the
checkout's own folders.

Which knowledge base, like yamllint or ruff find their configuration: an explicit directory
(`--rules DIR`) wins, then `$FSGS_KB_RULES`, then the nearest `rules/kb.yaml` at or above the
working directory (an editor's checkout, whatever was installed), then the copy bundled with
the package. Every command says which one it used (`RulesLocation.found_by`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fsgs_kb.engine.errors import KBError, KBErrors

RULES_ENV = "FSGS_KB_RULES"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
MANIFEST = "kb.yaml"

FOUND_BY_OPTION = "--rules"
FOUND_BY_ENV = RULES_ENV
FOUND_BY_DISCOVERY = "nearest rules/kb.yaml"
FOUND_BY_BUNDLED = "bundled"
FOUND_BY_TEXT = {
    FOUND_BY_OPTION: "given with --rules",
    FOUND_BY_ENV: f"from ${RULES_ENV}",
    FOUND_BY_DISCOVERY: "the nearest rules/kb.yaml at or above the working directory",
    FOUND_BY_BUNDLED: "bundled with the installed fsgs-kb",
}


@dataclass(frozen=True)
class RulesLocation:
    """A knowledge-base directory and how it was chosen (one of the FOUND_BY_* values)."""

    path: Path
    found_by: str

    @property
    def how(self) -> str:
        return FOUND_BY_TEXT.get(self.found_by, self.found_by)


def bundled_rules_dir() -> Path:
    return PACKAGE_ROOT / "rules"


def schema_dir() -> Path:
    return PACKAGE_ROOT / "schema"


def discover_rules_dir(start: Path | None = None) -> Path | None:
    """The nearest `rules/` holding a kb.yaml, in `start` (default: the working directory) or
    one of its parents (so it is found from inside rules/ too)."""
    try:
        here = (start or Path.cwd()).resolve()
    except OSError:  # the working directory was deleted
        return None
    for directory in (here, *here.parents):
        candidate = directory / "rules"
        if (candidate / MANIFEST).is_file():
            return candidate
    return None


def untrusted(directory: Path) -> str | None:
    """Why a knowledge base found by looking upward must not be used unasked, or None.

    As git does with a repository it finds (safe.directory): a `rules/` or its kb.yaml owned by
    another user, or writable by everyone (a shared /tmp), could be anybody's, and it would
    decide every result of a run started below it. Given explicitly (--rules, $FSGS_KB_RULES),
    it is the user's choice."""
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    for path in (directory, directory / MANIFEST):
        try:
            info = path.stat()
        except OSError:
            continue
        if uid is not None and info.st_uid != uid:
            return f"{path} belongs to another user (uid {info.st_uid})"
        if info.st_mode & 0o002:
            return f"{path} is writable by every user"
    return None


def locate_rules(rules_dir: str | os.PathLike[str] | None = None, start: Path | None = None) -> RulesLocation:
    """--rules, then $FSGS_KB_RULES, then the nearest rules/kb.yaml (refused when `untrusted`),
    then the bundled copy."""
    if rules_dir:
        return RulesLocation(Path(rules_dir), FOUND_BY_OPTION)
    env = os.environ.get(RULES_ENV)
    if env:
        return RulesLocation(Path(env), FOUND_BY_ENV)
    found = discover_rules_dir(start)
    if found is not None:
        location = RulesLocation(found, FOUND_BY_DISCOVERY)
        doubt = untrusted(found)
        if doubt is not None:  # for every caller: the command line, the service, the Python API
            raise KBErrors(
                [
                    KBError(
                        "cli.rules_untrusted",
                        f"not used: {doubt} ({location.how})",
                        file=str(found),
                        hint=f"to use it anyway, pass --rules {found} (or set ${RULES_ENV})",
                    )
                ]
            )
        return location
    return RulesLocation(bundled_rules_dir(), FOUND_BY_BUNDLED)


def resolve_rules_dir(rules_dir: str | os.PathLike[str] | None) -> Path:
    """The directory `locate_rules` picks."""
    return locate_rules(rules_dir).path


def kb_identity(location: RulesLocation, manifest: dict[str, object], fingerprint: str | None) -> dict[str, object]:
    """Which knowledge base a command used, for its output: id, version, fingerprint, where, how."""
    return {
        "id": manifest.get("id"),
        "version": manifest.get("version"),
        "fingerprint": fingerprint,
        "path": str(location.path.resolve()),
        "found_by": location.found_by,
    }
