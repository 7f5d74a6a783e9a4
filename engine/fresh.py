"""A file this process makes itself, for the "write a temporary file, then rename it" writers:
`create_fresh` for those whose temporary has a predictable name (the resume record's, the
summary's), `write_replacing` for a file written whole in place of whatever has its name (the
handbook's pages, the FHIR export)."""

from __future__ import annotations

import os
import secrets


def create_fresh(path: str, mode: int = 0o666) -> int:
    """A new, empty file at `path`, open for writing (a descriptor). Whatever is at that name is
    removed first — a temporary left by a killed run whose process id this one has, or a link
    somebody planted there — and the file is created with O_EXCL | O_NOFOLLOW, so what is written
    goes into a file made here, never through a symbolic or hard link into another file (opened
    with plain "w", a link at the temporary's name had the record written into its target).
    Raises OSError (a directory at that name, no permission, another writer racing for it)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def write_replacing(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) at `path` without ever writing through what is there: into a new file
    beside it (a random name, O_CREAT | O_EXCL | O_NOFOLLOW) that is then renamed over `path`.
    A symbolic link or a FIFO planted at `path` is replaced, never followed or opened (a FIFO
    would block the writer until a reader came); a directory there is an OSError (IsADirectory),
    and so is any failure, with no temporary file left. A reader sees the old file or the new one
    whole, never a partial write."""
    folder, name = os.path.split(os.fspath(path))
    temporary = os.path.join(folder, f".{name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
