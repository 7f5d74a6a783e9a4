"""The catalogue of patient fields rules may name, read from schema/patient.schema.json.

The patient schema is the one place that says which fields exist, their types, allowed values
and units (`x-unit`, or `x-unit-from` for values whose unit is recorded beside them). Rules are
checked against it, so a misspelt field is caught when the knowledge base is validated, not
silently treated as "unknown" for every patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fsgs_kb.engine.errors import pointer_join, pointer_parts
from fsgs_kb.engine.load.schemas import load_schema


@dataclass(frozen=True)
class FieldInfo:
    """One leaf of the patient record."""

    path: str  # dotted, as rules name it: cyclosporine.daily_dose.value
    pointer: str  # JSON pointer into the record: /cyclosporine/daily_dose/value
    keys: tuple[str, ...]
    type: str  # number | string | boolean | array
    enum: tuple[str, ...] | None
    unit: str | None
    unit_from: str | None  # the sibling field holding this value's unit
    missing_pointer: str  # what to ask for when it is absent (the parent when both are required)
    item_key: str | None = None  # a list of objects: the key each item's value is read from
    low: float | None = None  # numbers: the schema's range (exclusive_low: the minimum itself is not allowed)
    exclusive_low: bool = False
    high: float | None = None
    title: str = ""  # the clinical name, from the schema's `title` (e.g. "weeks of high-dose corticosteroids")
    max_length: int | None = None  # strings: the schema's maxLength


def _type_of(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "string"
    return str(schema.get("type", "string"))


def _walk_object(
    schema: dict[str, Any], path: tuple[str, ...], required: set[str], pointer: str, out: dict[str, FieldInfo]
) -> None:
    for key, sub in schema.get("properties", {}).items():
        if not path and key in ("id", "ext"):
            continue  # the id is not clinical data; ext is carried, never read
        child_path = path + (key,)
        child_pointer = pointer_join("", *child_path)
        if sub.get("type") == "object":
            _walk_object(sub, child_path, set(sub.get("required", ())), child_pointer, out)
            continue
        items = sub.get("items", {})
        if sub.get("type") == "array" and items.get("type") == "object":
            # a list of objects: rules read one key of every item, as a list (drugs taken)
            for item_key, item in items.get("properties", {}).items():
                if "enum" in item:
                    dotted = ".".join(child_path + (item_key,))
                    out[dotted] = FieldInfo(
                        dotted,
                        child_pointer,
                        child_path,
                        "array",
                        tuple(item["enum"]),
                        None,
                        None,
                        child_pointer,
                        item_key,
                        title=str(item.get("title") or sub.get("title") or key.replace("_", " ")),
                    )
            continue
        enum = sub.get("enum") or sub.get("items", {}).get("enum")
        out[".".join(child_path)] = FieldInfo(
            ".".join(child_path),
            child_pointer,
            child_path,
            _type_of(sub),
            tuple(enum) if enum else None,
            sub.get("x-unit"),
            sub.get("x-unit-from"),
            pointer if key in required else child_pointer,
            None,
            sub.get("exclusiveMinimum", sub.get("minimum")),
            "exclusiveMinimum" in sub,
            sub.get("maximum"),
            str(sub.get("title") or key.replace("_", " ")),
            sub.get("maxLength"),
        )


@lru_cache(maxsize=1)
def catalogue() -> dict[str, FieldInfo]:
    """Every patient field by dotted path."""
    out: dict[str, FieldInfo] = {}
    _walk_object(load_schema("patient"), (), set(), "", out)
    return out


@lru_cache(maxsize=1)
def pointer_titles() -> dict[str, str]:
    """The clinical name of every place in the record, objects included, by JSON pointer
    (`/serum_creatinine` → "serum creatinine"): what an explanation asks the clinician to record."""
    out: dict[str, str] = {}

    def walk(schema: dict[str, Any], pointer: str) -> None:
        for key, sub in schema.get("properties", {}).items():
            child = pointer_join(pointer, key)
            out[child] = str(sub.get("title") or key.replace("_", " "))
            if sub.get("type") == "object":
                walk(sub, child)

    walk(load_schema("patient"), "")
    return out


def pointer_title(pointer: str) -> str:
    """A place's clinical name (`pointer_titles`), else its keys as words (`/weigth_kg` →
    "weigth kg"): what a reader is shown for a pointer, known to the schema or not."""
    return pointer_titles().get(pointer, pointer.strip("/").replace("/", " ").replace("_", " "))


def names_a_field(pointer: str) -> bool:
    """Whether a JSON pointer can name a value of a patient record (schema/patient.schema.json):
    an object's property (any key under an open object such as `ext`), an array's item (by index)."""
    node: Any = load_schema("patient")
    for part in pointer_parts(pointer):
        if not isinstance(node, dict):
            return False
        if node.get("type") == "array" or "items" in node:
            if not part.isdigit():
                return False
            node = node.get("items", {})
            continue
        properties = node.get("properties")
        if properties is None and node.get("type") != "object":
            return False  # a number, a string, an enum: nothing inside it
        if isinstance(properties, dict) and part in properties:
            node = properties[part]
        elif node.get("additionalProperties", True) is False:
            return False
        else:
            return True  # an open object (`ext`): whatever it holds may be masked
    return True
