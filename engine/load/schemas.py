"""The JSON Schemas in `schema/`, loaded once, with errors turned into located KBErrors.

The schemas are what an editor such as VS Code checks while a clinician types; the validator
uses the very same files so that both agree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jsonschema costs ~90 ms to import: only knowledge-base checks need it
    import jsonschema
    from referencing import Registry

from fsgs_kb.engine.errors import KBError, pointer_join
from fsgs_kb.engine.load.paths import schema_dir
from fsgs_kb.engine.load.yamlsafe import Located
from fsgs_kb.engine.suggest import did_you_mean


@lru_cache(maxsize=1)
def _registry() -> Registry:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resources = []
    for path in sorted(schema_dir().glob("*.schema.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((path.name, Resource.from_contents(contents, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema file `schema/<name>.schema.json`."""
    result: dict[str, Any] = json.loads((schema_dir() / f"{name}.schema.json").read_text("utf-8"))
    return result


@lru_cache(maxsize=256)
def schema_regex(pattern: str) -> re.Pattern[str]:
    """A JSON Schema `pattern` compiled with its own (ECMA-262) meaning of `$`: the end of the
    text. Python's `$` also matches before a final newline, so `^[A-Z][A-Z0-9-]*$` accepted the
    rule id "CSA-DOSE-EXCEEDS\\n" and `version: "0.3.4\\n"` (hostile sweep), which editors, reading
    the same schema, refuse. Each `$` outside a character class becomes `\\Z`; every pattern
    check (jsonschema's, engine.audit.shape's) compiles through here."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            char = "\\Z"
        out.append(char)
        i += 1
    return re.compile("".join(out))


@cache
def _validator_class() -> type[jsonschema.protocols.Validator]:
    """Draft 2020-12 with `pattern` and `patternProperties` matched by schema_regex."""
    import jsonschema
    from jsonschema import validators

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
        if validator.is_type(instance, "string") and not schema_regex(patrn).search(instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")

    def pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any, schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "object"):
            for patrn, subschema in patterns.items():
                for key, value in instance.items():
                    if schema_regex(patrn).search(key):
                        yield from validator.descend(value, subschema, path=key, schema_path=patrn)

    keywords = {"pattern": pattern, "patternProperties": pattern_properties}
    extended: type[jsonschema.protocols.Validator] = validators.extend(  # type: ignore[no-untyped-call]
        jsonschema.Draft202012Validator, keywords
    )
    return extended


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    return _validator_class()(schema, registry=_registry())


def part_validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    """A validator of a schema made from parts of the project's schemas (their `$ref`s resolve
    against the `$defs` it carries)."""
    return _validator_class()(schema, registry=_registry())


def _instance_pointer(error: jsonschema.ValidationError) -> str:
    return pointer_join("", *error.absolute_path)


def _properties(error: jsonschema.ValidationError) -> dict[str, Any]:
    schema = error.schema
    return dict(schema.get("properties", {})) if isinstance(schema, dict) else {}


def _unexpected_keys(error: jsonschema.ValidationError) -> list[str]:
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return []
    allowed = set(_properties(error))
    return [k for k in error.instance if k not in allowed]


def _leaf_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """For anyOf/oneOf failures, the errors of the one alternative whose type the value has (a
    mapping given where a mapping or a list may stand is wrong inside, not in kind: say where),
    else the most relevant branch's errors (jsonschema's best_match)."""
    fitting = _branch_of_same_type(error)
    if fitting:
        return [leaf for inner in fitting for leaf in _leaf_errors(inner)]
    if error.context:
        from jsonschema.exceptions import best_match

        best = best_match(error.context)
        if best is not None and best.path == error.path and best.validator not in ("type", "const"):
            return _leaf_errors(best)
    return [error]


def _branch_of_same_type(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors of the only anyOf/oneOf alternative that does not refuse the value's type."""
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        return []
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for inner in error.context:
        branches.setdefault(inner.relative_schema_path[0] if inner.relative_schema_path else None, []).append(inner)
    fitting = [
        errors
        for errors in branches.values()
        if not any(inner.validator == "type" and not inner.relative_path for inner in errors)
    ]
    return fitting[0] if len(fitting) == 1 else []


def schema_errors(name: str, doc: Located, skip: Callable[[str], bool] = lambda p: False) -> list[KBError]:
    """Every schema problem of a document, located; pointers for which `skip` is true are left
    to a more specific checker that gives better messages (the condition parser)."""
    out = [doc.error(f.code, f.message, f.pointer, f.hint, f.key) for f in explained(validator(name), doc.data, skip)]
    return _drop_misspelt_required(out)


def _drop_misspelt_required(errors: list[KBError]) -> list[KBError]:
    """'sayz' unknown + 'says' missing is one mistake: keep only the did-you-mean."""
    suggested = {(e.pointer.rsplit("/", 1)[0], e.hint) for e in errors if e.code == "schema.unknown_field"}
    return [
        e
        for e in errors
        if not (
            e.code == "schema.missing_field"
            and (e.pointer, f"did you mean '{e.message.split(chr(39))[1]}'?") in suggested
        )
    ]


@dataclass(frozen=True)
class SchemaFinding:
    """One schema problem in an editor's words, before it is placed in a file: the knowledge
    base's documents (`schema_errors`) and the FHIR map (engine/fhir/fhirmap.py) say it alike.
    `key`: placed at the key named by the pointer's last part rather than at its value."""

    code: str
    text: str  # what is wrong, without where
    pointer: str
    hint: str
    key: bool = False
    about: str | None = None  # the pointer the knowledge base's message names first (a renamed key: its mapping)

    @property
    def message(self) -> str:
        """The message as `fsgs-kb validate` prints it for the knowledge base's files."""
        return self.text if self.about is None else f"{self.about or '/'}: {self.text}"


def explained(
    validator: jsonschema.protocols.Validator, data: Any, skip: Callable[[str], bool] = lambda p: False
) -> Iterator[SchemaFinding]:
    """Every problem `validator` finds in `data`, in an editor's words (an anyOf narrowed to the
    alternative the value's type chose); those at a pointer `skip` takes are left out."""
    for raw in validator.iter_errors(data):
        for error in _leaf_errors(raw):
            pointer = _instance_pointer(error)
            if not skip(pointer):
                yield from describe(error, pointer)


def describe(error: jsonschema.ValidationError, pointer: str) -> list[SchemaFinding]:
    """What is wrong at `pointer` and how to fix it: jsonschema's finding reworded, never its
    regular expressions or a mapping echoed back."""
    unexpected = _unexpected_keys(error)
    if unexpected:
        allowed = sorted(_properties(error))
        return [
            SchemaFinding(
                "schema.unknown_field",
                f"unknown field '{key}'",
                pointer_join(pointer, key),
                did_you_mean(key, allowed) or f"allowed here: {', '.join(allowed)}",
                key=True,
            )
            for key in unexpected
        ]
    if error.validator == "required":
        return [SchemaFinding("schema.missing_field", error.message, pointer, _missing_fix(error))]
    hint = error.schema.get("description") if isinstance(error.schema, dict) else None
    if error.validator == "enum" and isinstance(error.instance, str) and isinstance(error.validator_value, list):
        hint = did_you_mean(error.instance, [str(c) for c in error.validator_value]) or hint
    if error.validator == "uniqueItems" and isinstance(error.instance, list):
        repeated = _repeated_item(error.instance)
        if repeated is not None:  # at the second copy, which is the one to remove
            first, again = repeated
            item = error.instance[again]
            at = pointer_join(pointer, str(again))
            text = f"{item!r} is listed twice (also at {pointer_join(pointer, str(first))})"
            return [SchemaFinding("schema.invalid", text, at, f"remove this {item!r}: each entry once", about=at)]
    hint = _stray_characters(error) or hint or _fix(error)
    text = _short_message(error)
    if "propertyNames" in error.absolute_schema_path and isinstance(error.instance, str):
        # a key of the mapping at `pointer` (a parameter, sentence or base renamed out of its
        # form): jsonschema places it at the mapping, which put it at the mapping's first key
        key = pointer_join(pointer, error.instance)
        return [SchemaFinding("schema.invalid", text, key, hint, key=True, about=pointer)]
    return [SchemaFinding("schema.invalid", text, pointer, hint, about=pointer)]


TYPOGRAPHIC_QUOTES = "“”„‘’‚«»"


def _stray_characters(error: jsonschema.ValidationError) -> str | None:
    """A value that must be written plainly (an id, a sentence label, a version, a choice) with
    something around it the editor did not mean: a word processor's curly quotes, which YAML
    keeps as part of the text, or a space or line break at its start or end (a `|` block, a
    quoted string running onto the next line). Says what to write instead."""
    instance = error.instance
    if error.validator not in ("pattern", "enum", "const") or not isinstance(instance, str):
        return None
    plain = instance.strip(TYPOGRAPHIC_QUOTES + " \t\r\n")
    if plain == instance or not plain:
        return None
    if plain == instance.strip():
        return f"remove the space or line break at its start or end: write {plain!r}"
    return f"remove the curly quotes a word processor put in: write {plain} (YAML needs no quotes here)"


def _repeated_item(items: list[Any]) -> tuple[int, int] | None:
    """(index of the first, index of the second) of the first item a list holds twice, compared as
    JSON (1 and true are different items there, as jsonschema's uniqueItems has them)."""
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        key = json.dumps(item, sort_keys=True)
        if key in seen:
            return seen[key], index
        seen[key] = index
    return None


def _missing_fix(error: jsonschema.ValidationError) -> str:
    """How to add a required field: its name and what the schema says it holds."""
    missing = error.message.split("'")[1] if error.message.count("'") >= 2 else ""
    about = _properties(error).get(missing, {})
    description = about.get("description") if isinstance(about, dict) else None
    if missing and description:
        return f"add {missing}: … ({description})"
    return f"add {missing or 'the field'}: …; see the schema for what it holds"


JSON_TYPE_WORDS = {
    "string": "text",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping (key: value lines)",
    "null": "nothing (null)",
}


def _fix(error: jsonschema.ValidationError) -> str:
    """What to write instead, for a schema rule that carries no description of its own: every
    error an editor sees says how to fix it, not only what jsonschema found."""
    limit, instance = error.validator_value, error.instance
    if error.validator == "enum" and isinstance(limit, list):
        choices = [str(choice) for choice in limit]
        close = did_you_mean(str(instance), choices) if isinstance(instance, str) else None
        return close or f"write one of: {', '.join(choices)}"
    if error.validator == "const":
        return f"write {limit!r} here"
    if error.validator == "type":
        kinds = limit if isinstance(limit, list) else [limit]
        wanted = " or ".join(JSON_TYPE_WORDS.get(str(kind), str(kind)) for kind in kinds)
        if isinstance(instance, str) and "string" not in kinds:
            return f"write {wanted} here, without quotes"
        if "string" in kinds and not isinstance(instance, (dict, list)):
            return f'write {wanted} here; quote it ("{instance}") if YAML reads it as something else'
        return f"write {wanted} here"
    if error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        words = {"minimum": "at least", "exclusiveMinimum": "above", "maximum": "at most", "exclusiveMaximum": "below"}
        return f"write a number {words[str(error.validator)]} {limit}"
    if error.validator in ("minLength", "maxLength"):
        return f"write {'at least' if error.validator == 'minLength' else 'at most'} {limit} character(s)"
    if error.validator in ("minItems", "maxItems", "minProperties", "maxProperties", "uniqueItems"):
        return "see the schema for how many entries this takes; each entry once"
    if error.validator in ("anyOf", "oneOf"):
        if not isinstance(instance, (dict, list)) and "a list" in _forms(limit).split("; "):
            return f"a list of one is written in brackets: [{instance}]"
        forms = _forms(limit)
        return f"write one of the forms this field takes: {forms}" if forms else "see the schema for the forms it takes"
    if error.validator == "not":
        return "remove this value; the schema rules it out here"
    return "see the schema named at the top of the file (yaml-language-server: $schema=…) for what this field takes"


def _forms(alternatives: Any) -> str:
    """The alternatives of an anyOf/oneOf in words: their descriptions, else their types."""
    if not isinstance(alternatives, list):
        return ""
    words = []
    for alternative in alternatives:
        if not isinstance(alternative, dict):
            continue
        text = alternative.get("description") or alternative.get("title")
        if not text and isinstance(alternative.get("type"), str):
            text = JSON_TYPE_WORDS.get(alternative["type"], alternative["type"])
        if not text and "$ref" in alternative:
            text = str(alternative["$ref"]).rsplit("/", 1)[-1]
        if text:
            words.append(str(text))
    return "; ".join(dict.fromkeys(words))


def _short_message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, without echoing a whole mapping or list back at the editor."""
    limit = error.validator_value
    if error.validator in ("maxProperties", "maxItems"):
        return f"has more than {limit} entr{'y' if limit == 1 else 'ies'}"
    if error.validator in ("minProperties", "minItems"):
        return f"needs at least {limit} entr{'y' if limit == 1 else 'ies'}"
    if error.validator == "pattern":  # the regular expression means nothing to an editor; the hint says the form
        return f"{error.instance!r} is not written in the form this field takes"
    if error.validator in ("anyOf", "oneOf"):
        kind = (
            "mapping" if isinstance(error.instance, dict) else "list" if isinstance(error.instance, list) else "value"
        )
        shown = f"this {kind}" if isinstance(error.instance, (dict, list)) else repr(error.instance)[:80]
        forms = _forms(limit)
        return f"{shown} fits none of the forms this field takes" + (f" ({forms})" if forms else "")
    if isinstance(error.instance, (dict, list)):
        kind = "mapping" if isinstance(error.instance, dict) else "list"
        return f"this {kind} does not fit the schema ({error.validator}: {limit!r})"[:200]
    return error.message
