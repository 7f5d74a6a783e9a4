"""A cache of validated knowledge bases, so that a one-patient command starts fast.

Loading means parsing ~20 YAML files, importing jsonschema and running every check: about
0.2 s, most of a command-line evaluation. A knowledge base that validated cleanly is pickled
under a key made of the exact bytes of every file it read (rules and schemas) and the engine
version; any edit gives a new key, so a stale cache cannot be used. The cache lives in
$FSGS_KB_CACHE, else $XDG_CACHE_HOME/fsgs-kb, else ~/.cache/fsgs-kb; set FSGS_KB_CACHE=off to
disable it. A cache that cannot be read or written is ignored.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

from fsgs_kb.engine.check.validate import ValidationReport
from fsgs_kb.engine.load.paths import schema_dir
from fsgs_kb.engine.version import __version__

CACHE_ENV = "FSGS_KB_CACHE"
FORMAT = b"fsgs-kb-cache-2"


def _cache_dir() -> Path | None:
    setting = os.environ.get(CACHE_ENV)
    if setting == "off":
        return None
    if setting:
        return Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fsgs-kb"


def content_key(rules_dir: Path) -> str | None:
    """sha256 over every YAML file of the knowledge base and every schema, by name and bytes."""
    digest = hashlib.sha256(FORMAT + __version__.encode())
    try:
        files = sorted(rules_dir.rglob("*.yaml")) + sorted(schema_dir().glob("*.json"))
        for path in files:
            digest.update(str(path.resolve()).encode() + b"\0" + path.read_bytes() + b"\0")
    except OSError:
        return None
    return digest.hexdigest()


def load_cached(key: str) -> ValidationReport | None:
    directory = _cache_dir()
    if directory is None:
        return None
    try:
        with open(directory / f"{key}.pickle", "rb") as handle:
            report: ValidationReport = pickle.load(handle)
        return report
    except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError, TypeError):
        return None


def store(key: str, report: ValidationReport) -> None:
    directory = _cache_dir()
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f"{key}.{os.getpid()}.tmp"
        with open(temporary, "wb") as handle:
            pickle.dump(report, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, directory / f"{key}.pickle")
    except (OSError, pickle.PickleError, TypeError):
        return
