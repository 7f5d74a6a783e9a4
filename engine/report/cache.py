"""`fsgs-kb cache info` and `fsgs-kb cache clear` as text."""

from __future__ import annotations

from pathlib import Path

from fsgs_kb.engine.cache import CACHE_ENV, CacheInfo, Cleared
from fsgs_kb.engine.report.text import escape_control


def _size(count: int) -> str:
    return f"{count} bytes" if count < 1024 * 1024 else f"{count} bytes ({count / (1024 * 1024):.1f} MiB)"


def _where(directory: Path) -> str:
    return escape_control(str(directory))


def cache_info_text(info: CacheInfo) -> str:
    if info.directory is None:
        return f"validated-KB cache: off ({escape_control(info.off_reason or CACHE_ENV + '=off')})"
    lines = [
        f"validated-KB cache: {_where(info.directory)}",
        f"  entries: {info.entries} of at most {info.max_entries}",
        f"  size:    {_size(info.bytes)} of at most {_size(info.max_bytes)}",
    ]
    if info.leftovers:
        lines.append(f"  {info.leftovers} leftover file(s), {_size(info.leftover_bytes)}: removed at the next store")
    lines.extend(f"  warning: {warning}" for warning in info.warnings)
    return "\n".join(lines)


def cache_clear_text(cleared: Cleared) -> str:
    if cleared.directory is None:
        return f"validated-KB cache: off ({CACHE_ENV}=off): nothing removed"
    return f"removed {cleared.files} file(s), {_size(cleared.bytes)}, from {_where(cleared.directory)}"
