"""A cache of validated knowledge bases, so that a one-patient command starts fast.

Loading means parsing ~30 YAML files, importing jsonschema, running every check and proving the
rulesets in durable-rules: most of a command-line evaluation. A knowledge base that validated
cleanly is stored under a key made of the exact bytes of every file it read (rules and schemas),
the engine's version and code, durable-rules' version, the working directory (error locations
are shown relative to it), the Python build and any `nocompile` drill (whether Python compiles
the generated evaluator: compile.fallback); any edit gives a new key, so a stale entry is never used.

The cache directory ($FSGS_KB_CACHE, an absolute path, else $XDG_CACHE_HOME/fsgs-kb, else
~/.cache/fsgs-kb where the home directory exists; FSGS_KB_CACHE=off, in any case, or a relative
path disables it) may be
writable by someone else, so nothing read from it is trusted, and nothing in it can run code:
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

The cache is bounded: after each store the directory is pruned to MAX_ENTRIES entries and
MAX_CACHE_BYTES bytes, least recently used first (a hit refreshes an entry's modification time).
Pruning, and `fsgs-kb cache clear`, remove only names that are ours by pattern (`<sha256>.json`
entries, `<sha256>.pickle` leftovers of the former format, temporary files `.entry-*.tmp` and
`.secret-*.tmp` older than TEMP_MAX_AGE seconds), owned by the user, and only regular files or
symbolic links (a link is removed as a link, its target untouched); the secret, directories and
anything else are left alone, and any failure is ignored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import re
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fsgs_kb.engine.check.report import Coverage, ValidationReport
from fsgs_kb.engine.drills import planned
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.load.files import RulesFiles, kb_misnamed, kb_paths
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
MAX_ENTRIES = 64  # the bound after each store, least recently used first
MAX_CACHE_BYTES = 64 * 1024 * 1024
TEMP_MAX_AGE = 3600.0  # seconds: a younger temporary file may be a concurrent writer's
ENTRY_NAME = re.compile(r"[0-9a-f]{64}\.json")
OLD_ENTRY_NAME = re.compile(r"[0-9a-f]{64}\.pickle")  # the former, pickled format: never read
TEMP_NAME = re.compile(r"\.(?:entry|secret)-[0-9a-f]+\.tmp")
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


def _cache_setting() -> tuple[Path | None, str | None]:
    """(the cache directory, None), or (None, why the cache is off). $FSGS_KB_CACHE is `off` in
    any case with spaces around it (`OFF`, `off `: the sweep found these made a directory of that
    name in the working directory), else an absolute path (a leading `~` is the home directory).
    A relative path would be a different cache in every working directory, made wherever a
    command runs: it turns the cache off, and `cache info` says so."""
    setting = os.environ.get(CACHE_ENV)
    if setting and setting.strip():
        if setting.strip().lower() == "off":
            return None, f"{CACHE_ENV}=off"
        directory = Path(os.path.expanduser(setting))
        if not directory.is_absolute():
            return None, f"{CACHE_ENV}={setting!r} is not an absolute path"
        return directory, None
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative value is to be ignored
        return Path(xdg) / "fsgs-kb", None
    home = os.path.expanduser("~")
    if not os.path.isdir(home):  # a service account's HOME=/nonexistent: never made by a cache
        return None, f"the home directory {home} does not exist (set {CACHE_ENV} to an absolute path)"
    return Path(home) / ".cache" / "fsgs-kb", None


def _cache_dir() -> Path | None:
    return _cache_setting()[0]


def _open_to_others(directory: Path) -> str | None:
    """A warning when others may write in the cache directory (group or other write permission
    without the sticky bit): entries are still used only when their HMAC verifies, but anyone with
    that permission can remove or replace them, emptying the cache or filling it."""
    try:
        mode = directory.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        who = " and ".join(n for n, bit in (("its group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit)
        return (
            f"the cache directory is writable by {who} (mode {stat.S_IMODE(mode):04o}, no sticky bit): entries are "
            "still checked by their HMAC, but anyone who can write there can remove or replace them"
        )
    return None


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
    the engine; None when a file cannot be read safely (validation then says why). The report
    says whether Python compiles the generated evaluator (compile.fallback), so the key also
    holds what decides that besides the files: the Python build and any `nocompile` drill."""
    digest = hashlib.sha256(FORMAT + b"\0" + __version__.encode() + b"\0" + DURABLE_RULES_VERSION.encode())
    digest.update(b"\0" + _engine_signature() + b"\0" + os.getcwd().encode() + b"\0")
    digest.update(sys.version.encode() + b"\0" + ",".join(sorted(planned("nocompile"))).encode() + b"\0")
    try:
        files = RulesFiles(rules_dir)
        digest.update(files.real_root.encode() + b"\0")
        for path in kb_paths(rules_dir):
            relative = str(path.relative_to(rules_dir))
            digest.update(relative.encode() + b"\0" + files.read(path, relative) + b"\0")
        for path in kb_misnamed(rules_dir):  # not read, but each is an error
            digest.update(b"misnamed\0" + str(path.relative_to(rules_dir)).encode() + b"\0")
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


def _read_entry(fd: int) -> bytes | None:
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
    return b"".join(chunks) if size <= MAX_ENTRY_BYTES else None


def _verified(raw: bytes, secret: bytes, key: str) -> ValidationReport | None:
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


def load_cached(key: str) -> ValidationReport | None:
    """The report stored under `key`, if it is there and verifies; otherwise None (a miss). A hit
    refreshes the entry's modification time (through the open file: no path is followed twice),
    which is what "least recently used" means when the cache is pruned."""
    directory = _cache_dir()
    if directory is None:
        return None
    secret = _read_secret(directory)
    if secret is None:
        return None
    try:
        fd = os.open(directory / f"{key}.json", _READ_FLAGS)
    except OSError:
        return None
    try:
        raw = _read_entry(fd)
        report = _verified(raw, secret, key) if raw is not None else None
        if report is not None and os.utime in os.supports_fd:
            try:
                os.utime(fd)
            except OSError:
                pass
        return report
    finally:
        os.close(fd)


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
    prune(directory, keep=f"{key}.json")


# ---- the bound -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    """A file of ours in the cache directory (by name, owner and type)."""

    name: str
    size: int
    mtime_ns: int
    entry: bool  # a regular `<sha256>.json` file: counts against the bound; else removable at once


def _open_directory(directory: Path) -> int:
    return os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))


def _ours(directory_fd: int) -> list[_Found]:
    """The files in the directory that are ours: named by one of our patterns, owned by the user,
    regular files or symbolic links (never followed), temporary files only once stale."""
    if not hasattr(os, "getuid"):
        return []  # ownership cannot be checked: nothing is ours
    uid, now = os.getuid(), time.time_ns()
    found = []
    with os.scandir(directory_fd) as listing:
        for item in listing:
            name = item.name
            entry = ENTRY_NAME.fullmatch(name) is not None
            temporary = not entry and TEMP_NAME.fullmatch(name) is not None
            if not (entry or temporary or OLD_ENTRY_NAME.fullmatch(name)):
                continue
            try:
                info = item.stat(follow_symlinks=False)
            except OSError:
                continue
            link = stat.S_ISLNK(info.st_mode)
            if not (link or stat.S_ISREG(info.st_mode)) or info.st_uid != uid:
                continue
            if temporary and now - info.st_mtime_ns <= TEMP_MAX_AGE * 1e9:
                continue  # perhaps a concurrent writer's
            found.append(_Found(name, info.st_size, info.st_mtime_ns, entry and not link))
    return found


def _remove(directory_fd: int, name: str) -> OSError | None:
    """Unlink `name` (a link itself, never its target); gone already counts as removed."""
    try:
        os.unlink(name, dir_fd=directory_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return exc
    return None


def _beyond_bound(found: list[_Found], keep: str | None = None) -> list[_Found]:
    """What pruning removes: every leftover (an old pickle, a link, a stale temporary file), and
    the least recently used entries beyond MAX_ENTRIES or MAX_CACHE_BYTES (`keep`, the entry
    just stored, counts as the most recent)."""
    entries = sorted((f for f in found if f.entry), key=lambda f: (f.name == keep, f.mtime_ns, f.name), reverse=True)
    count = size = 0
    removed = [f for f in found if not f.entry]
    for position, item in enumerate(entries):
        count, size = count + 1, size + item.size
        if count > MAX_ENTRIES or size > MAX_CACHE_BYTES:
            removed += entries[position:]
            break
    return removed


def prune(directory: Path, keep: str | None = None) -> None:
    """Bound the cache directory (one listing; nothing is removed while it is within bounds).
    Every failure is ignored: the cache is an optimisation, pruning never fails a command."""
    try:
        fd = _open_directory(directory)
    except OSError:
        return
    try:
        for item in _beyond_bound(_ours(fd), keep):
            _remove(fd, item.name)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True)
class CacheInfo:
    """What `fsgs-kb cache info` shows (directory None: the cache is off)."""

    directory: Path | None
    entries: int
    bytes: int
    leftovers: int  # files of ours that are not entries (old pickles, links, stale temporary files)
    leftover_bytes: int
    max_entries: int
    max_bytes: int
    off_reason: str | None = None  # why the cache is off (directory None)
    warnings: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory) if self.directory is not None else None,
            "enabled": self.directory is not None,
            "off_reason": self.off_reason,
            "warnings": list(self.warnings),
            "entries": self.entries,
            "bytes": self.bytes,
            "leftovers": self.leftovers,
            "leftover_bytes": self.leftover_bytes,
            "max_entries": self.max_entries,
            "max_bytes": self.max_bytes,
        }


@dataclass(frozen=True)
class Cleared:
    """What `fsgs-kb cache clear` did (directory None: the cache is off, nothing removed)."""

    directory: Path | None
    files: int
    bytes: int


def _cache_error(directory: Path, doing: str, exc: OSError) -> KBErrors:
    reason = exc.strerror or str(exc)
    return KBErrors([KBError("cli.cache", f"cannot {doing} the cache directory: {reason}", file=str(directory))])


def _listing(directory: Path) -> tuple[int, list[_Found]] | None:
    """An open descriptor of the directory and what of ours it holds; None when it does not
    exist (an empty cache); any other failure is a KBError."""
    try:
        fd = _open_directory(directory)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _cache_error(directory, "open", exc) from None
    try:
        return fd, _ours(fd)
    except OSError as exc:
        os.close(fd)
        raise _cache_error(directory, "read", exc) from None


def info() -> CacheInfo:
    """The cache directory in use (or why none), its entries and their bytes, the bound, and a
    warning when others may write in it."""
    directory, off_reason = _cache_setting()
    found: list[_Found] = []
    if directory is not None and (listing := _listing(directory)) is not None:
        os.close(listing[0])
        found = listing[1]
    entries = [f for f in found if f.entry]
    leftovers = [f for f in found if not f.entry]
    return CacheInfo(
        directory=directory,
        entries=len(entries),
        bytes=sum(f.size for f in entries),
        leftovers=len(leftovers),
        leftover_bytes=sum(f.size for f in leftovers),
        max_entries=MAX_ENTRIES,
        max_bytes=MAX_CACHE_BYTES,
        off_reason=off_reason,
        warnings=tuple(w for w in [_open_to_others(directory) if directory is not None else None] if w),
    )


def clear() -> Cleared:
    """Remove every file of ours from the cache directory (by the pruning rules: never the
    secret, never a file of another user, a temporary file only once stale)."""
    directory = _cache_dir()
    if directory is None or (listing := _listing(directory)) is None:
        return Cleared(directory, 0, 0)
    fd, found = listing
    removed: list[_Found] = []
    failed: list[tuple[_Found, OSError]] = []
    try:
        for item in found:
            problem = _remove(fd, item.name)
            if problem is None:
                removed.append(item)
            else:
                failed.append((item, problem))
    finally:
        os.close(fd)
    if failed:
        item, exc = failed[0]
        reason = exc.strerror or str(exc)
        message = f"removed {len(removed)} file(s); {len(failed)} could not be removed: {item.name}: {reason}"
        raise KBErrors([KBError("cli.cache", message, file=str(directory))])
    return Cleared(directory, len(removed), sum(f.size for f in removed))
