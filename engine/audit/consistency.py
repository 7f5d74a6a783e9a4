"""A result's summary must be what its rule outcomes and the knowledge base make of it.

The evaluator writes every top-level field of a result from its rule entries and the rules of
the knowledge base (`Evaluation._assemble`): `status` is `error` when there are errors, else
`out_of_scope` when an out-of-scope rule fired, else `evaluated` when the scope entry says in
scope, else `scope_undetermined`; `advice`, `caveats`, `drafts` (fired rules not `active`) and
`undetermined` list the rules of those outcomes in the knowledge base's order; there is one rule
entry per rule of the knowledge base. A record that never reached evaluation has no scope, no
rule entries, empty lists and its problem in `errors`. So even without the input, a result whose
summary is not exactly that was edited: `trace` names each such field, what it should be and
what it is. A minimal result has no rule entries: its fired and undetermined rules are the ones
its lists name, and those lists are checked against each other and the rules' kinds.
"""

from __future__ import annotations

import json
from typing import Any

from fsgs_kb.engine.evaluate.evaluation import SCOPE_DERIVED
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.model import Rule

LISTS = ("advice", "caveats", "drafts", "undetermined")


def summary_mismatches(kb: KnowledgeBase, result: dict[str, Any]) -> list[str]:
    """Each top-level field of `result` (full, standard expanded to full, or minimal) that is not
    what its rule outcomes and the knowledge base give, as 'field: expected …, found …'."""
    entries = result.get("rules")
    if result.get("scope") is None and not entries:
        return _never_evaluated(result)
    out: list[str] = []
    if entries is None:  # minimal: the lists are all it records of the outcomes
        fired, undetermined = _minimal_outcomes(kb, result)
    else:
        out += _entry_set(kb, entries)
        fired, undetermined = _entry_outcomes(kb, entries)
        out += _scope_entry(result, entries)
    status = _status(result, fired)
    expected: dict[str, Any] = {
        "status": status[0],
        "advice": [r.id for r in fired if r.kind != "caveat"],
        "caveats": [r.id for r in fired if r.kind == "caveat"],
        "drafts": [r.id for r in fired if r.status != "active"],
        "undetermined": [r.id for r in undetermined],
        "no_recommendation": status[0] == "evaluated" and not fired and not undetermined,
    }
    for name, value in expected.items():
        if result.get(name) != value:
            why = status[1] if name == "status" else _WHY[name]
            out.append(mismatch(name, value, result.get(name), why))
    return out


_WHY = {
    "advice": "the fired rules that are not caveats",
    "caveats": "the fired caveats",
    "drafts": "the fired rules whose status in the knowledge base is not active",
    "undetermined": "the undetermined rules",
    "no_recommendation": "true only when evaluated with nothing fired and nothing undetermined",
}


def mismatch(field: str, expected: Any, found: Any, why: str = "") -> str:
    """One mismatch line: the field, what it should be (and why), what the result says."""
    because = f" ({why})" if why else ""
    return f"{field}: expected {_json(expected)}{because}, found {_json(found)}"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _status(result: dict[str, Any], fired: list[Rule]) -> tuple[str, str]:
    if result.get("errors"):
        return "error", "the result records errors"
    out_of_scope = [r.id for r in fired if r.kind == "out_of_scope"]
    if out_of_scope:
        return "out_of_scope", f"out-of-scope rule {', '.join(out_of_scope)} fired"
    in_scope = (result.get("scope") or {}).get("in_scope")
    none = "no errors, no out-of-scope rule fired"
    if in_scope is True:
        return "evaluated", f"{none}, the scope entry says in scope"
    return "scope_undetermined", f"{none}, the scope entry says in_scope {_json(in_scope)}"


def _never_evaluated(result: dict[str, Any]) -> list[str]:
    """A result with neither scope nor rule entries: a record that was never evaluated."""
    why = "no scope and no rule entries: the record was never evaluated"
    out = []
    if result.get("status") not in ("invalid", "error"):
        out.append(mismatch("status", "invalid or error", result.get("status"), why))
    if not result.get("errors"):
        out.append(mismatch("errors", "the problem that kept the record from evaluation", result.get("errors"), why))
    out += [mismatch(name, [], result.get(name), why) for name in LISTS if result.get(name) != []]
    if result.get("no_recommendation") is not False:
        out.append(mismatch("no_recommendation", False, result.get("no_recommendation"), why))
    return out


def _entry_set(kb: KnowledgeBase, entries: list[dict[str, Any]]) -> list[str]:
    """One entry per rule of the knowledge base, in its order (unknown ids are reported by trace)."""
    ids = [entry.get("id") for entry in entries]
    expected = [rule.id for rule in kb.evaluation.rules]
    missing = [rid for rid in expected if rid not in ids]
    twice = [rid for rid in dict.fromkeys(ids) if ids.count(rid) > 1]
    out = []
    if missing:
        out.append(
            f"rules: expected an entry for each of the knowledge base's {len(expected)} rules, "
            f"found none for {', '.join(missing)}"
        )
    if twice:
        out.append(f"rules: expected one entry per rule, found more than one for {', '.join(map(str, twice))}")
    if not missing and not twice and ids != expected and set(ids) == set(expected):
        out.append(mismatch("rules", expected, ids, "the knowledge base's order"))
    return out


def _entry_outcomes(kb: KnowledgeBase, entries: list[dict[str, Any]]) -> tuple[list[Rule], list[Rule]]:
    """(fired, undetermined) rules of the knowledge base, in its order, as the entries record them."""
    outcome: dict[Any, Any] = {}
    for entry in entries:
        outcome.setdefault(entry.get("id"), entry.get("outcome"))
    rules = kb.evaluation.rules
    return [r for r in rules if outcome.get(r.id) == "fired"], [r for r in rules if outcome.get(r.id) == "undetermined"]


def _minimal_outcomes(kb: KnowledgeBase, result: dict[str, Any]) -> tuple[list[Rule], list[Rule]]:
    """(fired, undetermined) as a minimal result's lists name them; a caveat counts as fired only
    beside advice it qualifies that fired (as the evaluator decides it)."""
    named = set(result.get("advice", [])) | set(result.get("caveats", []))
    fired = [r for r in kb.evaluation.rules if r.id in named]
    ids = {r.id for r in fired}
    fired = [r for r in fired if r.kind != "caveat" or any(q in ids for q in r.qualifies)]
    undetermined = set(result.get("undetermined", [])) - named
    return fired, [r for r in kb.evaluation.rules if r.id in undetermined]


def _scope_entry(result: dict[str, Any], entries: list[dict[str, Any]]) -> list[str]:
    """The scope entry says in scope exactly when the rule entries' in_scope value is true."""
    values = [dv.get("value") for e in entries for dv in e.get("derived", []) if dv.get("name") == SCOPE_DERIVED]
    scope = result.get("scope")
    if not isinstance(scope, dict):
        return [mismatch("scope", "a scope entry", scope, "the result has rule entries")]
    if not values:
        return []
    if len(set(map(_json, values))) > 1:
        return [f"rules: the entries record different values of {SCOPE_DERIVED}: {', '.join(map(_json, values))}"]
    if (scope.get("in_scope") is True) != (values[0] is True):
        expected = True if values[0] is True else "false or null"
        why = f"the rule entries' derived value {SCOPE_DERIVED} is {_json(values[0])}"
        return [mismatch("scope.in_scope", expected, scope.get("in_scope"), why)]
    return []
