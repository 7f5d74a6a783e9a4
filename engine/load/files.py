"""Read the files of a knowledge base: regular files inside the rules directory, of bounded size.

A rules directory is data, and may come from someone else (a pull request, an archive, a shared
drive). Whatever it holds, loading it must not read outside it, hang or exhaust memory: a
symbolic link to /etc/shadow must not have its lines printed back as "unknown field"s, a FIFO
must not block `validate` forever, a link to /dev/zero must not be read to the end. So every file
of a knowledge base is read here, and only here, and each one is
- resolved, and refused when it lies outside the rules directory (`load.outside_rules_dir`),
- opened without following a final symbolic link and without blocking (O_NOFOLLOW | O_NONBLOCK),
  then checked on the open descriptor: anything but a regular file is refused
  (`load.not_regular_file`), so a FIFO, a device or a directory is never read,
- read up to MAX_FILE_BYTES and no further (`yaml.too_large`).
A refused file's content is never read, so no error can echo it.

The folders of a knowledge base (sources/, recommendations/, tests/) are listed here too
(`yaml_files`), without hidden files and what editors leave beside the file being edited: Emacs's
lock `.#NAME.yaml` (a dangling symbolic link while the file is open, which made every command
refuse the knowledge base), its auto-save `#NAME.yaml#`, backups `NAME.yaml~` and Vim's swap
`.NAME.yaml.swp`. They are not part of the knowledge base: not read, not in its fingerprint.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from pathlib import Path

from fsgs_kb.engine.errors import KBError, KBErrors

MAX_FILE_BYTES = 256 * 1024
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def _refuse(code: str, message: str, display: str, hint: str) -> KBErrors:
    return KBErrors([KBError(code, message, display, 1, 1, hint=hint)])


IGNORED_NAMES = (".*", "*~", "#*#")  # hidden files (Emacs's .#lock, Vim's .swp), backups, auto-saves


def ignored(name: str) -> bool:
    """Whether a file name is a hidden file or an editor's dropping, never part of a knowledge base."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in IGNORED_NAMES)


def yaml_files(folder: Path) -> list[Path]:
    """The YAML files of one folder of a knowledge base, sorted, without ignored names."""
    return sorted(p for p in folder.glob("*.yaml") if not ignored(p.name))


def misnamed_yaml(folder: Path) -> list[Path]:
    """Files of a folder that hold YAML by their name but are not read, because only `*.yaml` is:
    `CSA-TROUGH-HIGH.yml`, `CSA-TROUGH-HIGH.YAML`. A rule or scenario file saved so vanished
    without a word (its scenarios never ran, and each case naming the rule got a did-you-mean
    for another rule); the loaders report each one where it is (`load.yml_name`)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [
        folder / name
        for name in names
        if not ignored(name) and os.path.splitext(name)[1].lower() in (".yaml", ".yml") and not name.endswith(".yaml")
    ]


def misnamed_error(path: Path, display: str) -> KBError:
    """The error for a file misnamed_yaml found: it is not read, and the name it needs."""
    return KBError(
        "load.yml_name",
        f"{path.name} is not read: only files named *.yaml are",
        display,
        1,
        1,
        hint=f"rename it to {os.path.splitext(path.name)[0]}.yaml",
    )


def exists(path: Path) -> bool:
    """Whether anything is there, a dangling link included (so that it is reported, not skipped)."""
    return os.path.lexists(path)


class RulesFiles:
    """Reads the files of one rules directory (its real path is resolved once)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)

    def read(self, path: Path, display: str, limit: int = MAX_FILE_BYTES) -> bytes:
        return read_regular(path, display, self.root, limit, self.real_root)


def read_regular(path: Path, display: str, root: Path, limit: int = MAX_FILE_BYTES, real_root: str = "") -> bytes:
    """The bytes of one knowledge-base file; raise KBErrors (located at the file) when it lies
    outside `root`, is not a regular file, is larger than `limit` or cannot be read.
    `real_root`, when given, is os.path.realpath(root), computed once by the caller."""
    real = os.path.realpath(path)
    real_root = real_root or os.path.realpath(root)
    if os.path.commonpath([real, real_root]) != real_root:
        raise _refuse(
            "load.outside_rules_dir",
            "leads, through a symbolic link, outside the rules directory; it was not read",
            display,
            "copy the file into the rules directory instead of linking to it",
        )
    try:
        before = os.lstat(real)
        if not stat.S_ISREG(before.st_mode):  # never open a FIFO or a device at all
            raise _refuse(
                "load.not_regular_file",
                f"is {_kind(before.st_mode)}, not a regular file; it was not read",
                display,
                "a knowledge base holds plain YAML files only",
            )
        fd = os.open(real, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a link between the two calls
            raise _refuse(
                "load.not_regular_file",
                "is a symbolic link that changed while it was read; it was not read",
                display,
                "a knowledge base holds plain YAML files only",
            ) from None
        raise KBErrors([KBError("yaml.io", f"cannot read: {exc.strerror}", display, 1, 1)]) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(
                "load.not_regular_file",
                f"is {_kind(info.st_mode)}, not a regular file; it was not read",
                display,
                "a knowledge base holds plain YAML files only",
            )
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise KBErrors([KBError("yaml.io", f"cannot read: {exc.strerror}", display, 1, 1)]) from None
    finally:
        os.close(fd)
    if size > limit:
        raise _refuse(
            "yaml.too_large",
            f"file is {max(size, info.st_size)} bytes; the limit is {limit}",
            display,
            "split it into several files",
        )
    return b"".join(chunks)


KB_FILES = (
    "kb.yaml",
    "parameters.yaml",
    "derived.yaml",
    "sources/*.yaml",  # each folder through yaml_files: without hidden files and editor droppings
    "recommendations/*.yaml",
    "tests/*.yaml",
    "fhir-map.yaml",  # checked by validate (engine.fhir.checkmap), so a cached report must key on it
)


def kb_paths(root: Path) -> list[Path]:
    """Every file a knowledge base is read from (engine.load.loader, and the scenario files of
    engine.load.scenario_files), in a fixed order; what the validated-KB cache keys on."""
    paths: list[Path] = []
    for pattern in KB_FILES:
        if "*" in pattern:
            paths.extend(yaml_files(root / pattern.split("/")[0]))
        elif exists(root / pattern):
            paths.append(root / pattern)
    return paths


def kb_misnamed(root: Path) -> list[Path]:
    """The files misnamed_yaml finds in a knowledge base's folders: they are not read, but their
    names decide errors, so the validated-KB cache keys on them too."""
    return [path for folder in ("", "sources", "recommendations", "tests") for path in misnamed_yaml(root / folder)]
