"""What is wrong with a scenario file (rules/tests/*.yaml), each problem at its line and column.

First the shape its JSON Schema gives (schema/scenario.schema.json, and
schema/scenario-bases.schema.json for tests/_bases.yaml: the files VS Code checks while an editor
types, through each file's `$schema` line). Then what a schema cannot know: every rule a case
names exists, every JSON pointer names a field of the patient record, every base exists, no
two cases of a file share a name (their test ids would), and no case expects one rule in two
outcomes. Nothing here can raise, whatever a
file holds: a malformed case used to end `validate` and `test` in an IndexError, TypeError or
AttributeError, and `fired: CSA-MONITOR-BP` (a string) was read letter by letter.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from fsgs_kb.engine.errors import KBError, pointer_join, pointer_parts
from fsgs_kb.engine.load.schemas import load_schema, schema_errors
from fsgs_kb.engine.load.yamlsafe import Located
from fsgs_kb.engine.suggest import did_you_mean

SCENARIO_SCHEMA = "scenario"
BASES_SCHEMA = "scenario-bases"
RULE_LISTS = ("fired", "not_fired", "advice", "caveats")


def scenario_problems(doc: Located, rule_ids: Collection[str] | None, bases: Collection[str] | None) -> list[KBError]:
    """Every problem of one scenario file. `rule_ids`/`bases` None: not known (their files did
    not load), so names are not checked against them."""
    problems = schema_errors(SCENARIO_SCHEMA, doc)
    cases = doc.data.get("cases") if isinstance(doc.data, dict) else None
    seen: set[str] = set()
    for i, case in enumerate(cases if isinstance(cases, list) else []):
        if not isinstance(case, dict):
            continue
        pointer = pointer_join("/cases", i)
        problems += _name_problems(doc, pointer, case.get("name"), seen)
        problems += _base_problems(doc, pointer, case.get("base"), bases)
        problems += _rule_problems(doc, pointer + "/expect", case.get("expect"), rule_ids)
        problems += _contradictions(doc, pointer + "/expect", case.get("expect"))
        problems += _field_problems(doc, pointer, case)
    return problems


def bases_problems(doc: Located) -> list[KBError]:
    """The problems of tests/_bases.yaml: its shape."""
    return schema_errors(BASES_SCHEMA, doc)


def _name_problems(doc: Located, pointer: str, name: Any, seen: set[str]) -> list[KBError]:
    if not isinstance(name, str):
        return []
    if name in seen:
        hint = "give each case of a file its own name: the test id is FILE::NAME"
        return [doc.error("scenario.duplicate_name", f"a second case named '{name}'", pointer + "/name", hint)]
    seen.add(name)
    return []


def _base_problems(doc: Located, pointer: str, base: Any, bases: Collection[str] | None) -> list[KBError]:
    if not isinstance(base, str) or bases is None or base in bases:
        return []
    hint = did_you_mean(base, set(bases)) or f"bases in tests/_bases.yaml: {', '.join(sorted(bases)) or 'none'}"
    return [doc.error("scenario.unknown_base", f"unknown base patient '{base}'", pointer + "/base", hint)]


def _rule_problems(doc: Located, pointer: str, expect: Any, rule_ids: Collection[str] | None) -> list[KBError]:
    if not isinstance(expect, dict) or rule_ids is None:
        return []
    named: list[tuple[str, Any]] = []
    for key in RULE_LISTS:
        values = expect.get(key)
        if isinstance(values, list):
            named += [(pointer_join(pointer, key, j), rid) for j, rid in enumerate(values)]
    undetermined = expect.get("undetermined")
    if isinstance(undetermined, list):
        named += [(pointer_join(pointer, "undetermined", j), rid) for j, rid in enumerate(undetermined)]
    elif isinstance(undetermined, dict):
        named += [(pointer_join(pointer, "undetermined", rid), rid) for rid in undetermined]
    known = set(rule_ids)
    return [
        doc.error(
            "scenario.unknown_rule",
            f"no rule {rid}",
            at,
            did_you_mean(rid, known) or "name a rule of recommendations/ by its id",
            key=at.endswith("/undetermined/" + rid),
        )
        for at, rid in named
        if isinstance(rid, str) and rid not in known
    ]


OUTCOME_OF = {"fired": "fired", "advice": "fired", "caveats": "fired", "not_fired": "not_fired"}


def _contradictions(doc: Located, pointer: str, expect: Any) -> list[KBError]:
    """A rule expected in two outcomes at once (fired and undetermined, say: a case copied and
    half edited) can never pass; the run said only 'expected fired, got undetermined'."""
    if not isinstance(expect, dict):
        return []
    named: list[tuple[str, str, Any]] = []  # (where, outcome, rule id), in the file's order
    for key, value in expect.items():
        if key in OUTCOME_OF and isinstance(value, list):
            named += [(pointer_join(pointer, key, j), OUTCOME_OF[key], rid) for j, rid in enumerate(value)]
        elif key == "undetermined" and isinstance(value, (list, dict)):
            named += [
                (pointer_join(pointer, key, j if isinstance(value, list) else rid), "undetermined", rid)
                for j, rid in enumerate(value)
            ]
    first: dict[str, str] = {}
    out = []
    for at, outcome, rid in named:
        if not isinstance(rid, str):
            continue
        if first.setdefault(rid, outcome) != outcome:
            out.append(
                doc.error(
                    "scenario.contradiction",
                    f"{rid} is expected {first[rid].replace('_', ' ')} and {outcome.replace('_', ' ')} in one case",
                    at,
                    "a rule has one outcome per patient: keep the one you mean, or make two cases",
                    key=isinstance(expect.get("undetermined"), dict) and outcome == "undetermined",
                )
            )
    return out


def _pointers(pointer: str, case: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where in the file, the pointer) for every JSON pointer a case gives as a string."""
    remove = case.get("remove")
    for j, text in enumerate(remove if isinstance(remove, list) else []):
        if isinstance(text, str):
            yield pointer_join(pointer, "remove", j), text
    expect = case.get("expect")
    undetermined = expect.get("undetermined") if isinstance(expect, dict) else None
    for rid, missing in undetermined.items() if isinstance(undetermined, dict) else []:
        for j, text in enumerate(missing if isinstance(missing, list) else []):
            if isinstance(text, str):
                yield pointer_join(pointer, "expect", "undetermined", rid, j), text


def _field_hint(text: str) -> str | None:
    """None when `text` points at a field of the patient record (or inside a free-form one);
    else the hint for the first step that leads nowhere."""
    node: dict[str, Any] = load_schema("patient")
    walked = ""
    for part in pointer_parts(text):
        if node.get("type") == "array":
            if not (part.isdigit() or part == "-"):
                return f"{walked or '/'} is a list: its items are /0, /1, …"
            node = node.get("items", {})
        elif "properties" in node:
            fields = node["properties"]
            if part not in fields:
                return did_you_mean(part, set(fields)) or f"fields of {walked or 'the record'}: {', '.join(fields)}"
            node = fields[part]
        elif node.get("type") == "object":  # free-form (ext): whatever it holds
            return None
        else:
            return f"{walked} is a single value: nothing is inside it"
        walked = pointer_join(walked, part)
    return None


def _field_problems(doc: Located, pointer: str, case: dict[str, Any]) -> list[KBError]:
    """Pointers that lead nowhere in the patient record (a malformed one is the schema's to report)."""
    out = []
    for at, text in _pointers(pointer, case):
        hint = _field_hint(text) if text.startswith("/") else None
        if hint is not None:
            out.append(doc.error("scenario.unknown_field", f"{text} is not a field of the patient record", at, hint))
    return out
