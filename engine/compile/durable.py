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
  are encoded here with `fact_json` (orjson, then `3e-7` rewritten as `3.0e-7`) and rulesets
  with `durable_json`, which writes `1.0e-05` (a threshold such as 0.00001 made every ruleset
  creation fail before rulesets went through `durable_json` too).
- Error 303 (one fact needs more than the 64 entries of the core's alpha stack) → the compiler
  splits each level into rulesets whose modelled stack bound fits (rulesets.AlphaNetwork,
  split_for_alpha_budget), and validate refuses a condition that cannot fit on its own
  (engine.compile.proof); should the core still refuse a fact, it is an EngineError, reported
  as that record's error.
- Error 113 (more than 15 all/any groups in one pattern) → refused by validate (proof).
The rulesets are the JSON ruleset form that `durable.engine.Host().set_rulesets` accepts.

`probe` proves, before a knowledge base is used, that the core accepts its rulesets and a set of
probe facts. It runs in a child process (`python -I -S`, this module's C extension only, a
timeout), so that a core that crashes or hangs on a ruleset cannot take `validate` down with it.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import durable_rules_engine as core
import orjson

_NAMES = itertools.count()
# This process's id, kept current across forks by a hook rather than asked of the kernel (a
# system call) at every fact: rulesets made in another process are recreated (see _ensure).
_PROCESS = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PROCESS.__setitem__(0, os.getpid()))
_CREATING = [threading.Lock()]  # made anew in a forked child (held by another thread at the fork, never released)
os.register_at_fork(after_in_child=lambda: _CREATING.__setitem__(0, threading.Lock()))


# the C core's calls made for every fact, as module globals (one lookup each, not two)
_assert_fact = core.assert_fact
_start_action = core.start_action_for_state
_complete_and_start = core.complete_and_start_action
_retract_fact = core.retract_fact


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
    try:
        text = orjson.dumps(fact)
    except TypeError:  # an integer beyond 64 bits: the standard library writes it
        text = json.dumps(fact, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
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

    def __init__(self, levels: tuple[tuple[dict[str, Any], ...], ...], label: str, project: bool = True) -> None:
        self.levels = levels
        self.label = label
        self._pid = -1
        self._handles: list[list[int]] = []
        # A ruleset's session holds one fact at a time: assert, drain the fired rules, retract are
        # separate calls into the core, and a second thread's assert between them made one thread
        # drain the other's rules (the cross-check then called the record an error, its advice
        # from the other fact). One lock per process (made anew in a forked child: a lock held by
        # another thread at the fork would never be released there).
        self._turn = threading.Lock()
        self._ids = itertools.count(1)
        # Each ruleset is given only the fact keys its patterns test: the core parses every fact
        # it is handed, so a level's whole fact (~60 keys, ~2 KB) asserted into a ruleset that
        # reads six of them cost a third of the decision. A key no pattern tests cannot change
        # what fires, so the projection decides the same (tests/test_durable.py).
        # `project=False` hands every ruleset the whole fact (the test's yardstick).
        # The projected keys are also renamed, in the rulesets the core is given and in the facts
        # asserted into them, to short names (`f0`, `f1`, …): the core hashes and copies every key
        # of a fact on assert and writes the fact into every action's message, and the engine's
        # names (`p__cyclosporine__status__1`, 27 characters on average) made that a fifth of the
        # core's time. Names are this wrapper's business only: what fires is reported by rule name,
        # `fsgs-kb compile` shows the readable names, and validate's probe runs these rulesets.
        self.keys: tuple[tuple[tuple[tuple[str, str], ...] | None, ...], ...] = tuple(
            tuple(_short_names(tested_keys(rules)) if project else None for rules in chunks) for chunks in levels
        )
        self.rulesets = tuple(
            tuple(
                rules if pairs is None else _renamed(rules, dict(pairs))
                for rules, pairs in zip(chunks, level_keys, strict=True)
            )
            for chunks, level_keys in zip(levels, self.keys, strict=True)
        )

    def _ensure(self) -> list[list[int]]:
        with _CREATING[0]:  # two threads meeting a new process: one creates the rulesets
            return self._ensure_once()

    def _ensure_once(self) -> list[list[int]]:
        if self._pid != os.getpid():
            prefix = f"{self.label}_{os.getpid()}_{next(_NAMES)}"
            self._handles = [
                [core.create_ruleset(f"{prefix}_L{i}_{j}", durable_json(rs)) for j, rs in enumerate(chunks)]
                for i, chunks in enumerate(self.rulesets)
            ]
            self._turn = threading.Lock()
            self._pid = os.getpid()
        return self._handles

    def projected(self, level: int, fact: dict[str, Any]) -> list[dict[str, Any]]:
        """The fact as each of a level's rulesets is given it (projected, renamed), before its id."""
        facts = []
        for pairs in self.keys[level]:
            projected = {"sid": "0", "id": 0, "k": 1}
            if pairs is None:
                projected.update(fact)
            else:
                projected.update({short: fact[key] for key, short in pairs if key in fact})
            facts.append(projected)
        return facts

    def fact_texts(self, level: int, fact: dict[str, Any], number: int) -> list[str]:
        """The fact as each of a level's rulesets is given it (projected, renamed, encoded)."""
        texts = []
        for projected in self.projected(level, fact):
            projected["id"] = number
            texts.append(fact_json(projected))
        return texts

    def fire(self, level: int, fact: dict[str, Any]) -> set[str]:
        """Assert one flat fact into a level's rulesets; return the names of the rules it fired."""
        return self.fire_projected(level, self.projected(level, fact))

    def fire_projected(self, level: int, facts: list[dict[str, Any]]) -> set[str]:
        """Assert one fact, already projected for each of a level's rulesets (`projected`, or the
        compiled evaluator's generated equivalent), under one new id; the names of the rules fired.
        Each fact is encoded as `fact_json` encodes it (its usual case written out here: this
        runs for every ruleset of every record)."""
        fired: set[str] = set()
        add = fired.add
        handles = self._handles if self._pid == _PROCESS[0] else self._ensure()
        with self._turn:
            number = next(self._ids)
            for handle, projected in zip(handles[level], facts, strict=True):
                projected["id"] = number
                try:
                    encoded = orjson.dumps(projected)
                except TypeError:
                    text = fact_json(projected)
                else:
                    if b"e-" in encoded or b"e+" in encoded:
                        encoded = _BARE_EXPONENT.sub(rb"\1.0\2", encoded)
                    text = encoded.decode("utf-8")
                try:
                    code, state = _assert_fact(handle, text)
                    if code == 0:
                        action = _start_action(handle, state)
                        message = action[1] if action else None
                        while message:
                            add(message[2 : message.index('"', 2)])  # the rule name of '{"NAME":{"m":…}}'
                            message = _complete_and_start(handle, state)
                except Exception as exc:  # the C core raises plain Exception with an error code
                    raise EngineError(str(exc)) from None
                finally:
                    try:
                        _retract_fact(handle, text)
                    except Exception:  # noqa: S110 - a fact that was never stored cannot be retracted
                        pass
        return fired


# ---- the probe: does the core accept these rulesets and facts? ---------------------------------

PROBE_TIMEOUT_S = 30.0

# The child: creates every ruleset and asserts every probe fact exactly as DurableRulesets does,
# saying before each step what it is about to do, so that a crash can be placed. A ruleset or
# fact the core refuses is retried rule by rule to find the rules it cannot take.
_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import durable_rules_engine as core
request = json.load(sys.stdin)
names = iter(range(10**9))
def say(**message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()
def create(text):
    return core.create_ruleset("probe_%d" % next(names), text)
def run(handle, text):
    try:
        code, state = core.assert_fact(handle, text)
        if code == 0:
            action = core.start_action_for_state(handle, state)
            while action and action[1]:
                action = (None, core.complete_and_start_action(handle, state))
    finally:
        try:
            core.retract_fact(handle, text)
        except Exception:
            pass
def alone(level, chunk, rules, text, fact):
    found = False
    for name, single in rules.items():
        say(step="isolate", level=level, chunk=chunk, rules=[name], fact=fact)
        try:
            handle = create(single)
            if text is not None:
                run(handle, text)
        except Exception as exc:
            say(error=str(exc), level=level, chunk=chunk, rules=[name], fact=fact)
            found = True
    return found
for level, chunks in enumerate(request["levels"]):
    for chunk, (whole, rules) in enumerate(chunks):
        say(step="create", level=level, chunk=chunk, rules=list(rules))
        try:
            handle = create(whole)
        except Exception as exc:
            if not alone(level, chunk, rules, None, None):
                say(error=str(exc), level=level, chunk=chunk, rules=list(rules), fact=None)
            continue
        for number, text in enumerate(request["facts"][level]):
            say(step="assert", level=level, chunk=chunk, rules=list(rules), fact=number)
            try:
                run(handle, text)
            except Exception as exc:
                if not alone(level, chunk, rules, text, number):
                    say(error=str(exc), level=level, chunk=chunk, rules=list(rules), fact=number)
                break
say(done=True)
"""


@dataclass(frozen=True)
class ProbeFailure:
    """The core refused, crashed or hung: on which rules (ruleset names) and doing what."""

    rules: tuple[str, ...]
    message: str


def _map_keys(pattern: Any, visit: Callable[[str, Any], str]) -> Any:
    """The pattern with each fact key it tests replaced by `visit(key, the value compared with
    it)`: the one walk over durable-rules' pattern form (`$and`/`$or` lists, `{"$op": {key:
    value}}`, `{key: value}`), for finding the keys (`_literals`) and for renaming them."""
    if isinstance(pattern, list):
        return [_map_keys(item, visit) for item in pattern]
    if not isinstance(pattern, dict):
        return pattern
    out: dict[str, Any] = {}
    key: str
    for key, value in pattern.items():
        if key in ("$and", "$or"):
            out[key] = _map_keys(value, visit)
        elif key.startswith("$") and isinstance(value, dict):
            out[key] = {visit(inner, literal): literal for inner, literal in value.items()}
        elif not key.startswith("$"):
            out[visit(key, value)] = value
        else:
            out[key] = value
    return out


def _literals(pattern: Any, out: dict[str, list[Any]]) -> None:
    """Every fact key a pattern tests, with the values it compares it with."""

    def record(key: str, literal: Any) -> str:
        out.setdefault(key, []).append(literal)
        return key

    _map_keys(pattern, record)


_RESERVED = frozenset(("sid", "id", "k"))  # the wrapper's own keys of every fact


def _short_names(keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((key, f"f{n}") for n, key in enumerate(k for k in keys if k not in _RESERVED))


def _renamed(rules: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A ruleset with its patterns' fact keys renamed."""

    def rename(key: str, _: Any) -> str:
        return names.get(key, key)

    return {
        rule: {**body, "all": [{**part, "m": _map_keys(part["m"], rename)} for part in body["all"]]}
        for rule, body in rules.items()
    }


def tested_keys(rules: dict[str, Any]) -> tuple[str, ...]:
    """The fact keys the patterns of one ruleset test, in a stable order."""
    tested: dict[str, list[Any]] = {}
    for body in rules.values():
        _literals(body["all"][0]["m"], tested)
    return tuple(sorted(tested))


def probe_facts(chunks: tuple[dict[str, Any], ...], label: int) -> list[str]:
    """Facts that reach many patterns of a level: none of the keys (every absence matches), each
    key at each of its thresholds, and just below and above the numeric ones."""
    tested: dict[str, list[Any]] = {}
    for rules in chunks:
        for body in rules.values():
            _literals(body["all"][0]["m"], tested)
    choices: dict[str, list[Any]] = {}
    for key, values in sorted(tested.items()):
        numbers = sorted({v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)})
        others = sorted({str(v) for v in values if not isinstance(v, (int, float)) or isinstance(v, bool)})
        extra = [numbers[0] - 1, numbers[-1] + 1] if numbers else []
        choices[key] = numbers + extra + others
    widest = max((len(v) for v in choices.values()), default=0)
    facts: list[dict[str, Any]] = [{}]
    facts += [{key: values[i % len(values)] for key, values in choices.items()} for i in range(widest)]
    ids = itertools.count(1)
    return [fact_json({"sid": "0", "id": label * 1000 + next(ids), "k": 1, **fact}) for fact in facts]


def probe(levels: tuple[tuple[dict[str, Any], ...], ...], timeout: float = PROBE_TIMEOUT_S) -> list[ProbeFailure]:
    """Create every ruleset and assert the probe facts through the core, in a child process;
    return what it refused (nothing when the rulesets can run)."""
    request = json.dumps(
        {
            "levels": [
                [
                    [durable_json(rules), {name: durable_json({name: body}) for name, body in rules.items()}]
                    for rules in chunks
                ]
                for chunks in levels
            ],
            "facts": [probe_facts(chunks, i) for i, chunks in enumerate(levels)],
        },
        ensure_ascii=False,
    )
    where = os.path.dirname(os.path.abspath(core.__file__ or ""))
    try:
        child = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _CHILD, where],
            input=request,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        return [_last_step(exc.stdout, f"durable-rules did not answer within {timeout:.0f} s")]
    except OSError as exc:
        return [ProbeFailure((), f"could not start a process to check the rulesets with durable-rules: {exc}")]
    messages = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    failures = list(dict.fromkeys(ProbeFailure(tuple(m["rules"]), _what(m)) for m in messages if "error" in m))
    if child.returncode != 0:
        died = (
            f"durable-rules crashed ({signal.Signals(-child.returncode).name})"
            if child.returncode < 0 and -child.returncode in signal.valid_signals()
            else f"the durable-rules check failed (exit {child.returncode}: {child.stderr.strip()[-200:]})"
        )
        failures.append(_last_step(child.stdout, died))
    elif not any(m.get("done") for m in messages):
        failures.append(_last_step(child.stdout, "the durable-rules check stopped early"))
    return failures


def _what(message: dict[str, Any]) -> str:
    doing = "creating its ruleset" if message.get("fact") is None else "asserting a probe fact"
    return f"durable-rules refused it ({message['error']}) while {doing}"


def _last_step(stdout: str | bytes | None, what: str) -> ProbeFailure:
    text = stdout.decode("utf-8", "replace") if isinstance(stdout, bytes) else (stdout or "")
    steps = [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"step"' in line]
    if not steps:
        return ProbeFailure((), what)
    last = steps[-1]
    doing = "creating its ruleset" if last.get("fact") is None else "asserting a probe fact"
    return ProbeFailure(tuple(last["rules"]), f"{what} while {doing}")
