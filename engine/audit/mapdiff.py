"""What changed in the FHIR map (rules/fhir-map.yaml) between two knowledge bases, and whether
its `map_version` says so.

The map is versioned on its own, not with the rules: the knowledge-base fingerprint and kb.yaml's
version do not cover it, and a FHIR result records the map as `decision.fhir.map {version,
sha256}`. Its sha256 hashes what the map says (canonical JSON: comments and layout do not count),
so any other change makes results that name one map_version come from two maps. `diff` therefore
requires map_version to go up whenever that content changed, and says what changed: codes per
code set (with the fields the set fills), settings, sources, conversions, medications, fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsgs_kb.engine.errors import KBErrors
from fsgs_kb.engine.fhir.checkmap import MAP_FILE
from fsgs_kb.engine.fhir.errors import FhirMapError, pointer_join
from fsgs_kb.engine.fhir.yamlload import MAX_MAP_BYTES, load_yaml
from fsgs_kb.engine.load.files import read_regular
from fsgs_kb.engine.load.fingerprint import canonical_json, sha256_text
from fsgs_kb.engine.load.loader import display_path

SUBJECT = MAP_FILE
SHORT = 80
_KEYED = ("code_sets", "unit_conversions", "map_version")  # compared by key, not by position


@dataclass(frozen=True)
class MapSide:
    """One side's map: its parsed data (None: the knowledge base has no map), or why it cannot be read."""

    file: str
    data: Any = None
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    unreadable: str | None = None

    @property
    def version(self) -> str | None:
        return str(self.data.get("map_version")) if isinstance(self.data, dict) else None

    @property
    def sha256(self) -> str | None:
        """As FhirMap.sha256, what a FHIR result records as decision.fhir.map.sha256."""
        return None if self.unreadable else sha256_text(canonical_json(self.data))


def load_map_side(directory: Path) -> MapSide | None:
    """The map of a knowledge base directory, parsed strictly but not checked against today's
    schema (an old revision's map may predate it); None when the directory has no map."""
    path = directory / MAP_FILE
    if not path.is_file() and not path.is_symlink():
        return None
    display = display_path(path)
    try:
        data, positions = load_yaml(path, read_regular(path, display, directory, MAX_MAP_BYTES))
    except KBErrors as exc:
        return MapSide(display, unreadable=exc.errors[0].message)
    except FhirMapError as exc:
        return MapSide(display, unreadable=exc.problems[0].message if exc.problems else "cannot be read")
    return MapSide(display, data, positions)


@dataclass
class MapDiff:
    changes: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (kind, detail, extra)
    violations: list[str] = field(default_factory=list)

    def add(self, kind: str, detail: str, **extra: Any) -> None:
        self.changes.append((kind, detail, extra))


def compare_maps(old: MapSide | None, new: MapSide | None) -> MapDiff:
    out = MapDiff()
    if old is None and new is None:
        return out
    if old is None:
        out.add("map_added", f"added, map_version {new.version}")  # type: ignore[union-attr]
        return out
    if new is None:
        out.add("map_removed", "removed: FHIR input then reads the map bundled with fsgs-kb")
        return out
    if old.unreadable or new.unreadable:
        which = "old" if old.unreadable else "new"
        out.add("map_unreadable", f"the {which} map cannot be read ({old.unreadable or new.unreadable}): not compared")
        return out
    a, b = old.data, new.data
    if canonical_json(a) == canonical_json(b):
        return out
    if not (isinstance(a, dict) and isinstance(b, dict)):
        out.add("map_changed", "changed")
    else:
        _compare_content(a, b, out)
    _check_version(old, new, out)
    return out


def _check_version(old: MapSide, new: MapSide, out: MapDiff) -> None:
    before, after = old.version, new.version
    if before != after:
        out.add("map_version", f"map_version {before} → {after}", old=before, new=after)
        if _key(after) <= _key(before):  # a lower version may name a map released before
            out.violations.append(f"{MAP_FILE} map_version went from {before} to {after}: versions only go up")
    elif canonical_json(_without_version(old.data)) != canonical_json(_without_version(new.data)):
        out.violations.append(
            f"{MAP_FILE} changed but its map_version is still {after}: raise map_version in {MAP_FILE}"
        )


def _without_version(data: Any) -> Any:
    return {k: v for k, v in data.items() if k != "map_version"} if isinstance(data, dict) else data


def _key(version: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(version).split("."))
    except ValueError:
        return ()


def _compare_content(a: dict[str, Any], b: dict[str, Any], out: MapDiff) -> None:
    fills = _merge(_fills(a), _fills(b))
    sets_a, sets_b = _dict(a.get("code_sets")), _dict(b.get("code_sets"))
    for name in sorted(set(sets_a) | set(sets_b)):
        label = f"code set {name}" + (f" (fills {', '.join(fills[name])})" if fills.get(name) else "")
        _compare_code_set(label, sets_a.get(name), sets_b.get(name), out)
    _compare_conversions(a.get("unit_conversions"), b.get("unit_conversions"), out)
    for key in sorted(set(a) | set(b)):
        if key not in _KEYED:
            for pointer, detail in _leaf_changes(a.get(key, _ABSENT), b.get(key, _ABSENT), pointer_join("", key)):
                out.add(_kind(pointer), f"{pointer}: {detail}", pointer=pointer)


def _kind(pointer: str) -> str:
    section = pointer.split("/")[1]
    return {"settings": "map_setting", "sources": "map_source", "medications": "map_medication"}.get(
        section, "map_field" if section == "fields" else "map_changed"
    )


def _compare_code_set(label: str, before: Any, after: Any, out: MapDiff) -> None:
    if before is None:
        out.add("map_code_set_added", f"{label} added with {_count(after)} code(s)")
    if after is None:
        out.add("map_code_set_removed", f"{label} removed")
    if before is None or after is None:
        return
    codes_a, codes_b = _codes(before), _codes(after)
    for coding in [c for c in codes_a if c not in codes_b]:
        out.add("map_code_removed", f"{label}: code {coding} removed ({_describe(codes_a[coding])})", code=coding)
    for coding in [c for c in codes_b if c not in codes_a]:
        out.add("map_code_added", f"{label}: code {coding} added ({_describe(codes_b[coding])})", code=coding)
    for coding in [c for c in codes_b if c in codes_a]:
        for pointer, detail in _leaf_changes(codes_a[coding], codes_b[coding], ""):
            out.add("map_code_changed", f"{label}: code {coding} {pointer.lstrip('/')}: {detail}", code=coding)
    if [c for c in codes_a if c in codes_b] != [c for c in codes_b if c in codes_a]:
        out.add("map_code_order", f"{label}: codes reordered (the first usable code is the one FHIR output writes)")
    rest_a = {k: v for k, v in _dict(before).items() if k != "codes"}
    rest_b = {k: v for k, v in _dict(after).items() if k != "codes"}
    for pointer, detail in _leaf_changes(rest_a, rest_b, ""):
        out.add("map_code_set_changed", f"{label}: {pointer.lstrip('/')}: {detail}")


def _codes(spec: Any) -> dict[str, Any]:
    """The codes of a set by `system|code`, in map order (a repeated coding is kept under its index)."""
    found: dict[str, Any] = {}
    codes = spec.get("codes") if isinstance(spec, dict) else None
    for i, code in enumerate(codes if isinstance(codes, list) else []):
        name = f"{code.get('system')}|{code.get('code')}" if isinstance(code, dict) else f"#{i}"
        found[name if name not in found else f"{name} #{i}"] = code
    return found


def _count(spec: Any) -> int:
    return len(_codes(spec))


def _describe(code: Any) -> str:
    if not isinstance(code, dict):
        return _short(code)
    verified = "verified" if code.get("verified") is True else "not verified"
    return ", ".join(str(part) for part in (code.get("display"), verified, code.get("source")) if part)


def _compare_conversions(before: Any, after: Any, out: MapDiff) -> None:
    def keyed(items: Any) -> dict[str, Any]:
        if not isinstance(items, list):
            return {} if items is None else {"unit_conversions": items}
        return {
            (f"{c.get('from')} → {c.get('to')}" if isinstance(c, dict) else f"#{i}"): c for i, c in enumerate(items)
        }

    a, b = keyed(before), keyed(after)
    for name in sorted(set(a) | set(b)):
        for pointer, detail in _leaf_changes(a.get(name, _ABSENT), b.get(name, _ABSENT), ""):
            where = f" {pointer.lstrip('/')}" if pointer else ""
            out.add("map_conversion", f"unit conversion {name}{where}: {detail}")


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT: Any = _Absent()


def _leaf_changes(a: Any, b: Any, pointer: str) -> Iterator[tuple[str, str]]:
    """(JSON pointer, 'old → new' / 'added: …' / 'removed') for every place a and b differ."""
    if a is _ABSENT:
        yield pointer, "added" if isinstance(b, dict | list) else f"added: {_short(b)}"
    elif b is _ABSENT:
        yield pointer, "removed" if isinstance(a, dict | list) else f"removed (was {_short(a)})"
    elif isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            yield from _leaf_changes(a.get(key, _ABSENT), b.get(key, _ABSENT), pointer_join(pointer, key))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _leaf_changes(x, y, pointer_join(pointer, i))
    elif canonical_json(a) != canonical_json(b):
        yield pointer, f"{_short(a)} → {_short(b)}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else canonical_json(value)
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _merge(*maps: dict[str, list[str]]) -> dict[str, list[str]]:
    merged: dict[str, set[str]] = {}
    for found in maps:
        for name, fields in found.items():
            merged.setdefault(name, set()).update(fields)
    return {name: sorted(fields) for name, fields in merged.items()}


def _fills(data: dict[str, Any]) -> dict[str, list[str]]:
    """Code set → the patient fields it fills: through an Observation or Condition match, or
    through a medication whose include, exclude or route sets name it."""
    meds = _dict(data.get("medications"))
    found: dict[str, set[str]] = {}
    for path, spec in _dict(data.get("fields")).items():
        for src in _list(_dict(spec).get("sources")):
            src = _dict(src)
            matches = [m for m in _list(src.get("match")) if isinstance(m, dict)]
            names = [m.get(key) for m in matches for key in ("code_set", "component")]
            names += [v.get("code_set") for v in _list(src.get("values")) if isinstance(v, dict)]
            drugs = [src["drug"]] if "drug" in src else list(_dict(src.get("drugs")).values())
            for drug in drugs:
                med = _dict(meds.get(drug)) if isinstance(drug, str) else {}
                for key in ("include", "exclude", "exclude_routes"):
                    names += _list(med.get(key))
            for name in names:
                if isinstance(name, str):
                    found.setdefault(name, set()).add(path)
    return {name: sorted(paths) for name, paths in found.items()}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
