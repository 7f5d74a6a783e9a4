"""The one module that talks to durable-rules: a thin wrapper that cannot crash its caller.

durable-rules 2.0.28 has known failure modes (../shared/durable-rules-notes.md); this wrapper
avoids each one by construction rather than by recovering from it:
- `delete_state` reads uninitialised memory and can SIGSEGV → never called. One session per
  ruleset is reused: each fact is asserted, its actions drained, then retracted.
- Sessions pile up (MemoryError at ~1,024, SIGSEGV at ~6,000) → only one session ever exists.
- Nested objects and lists crashed the core → facts are flat scalars (engine.compile).
- `MessageNotHandledException` / `MessageObservedException` → the C core's result codes are
  read directly (no exception, no re-serialisation) and every fact carries a fresh id.
- An `$or` fires once per true branch → conclusions are collected into a set.
- Exceptions inside actions are swallowed by Host → no Python actions: actions are drained here.
- Host starts two timer threads calling into the core every 0.2 s, which must not survive a
  fork → the C module is used directly, and the ruleset is created lazily in the process that
  uses it (a fork is detected by pid and gets its own rulesets).
- Error 204: the core's JSON parser rejects a number with an exponent but no decimal point
  (`1e-05`, `1e+16`, `5e-324`, which is how Python writes them; orjson writes `3e-7`) → facts
  are encoded here with `fact_json` (orjson, then `1e-7` rewritten as `1.0e-7`) and rulesets
  with `durable_json`, which writes `1.0e-05`.
- Error 303 (more than 64 alpha nodes activated by one fact) → the compiler splits each level
  into rulesets whose alpha paths cannot exceed the limit (engine.compile.split_for_alpha_budget);
  should the core still refuse a fact, it is an EngineError, reported as that record's error.
The rulesets are the JSON ruleset form that `durable.engine.Host().set_rulesets` accepts.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from typing import Any

import durable_rules_engine as core
import orjson

_NAMES = itertools.count()


class EngineError(Exception):
    """durable-rules refused or failed to evaluate a fact."""


def _number(value: float) -> str:
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text


_BARE_EXPONENT = re.compile(rb"(?<=[:\[,])(-?\d+)(e[-+]?\d+)")


def fact_json(fact: dict[str, Any]) -> str:
    """A flat fact for the core: orjson, with a bare exponent (`3e-7`, `1e+16`) rewritten as
    `3.0e-7` (error 204). orjson writes an exponent only for very small or very large numbers,
    so the rewrite runs only when the text holds `e-` or `e+`; keys and strings are engine-made
    names and enum values, so no string can hold a number token that the rewrite would touch."""
    text = orjson.dumps(fact)
    if b"e-" in text or b"e+" in text:
        text = _BARE_EXPONENT.sub(rb"\1.0\2", text)
    return text.decode("utf-8")


def durable_json(value: Any) -> str:
    """JSON as the C core parses it (see error 204 above); otherwise like json.dumps."""
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{durable_json(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(durable_json(v) for v in value) + "]"
    if isinstance(value, float):
        return _number(value)
    return json.dumps(value, ensure_ascii=False)


def _action_name(message: str) -> str:
    """The rule name of an action message '{"NAME":{"m":{...}}}', without parsing the fact."""
    return message[2 : message.index('"', 2)]


class DurableRulesets:
    """Compiled rulesets, one per level, created on first use in the current process."""

    def __init__(self, levels: tuple[tuple[dict[str, Any], ...], ...], label: str) -> None:
        self.levels = levels
        self.label = label
        self._pid = -1
        self._handles: list[list[int]] = []
        self._ids = itertools.count(1)

    def _ensure(self) -> list[list[int]]:
        if self._pid != os.getpid():
            prefix = f"{self.label}_{os.getpid()}_{next(_NAMES)}"
            self._handles = [
                [
                    core.create_ruleset(f"{prefix}_L{i}_{j}", json.dumps(rs, ensure_ascii=False))
                    for j, rs in enumerate(chunks)
                ]
                for i, chunks in enumerate(self.levels)
            ]
            self._pid = os.getpid()
        return self._handles

    def fire(self, level: int, fact: dict[str, Any]) -> set[str]:
        """Assert one flat fact into a level's rulesets; return the names of the rules it fired."""
        text = fact_json({"sid": "0", "id": next(self._ids), "k": 1, **fact})
        fired: set[str] = set()
        for handle in self._ensure()[level]:
            self._fire_one(handle, text, fired)
        return fired

    @staticmethod
    def _fire_one(handle: int, text: str, fired: set[str]) -> None:
        try:
            code, state = core.assert_fact(handle, text)
            if code == 0:
                action = core.start_action_for_state(handle, state)
                message = action[1] if action else None
                while message:
                    fired.add(_action_name(message))
                    message = core.complete_and_start_action(handle, state)
        except Exception as exc:  # the C core raises plain Exception with an error code
            raise EngineError(str(exc)) from None
        finally:
            try:
                core.retract_fact(handle, text)
            except Exception:  # noqa: S110 - a fact that was never stored cannot be retracted
                pass
