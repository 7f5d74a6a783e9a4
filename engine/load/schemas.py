"""The JSON Schemas in `schema/`, loaded once, with errors turned into located KBErrors.

The schemas are what an editor such as VS Code checks while a clinician types; the validator
uses the very same files so that both agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    import jsonschema

    schema = load_schema(name)
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def part_validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    """A validator of a schema made from parts of the project's schemas (their `$ref`s resolve
    against the `$defs` it carries)."""
    import jsonschema

    return jsonschema.Draft202012Validator(schema, registry=_registry())


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
    """For anyOf/oneOf failures, the most relevant branch's errors (jsonschema's best_match)."""
    if error.context:
        from jsonschema.exceptions import best_match

        best = best_match(error.context)
        if best is not None and best.path == error.path and best.validator not in ("type", "const"):
            return _leaf_errors(best)
    return [error]


def schema_errors(name: str, doc: Located, skip: Callable[[str], bool] = lambda p: False) -> list[KBError]:
    """Every schema problem of a document, located; pointers for which `skip` is true are left
    to a more specific checker that gives better messages (the condition parser)."""
    out: list[KBError] = []
    for raw in validator(name).iter_errors(doc.data):
        for error in _leaf_errors(raw):
            pointer = _instance_pointer(error)
            if skip(pointer):
                continue
            out.extend(_to_kb_errors(error, pointer, doc))
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


def _to_kb_errors(error: jsonschema.ValidationError, pointer: str, doc: Located) -> list[KBError]:
    unexpected = _unexpected_keys(error)
    if unexpected:
        allowed = sorted(_properties(error))
        return [
            doc.error(
                "schema.unknown_field",
                f"unknown field '{key}'",
                pointer_join(pointer, key),
                did_you_mean(key, allowed) or f"allowed here: {', '.join(allowed)}",
                key=True,
            )
            for key in unexpected
        ]
    if error.validator == "required":
        return [
            doc.error("schema.missing_field", error.message, pointer, "add the field; see the schema for what it holds")
        ]
    hint = error.schema.get("description") if isinstance(error.schema, dict) else None
    return [doc.error("schema.invalid", f"{pointer or '/'}: {_short_message(error)}", pointer, hint)]


def _short_message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, without echoing a whole mapping or list back at the editor."""
    limit = error.validator_value
    if error.validator in ("maxProperties", "maxItems"):
        return f"has more than {limit} entr{'y' if limit == 1 else 'ies'}"
    if error.validator in ("minProperties", "minItems"):
        return f"needs at least {limit} entr{'y' if limit == 1 else 'ies'}"
    if error.validator == "pattern":  # the regular expression means nothing to an editor; the hint says the form
        return f"{error.instance!r} is not written in the form this field takes"
    if isinstance(error.instance, (dict, list)):
        kind = "mapping" if isinstance(error.instance, dict) else "list"
        return f"this {kind} does not fit the schema ({error.validator}: {limit!r})"[:200]
    return error.message
