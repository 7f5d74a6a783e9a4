"""A cache of validated knowledge bases, so that a one-patient command starts fast.

Loading means parsing ~30 YAML files, importing jsonschema, running every check and proving the
rulesets in durable-rules: most of a command-line evaluation. A knowledge base that validated
cleanly is stored under a key made of the exact bytes of every file it read (rules and schemas),
the engine's version and code, durable-rules' version and the working directory (error
locations are shown relative to it); any edit gives a new key, so a stale entry is never used.

The cache directory ($FSGS_KB_CACHE, else $XDG_CACHE_HOME/fsgs-kb, else ~/.cache/fsgs-kb;
FSGS_KB_CACHE=off disables it) may be writable by someone else, so nothing read from it is
trusted, and nothing in it can run code:
- an entry is data, never code: JSON of the validation report, whose objects can only be the
  knowledge base's own dataclasses, named in CLASSES (no pickle, no import by name);
- an entry is used only when its HMAC-SHA256 verifies, under a random per-user secret kept in
  the cache directory at mode 0600; a secret not owned by the user, readable by others, or not a
  regular file disables the cache. The MAC covers the entry's key, so a genuine entry cannot be
  replayed under another knowledge base's name;
- any failure (unreadable, not a regular file, too large, bad MAC, bad JSON, wrong version or
  shape) is a miss: the knowledge base is validated again, silently; files are opened without
  following symbolic links or blocking, and written through fresh temporary files (O_EXCL) and
  an atomic rename, so a planted link is never written through.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import stat
from pathlib import Path
from typing import Any

import orjson

from fsgs_kb.engine.check.checks import Coverage
from fsgs_kb.engine.check.validate import ValidationReport
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.load.files import RulesFiles, kb_paths
from fsgs_kb.engine.load.loader import LoadResult
from fsgs_kb.engine.load.paths import PACKAGE_ROOT, schema_dir
from fsgs_kb.engine.load.yamlsafe import Located
from fsgs_kb.engine.model import (
    AllOf,
    AnyOf,
    Compare,
    Const,
    Derived,
    KnowledgeBaseModel,
    Not,
    Op,
    Parameter,
    ParamRef,
    Quote,
    Ref,
    Rule,
    ScopeCase,
    Source,
)
from fsgs_kb.engine.version import DURABLE_RULES_VERSION, __version__

CACHE_ENV = "FSGS_KB_CACHE"
FORMAT = b"fsgs-kb-cache 4"  # 4: Rule.complements and the scope cases (KnowledgeBaseModel.scope)
SECRET_FILE = "secret.key"
SECRET_BYTES = 32
MAX_ENTRY_BYTES = 16 * 1024 * 1024
CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        ValidationReport,
        LoadResult,
        Coverage,
        KBError,
        Located,
        KnowledgeBaseModel,
        Source,
        Parameter,
        Derived,
        Rule,
        ScopeCase,
        Quote,
        Compare,
        AllOf,
        AnyOf,
        Not,
        ParamRef,
        Ref,
        Const,
        Op,
    )
}
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def _cache_dir() -> Path | None:
    setting = os.environ.get(CACHE_ENV)
    if setting == "off":
        return None
    if setting:
        return Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fsgs-kb"


# ---- the key ---------------------------------------------------------------------------------


def _engine_signature() -> bytes:
    """Name, size and modification time of every module of the package: an edited engine (a
    checkout, an editable install) never meets results of its former self."""
    parts = []
    for path in sorted([PACKAGE_ROOT / "cli.py", *(PACKAGE_ROOT / "engine").rglob("*.py")]):
        try:
            info = path.stat()
        except OSError:
            continue
        parts.append(f"{path.relative_to(PACKAGE_ROOT)}:{info.st_size}:{info.st_mtime_ns}")
    return "\n".join(parts).encode()


def content_key(rules_dir: Path) -> str | None:
    """sha256 over every file of the knowledge base and every schema, by name and bytes, and
    the engine; None when a file cannot be read safely (validation then says why)."""
    digest = hashlib.sha256(FORMAT + b"\0" + __version__.encode() + b"\0" + DURABLE_RULES_VERSION.encode())
    digest.update(b"\0" + _engine_signature() + b"\0" + os.getcwd().encode() + b"\0")
    try:
        files = RulesFiles(rules_dir)
        digest.update(files.real_root.encode() + b"\0")
        for path in kb_paths(rules_dir):
            relative = str(path.relative_to(rules_dir))
            digest.update(relative.encode() + b"\0" + files.read(path, relative) + b"\0")
        for path in sorted(schema_dir().glob("*.json")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    except (OSError, KBErrors, ValueError):
        return None
    return digest.hexdigest()


# ---- data, not code ----------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """A report as JSON-ready data: tagged lists for lists, tuples, sets and dataclasses."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("only string keys can be cached")
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, list):
        return ["L", *(encode(item) for item in value)]
    if isinstance(value, tuple):
        return ["T", *(encode(item) for item in value)]
    if isinstance(value, (set, frozenset)):
        return ["S", *(encode(item) for item in sorted(value))]
    if type(value) is Located:  # positions by the thousand: a compact form ([line, col])
        return ["P", encode(value.data), value.file, _positions(value.values), _positions(value.keys)]
    name = type(value).__name__
    if CLASSES.get(name) is type(value) and dataclasses.is_dataclass(value):
        return ["D", name, *(encode(getattr(value, f.name)) for f in dataclasses.fields(value))]
    raise TypeError(f"{name} cannot be cached")


def _positions(table: dict[str, tuple[int, int]]) -> dict[str, list[int]]:
    return {pointer: [int(line), int(col)] for pointer, (line, col) in table.items()}


def decode(data: Any) -> Any:
    """The inverse of encode; builds only the dataclasses named in CLASSES."""
    if isinstance(data, dict):
        return {key: decode(item) for key, item in data.items()}
    if not isinstance(data, list):
        return data
    tag = data[0]
    if tag == "L":
        return [decode(item) for item in data[1:]]
    if tag == "T":
        return tuple(decode(item) for item in data[1:])
    if tag == "S":
        return {decode(item) for item in data[1:]}
    if tag == "D":  # by field name: the wide model classes are keyword-only
        cls = CLASSES[data[1]]
        names = [f.name for f in dataclasses.fields(cls)]
        if len(names) != len(data) - 2:
            raise ValueError(f"{data[1]}: {len(data) - 2} fields cached, {len(names)} expected")
        return cls(**{name: decode(item) for name, item in zip(names, data[2:], strict=True)})
    if tag == "P":
        _, content, file, values, keys = data
        return Located(
            decode(content),
            str(file),
            {str(p): (int(line), int(col)) for p, (line, col) in values.items()},
            {str(p): (int(line), int(col)) for p, (line, col) in keys.items()},
        )
    raise ValueError(f"unknown tag {tag!r}")


# ---- the secret ----------------------------------------------------------------------------------


def _read_secret(directory: Path) -> bytes | None:
    """The per-user secret, if it is a regular file of ours that nobody else can read (where
    ownership cannot be checked, as on Windows, there is no secret and so no cache)."""
    if not hasattr(os, "getuid"):
        return None
    try:
        fd = os.open(directory / SECRET_FILE, _READ_FLAGS)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_uid != os.getuid()
            or info.st_mode & 0o077
            or info.st_size != SECRET_BYTES
        ):
            return None
        secret = os.read(fd, SECRET_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return secret if len(secret) == SECRET_BYTES else None


def _make_secret(directory: Path) -> bytes | None:
    """Create the secret (mode 0600, atomically: a reader never sees half of it), or read the one
    another process created first."""
    if not os.path.lexists(directory / SECRET_FILE):
        fd, temporary = _new_file(directory, ".secret-", 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(os.urandom(SECRET_BYTES))
            try:
                os.link(temporary, directory / SECRET_FILE)  # fails if one is there: never replaced
            except FileExistsError:
                pass
        finally:
            os.unlink(temporary)
    return _read_secret(directory)


def _new_file(directory: Path, prefix: str, mode: int) -> tuple[int, Path]:
    """A new file of a random name (O_CREAT | O_EXCL | O_NOFOLLOW: never one planted there)."""
    path = directory / f"{prefix}{os.urandom(8).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags, mode), path


def _mac(secret: bytes, key: str, body: bytes) -> bytes:
    return hmac.new(secret, FORMAT + b"\n" + key.encode() + b"\n" + body, hashlib.sha256).hexdigest().encode()


# ---- entries ---------------------------------------------------------------------------------------


def _read_entry(path: Path) -> bytes | None:
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ENTRY_BYTES:
            return None
        chunks, size = [], 0
        while size <= MAX_ENTRY_BYTES:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks) if size <= MAX_ENTRY_BYTES else None


def load_cached(key: str) -> ValidationReport | None:
    """The report stored under `key`, if it is there and verifies; otherwise None (a miss)."""
    directory = _cache_dir()
    if directory is None:
        return None
    secret = _read_secret(directory)
    raw = _read_entry(directory / f"{key}.json") if secret is not None else None
    if secret is None or raw is None:
        return None
    header, _, rest = raw.partition(b"\n")
    mac, _, body = rest.partition(b"\n")
    if header != FORMAT or not hmac.compare_digest(mac, _mac(secret, key, body)):
        return None
    try:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:  # Infinity or NaN from the YAML: the standard parser reads them
            data = json.loads(body)
        report = decode(data)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
        return None
    return report if isinstance(report, ValidationReport) and report.ok else None


def store(key: str, report: ValidationReport) -> None:
    """Store a clean report; any failure leaves the cache as it was."""
    directory = _cache_dir()
    if directory is None:
        return
    try:
        body = json.dumps(encode(report), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = _read_secret(directory) or _make_secret(directory)
        if secret is None:
            return
        fd, temporary = _new_file(directory, ".entry-", 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(FORMAT + b"\n" + _mac(secret, key, body) + b"\n" + body)
            os.replace(temporary, directory / f"{key}.json")
        except BaseException:
            os.unlink(temporary)
            raise
    except (OSError, TypeError, ValueError, RecursionError):
        return
