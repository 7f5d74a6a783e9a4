"""A file this process makes itself, for the "write a temporary file, then rename it" writers
whose temporary has a predictable name (the resume record's, the summary's)."""

from __future__ import annotations

import os


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
