"""Worker processes for batch runs: each owns its knowledge base and its durable-rules rulesets.

A worker reads chunks of records from its pipe and sends back one serialized result line per
record. It is a separate process so that a crash of the native engine (SIGSEGV), a SIGKILL or
running out of memory takes down only this worker; the parent (engine.batch) notices, gives the
record an `engine_crash` result and starts a new worker.

Fault injection for tests and drills: FSGS_KB_FAULT="segv:ID,kill:ID" makes a worker crash for
real (a null-pointer read, or SIGKILL to itself) when it meets a record with that patient id.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
from typing import Any

from fsgs_kb.engine.batch.readers import Record
from fsgs_kb.engine.kb import KnowledgeBase

FAULT_ENV = "FSGS_KB_FAULT"


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


def evaluate_record(
    kb: KnowledgeBase, record: Record, faults: dict[str, str] | None = None, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The result for one input record, whatever it holds, tagged with where it came from."""
    if record.problem is not None:
        code, message, *pointer = record.problem
        result = kb.failed_result(code, message, record.text or "", pointer=pointer[0] if pointer else "")
        pid = record.data.get("id") if isinstance(record.data, dict) else None
        result["patient_id"] = pid if isinstance(pid, str) else None
    elif record.text is not None:
        try:
            data = json.loads(record.text)
        except json.JSONDecodeError as exc:
            result = kb.failed_result("patient.json", f"not valid JSON at column {exc.colno}: {exc.msg}", record.text)
        else:
            if faults:
                _inject(faults, data)
            result = kb.evaluate(data, **(options or {}))
    else:
        if faults:
            _inject(faults, record.data)
        result = kb.evaluate(record.data, **(options or {}))
    return {"record": record.number, "line": record.line, **result}
