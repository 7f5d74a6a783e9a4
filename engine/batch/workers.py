"""Worker processes for batch runs: each owns its knowledge base and its durable-rules rulesets.

A worker receives chunks of framed records (bytes) and answers each chunk with one block of
encoded result lines and the chunk's counts by status and rule outcome, so the parent only
orders blocks and writes them. It is a separate process so that a crash of the native engine
(SIGSEGV), a SIGKILL or running out of memory takes down only this worker. It dies with its
parent: PR_SET_PDEATHSIG where Linux offers it, and a check of its parent pid while idle.

Fault injection for tests and drills: FSGS_KB_FAULT="segv:ID,kill:ID" makes a worker crash for
real (a null-pointer read, or SIGKILL to itself) when it meets a record with that patient id.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from fsgs_kb.engine.evaluate.output import dumps_bytes
from fsgs_kb.engine.kb import KnowledgeBase, load
from fsgs_kb.engine.read.records import Record, record_value

FAULT_ENV = "FSGS_KB_FAULT"
PR_SET_PDEATHSIG = 1
IDLE_CHECK_S = 1.0


@dataclass(slots=True)
class ChunkResult:
    """The encoded results of records first..first+count-1, in order, with their counts."""

    first: int
    count: int
    blob: bytes
    by_status: dict[str, int]
    by_rule: dict[tuple[str, str], int]


def fault_plan() -> dict[str, str]:
    spec = os.environ.get(FAULT_ENV, "")
    return {target: kind for kind, _, target in (item.partition(":") for item in spec.split(",") if item)}


def _inject(faults: dict[str, str], record: Any) -> None:
    pid = record.get("id") if isinstance(record, dict) else None
    kind = faults.get(pid) if isinstance(pid, str) else None
    if kind == "segv":
        ctypes.string_at(0)  # a real segmentation fault, as the C core would cause
    elif kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)


def patient_id(record: Record) -> str | None:
    """The id of a record, read without evaluating it (to name a record that crashed or failed)."""
    data, _ = record_value(record)
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def evaluate_record(
    kb: KnowledgeBase, record: Record, faults: dict[str, str] | None = None, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The result for one input record, whatever it holds, tagged with where it came from."""
    if faults:
        _inject(faults, record_value(record)[0])
    return {"record": record.number, "line": record.line, **kb.evaluate_record(record, **(options or {}))}


def evaluate_chunk(
    kb: KnowledgeBase, chunk: list[Record], faults: dict[str, str] | None, options: dict[str, Any] | None
) -> ChunkResult:
    lines: list[bytes] = []
    by_status: Counter[str] = Counter()
    by_rule: Counter[tuple[str, str]] = Counter()
    detail = (options or {}).get("detail", "full")
    full_options = {**(options or {}), "detail": "full"}
    for record in chunk:
        result = evaluate_record(kb, record, faults, full_options)  # counts by rule at every detail level
        by_status[result["status"]] += 1
        by_rule.update((rule["id"], rule["outcome"]) for rule in result["rules"])
        if detail != "full":
            result = {"record": result["record"], "line": result["line"], **kb.reduce(result, detail)}
        lines.append(dumps_bytes(result))
    return ChunkResult(chunk[0].number, len(chunk), b"\n".join(lines) + b"\n", dict(by_status), dict(by_rule))


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); ignore Ctrl-C, which
    the terminal sends the whole process group: the parent decides how the run stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the idle check below still ends an orphan
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(0)


def serve(
    conn: Connection, kb: KnowledgeBase | None, rules_dir: str | None, options: dict[str, Any], parent: int
) -> None:
    """Worker loop. With fork the parent's loaded knowledge base is inherited; otherwise loaded."""
    die_with_parent(parent)
    try:
        kb = kb if kb is not None else load(rules_dir)
        faults = fault_plan()
        while True:
            while not conn.poll(IDLE_CHECK_S):
                if os.getppid() != parent:
                    return
            message = conn.recv()
            if message is None:
                return
            conn.send(evaluate_chunk(kb, message, faults, options))
    except (EOFError, KeyboardInterrupt, BrokenPipeError, ConnectionResetError):
        return  # the parent is gone: leave quietly
    except Exception as exc:  # a bug: die like a crash, so the parent isolates the record
        os.write(2, f"fsgs-kb worker: {type(exc).__name__}: {exc}\n".encode("utf-8", "replace"))
        os._exit(70)
