"""The FHIR map as the rest of fsgs-kb sees it: located KBErrors, and fields that must exist.

The map loader reports its own problems (FhirMapError, with pointer, line and column); at the
boundary to the rest of the tool they become KBErrors, so `validate` prints them like every other
knowledge-base problem and the CLI exits 2 with one clear line per problem. On top of the
loader's checks, this module checks what only the patient schema knows: that every field the map
fills exists in the patient record (or is declared `in_patient_schema: false`), and that the
values and units the map writes are ones the record allows. A map that fills a misspelt field
would otherwise fill nothing, silently, for every patient.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.fhir.errors import FhirMapError, pointer_join
from fsgs_kb.engine.fhir.fhirmap import FhirMap, default_map_path, load_map
from fsgs_kb.engine.fhir.yamlload import KEY, MAX_MAP_BYTES
from fsgs_kb.engine.load.fields import FieldInfo, catalogue
from fsgs_kb.engine.load.files import read_regular
from fsgs_kb.engine.load.loader import display_path

MAP_FILE = "fhir-map.yaml"


def map_path(rules_dir: Path | None) -> Path:
    """The map a knowledge base uses: RULES/fhir-map.yaml when it has one, else the bundled map."""
    if rules_dir is not None and (Path(rules_dir) / MAP_FILE).is_file():
        return Path(rules_dir) / MAP_FILE
    return default_map_path()


def as_kb_errors(exc: FhirMapError) -> list[KBError]:
    """The loader's problems as KBErrors, each at its file, line, column and JSON pointer."""
    return [
        KBError(
            "fhirmap.invalid",
            f"{p.pointer or '/'}: {p.message}",
            file=display_path(Path(exc.file)) if exc.file else None,
            line=p.line,
            col=p.col,
            pointer=p.pointer,
            hint=p.hint or "see the rules at the top of rules/fhir-map.yaml",
        )
        for p in exc.problems
    ]


def _enum_of(fields: dict[str, FieldInfo], path: str) -> tuple[str, ...] | None:
    info = fields.get(path)
    return info.enum if info else None


def _field_problems(path: str, spec: dict[str, Any], fields: dict[str, FieldInfo]) -> list[tuple[str, str]]:
    """(pointer, message) for one map field checked against the patient schema."""
    base = pointer_join("/fields", path)
    kind = spec["type"]
    if spec.get("in_patient_schema") is False:
        if path in fields or any(name.startswith(path + ".") for name in fields):
            return [(pointer_join(base, "in_patient_schema"), f"{path} is in the patient schema: remove this flag")]
        return []
    leaf = {"quantity": f"{path}.value", "object_list": f"{path}.{spec.get('item', {}).get('key')}"}.get(kind, path)
    if leaf not in fields:
        return [(base, f"{path} is not a field of the patient record (schema/patient.schema.json)")]
    out: list[tuple[str, str]] = []
    if kind == "object_list":
        for part in ("key", "value"):
            allowed_items = _enum_of(fields, f"{path}.{spec['item'][part]}")
            for i, value in enumerate(spec["item"][f"{part}_values"]):
                if allowed_items is not None and value not in allowed_items:
                    where = pointer_join(base, "item", f"{part}_values", i)
                    out.append((where, f"'{value}' is not a value {path}.{spec['item'][part]} allows"))
    unit = spec.get("sets_unit")
    if unit is not None:
        allowed_units = _enum_of(fields, unit["path"])
        if unit["path"] not in fields:
            out.append(
                (pointer_join(base, "sets_unit", "path"), f"{unit['path']} is not a field of the patient record")
            )
        elif allowed_units is not None and unit["value"] not in allowed_units:
            out.append(
                (pointer_join(base, "sets_unit", "value"), f"'{unit['value']}' is not a unit {unit['path']} allows")
            )
    allowed: tuple[str, ...] | None = None
    if kind in ("enum", "enum_list"):
        allowed = _enum_of(fields, path)
    elif kind == "quantity":
        allowed = _enum_of(fields, f"{path}.unit")
    elif kind == "shared_unit":
        if spec["unit_path"] not in fields:
            out.append((pointer_join(base, "unit_path"), f"{spec['unit_path']} is not a field of the patient record"))
        allowed = _enum_of(fields, spec["unit_path"])
    elif kind == "number" and fields[path].unit and fields[path].unit != spec["unit"]:
        out.append((pointer_join(base, "unit"), f"the record holds {path} in {fields[path].unit}, not {spec['unit']}"))
    for i, value in enumerate(spec.get("values", [])):
        if allowed is not None and value not in allowed:
            out.append((pointer_join(base, "values", i), f"'{value}' is not a value {path} allows ({list(allowed)})"))
    return out


def field_problems(fmap: FhirMap) -> list[KBError]:
    """Map fields that name no patient field, or values and units the record does not allow."""
    fields = catalogue()
    out = []
    for path, spec in fmap.fields.items():
        for pointer, message in _field_problems(path, spec, fields):
            line, col = _position(fmap, pointer)
            out.append(KBError("fhirmap.field", message, file=fmap.file or None, line=line, col=col, pointer=pointer))
    return out


def _position(fmap: FhirMap, pointer: str) -> tuple[int | None, int | None]:
    """Where the key of the pointed-at value is in the YAML (else the value, else its parent)."""
    if pointer + KEY in fmap.positions:
        return fmap.positions[pointer + KEY]
    probe = pointer
    while probe not in fmap.positions and probe:
        probe = probe.rsplit("/", 1)[0]
    return fmap.positions.get(probe, (None, None))


def check_map(path: Path) -> tuple[FhirMap | None, list[KBError]]:
    """(the map, or None when it cannot be used; every problem as a KBError). The file is read like
    every knowledge-base file: a link out of its directory, a FIFO or an oversized file is refused."""
    display = display_path(path)
    try:
        raw = read_regular(path, display, path.parent, MAX_MAP_BYTES)
        fmap = load_map(path, raw=raw)
    except KBErrors as exc:
        return None, exc.errors
    except FhirMapError as exc:
        return None, as_kb_errors(exc)
    problems = field_problems(fmap)
    return (None if problems else fmap), problems


def load_checked_map(path: Path) -> FhirMap:
    """The map at path, or KBErrors naming every problem (the CLI prints them and exits 2)."""
    fmap, problems = check_map(path)
    if fmap is None:
        raise KBErrors(problems)
    return fmap
