"""Load and check the FHIR map (rules/fhir-map.yaml), the data that drives every conversion.

The JSON Schema checks the shape; the checks here catch what a schema cannot: a field that names a
code set or a medication that does not exist, a code citing an unknown source, a unit conversion
whose target is not a unit the record allows. Every problem carries a JSON pointer and the YAML
line, and all are reported at once, so a site's editor fixes the map in one pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from fsgs_kb.engine.fhir.errors import FhirMapError, Problem, pointer_join
from fsgs_kb.engine.fhir.yamlload import KEY, load_yaml
from fsgs_kb.engine.load.fingerprint import canonical_json
from fsgs_kb.engine.load.schemas import explained, part_validator

SCHEMA_NAME = "fhir-map.schema.json"


def default_schema_path() -> Path:
    """Find schema/fhir-map.schema.json in the nearest ancestor of this package (draft or fsgs_kb layout)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "schema" / SCHEMA_NAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"schema/{SCHEMA_NAME} not found above {Path(__file__).parent}")


def default_map_path() -> Path:
    """Find rules/fhir-map.yaml the same way, for tests and examples."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "rules" / "fhir-map.yaml"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"rules/fhir-map.yaml not found above {Path(__file__).parent}")


Coding = tuple[str, str]


@dataclass(frozen=True)
class FhirMap:
    """A checked map. `data` is the parsed YAML; the properties index it for the converter."""

    data: dict[str, Any]
    file: str = ""
    positions: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def settings(self) -> dict[str, Any]:
        value: dict[str, Any] = self.data["settings"]
        return value

    @property
    def fields(self) -> dict[str, dict[str, Any]]:
        value: dict[str, dict[str, Any]] = self.data["fields"]
        return value

    @property
    def medications(self) -> dict[str, dict[str, Any]]:
        value: dict[str, dict[str, Any]] = self.data["medications"]
        return value

    @cached_property
    def sha256(self) -> str:
        """Fingerprint of what the map says (canonical JSON, so comments and layout do not count):
        a result records it, so a replay can tell whether the same map made the record."""
        return hashlib.sha256(canonical_json(self.data).encode("utf-8")).hexdigest()

    @property
    def version(self) -> str:
        return str(self.data["map_version"])

    @cached_property
    def code_sets(self) -> dict[str, frozenset[Coding]]:
        """Usable codings per code set: unverified codes drop out unless the site chose `use`."""
        use_all = self.settings["unverified_codes"] == "use"
        return {
            name: frozenset((c["system"], c["code"]) for c in spec["codes"] if use_all or c["verified"])
            for name, spec in self.data["code_sets"].items()
        }

    @cached_property
    def drug_codes(self) -> dict[str, frozenset[Coding]]:
        """The usable codings that name each drug of the map (its `include` code sets), in map
        order: an order whose codes name two of them cannot be read as either (bundle.py)."""
        return {
            drug: frozenset().union(*(self.code_sets[s] for s in spec["include"]))
            for drug, spec in self.medications.items()
        }

    @cached_property
    def code_info(self) -> dict[Coding, dict[str, Any]]:
        """Every listed coding with its display and provenance, for reports."""
        return {(c["system"], c["code"]): c for spec in self.data["code_sets"].values() for c in spec["codes"]}

    def unverified_codes(self) -> list[dict[str, Any]]:
        """The codes a site should check before production use."""
        return [c for c in self.code_info.values() if not c["verified"]]

    def first_code(self, code_set: str) -> Coding | None:
        """The first usable coding of a set, in map order (the one the inverse conversion writes)."""
        usable = self.code_sets[code_set]
        for c in self.data["code_sets"][code_set]["codes"]:
            if (c["system"], c["code"]) in usable:
                return c["system"], c["code"]
        return None

    def cross_factor(self, from_unit: str, to_unit: str) -> float | None:
        """Factor to convert a record value between two record units, if the map declares one."""
        if from_unit == to_unit:
            return 1.0
        for conv in self.data["unit_conversions"]:
            if conv["from"] == from_unit and conv["to"] == to_unit:
                return float(conv["factor"])
            if conv["from"] == to_unit and conv["to"] == from_unit:
                return 1.0 / float(conv["factor"])
        return None


def _schema_problems(data: Any, schema: dict[str, Any], positions: dict[str, tuple[int, int]]) -> list[Problem]:
    """The map's schema problems in the words and with the fixes the knowledge base's own files
    get (engine/load/schemas.py), placed at their line and column."""
    validator = part_validator(schema)  # the project's patterns: `$` is the end of the text, as in the KB's schemas
    problems = []
    for found in explained(validator, data):
        at_key = positions.get(found.pointer + KEY) if found.key else None
        line, col = at_key or _where(positions, found.pointer)
        problems.append(Problem(found.text, found.pointer, line, col, found.hint))  # as_kb_errors names the pointer
    return problems


def _where(positions: dict[str, tuple[int, int]], pointer: str) -> tuple[int | None, int | None]:
    probe = pointer
    while probe not in positions and probe:
        probe = probe.rsplit("/", 1)[0]
    return positions.get(probe, (None, None))


def _reference_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(pointer, message) for names that point nowhere and units a field cannot hold."""
    out: list[tuple[str, str]] = []
    sets, meds, cites = data["code_sets"], data["medications"], data["sources"]
    for name, spec in sets.items():
        for i, code in enumerate(spec["codes"]):
            if code.get("source") and code["source"] not in cites:
                out.append(
                    (pointer_join("/code_sets", name, "codes", i, "source"), f"unknown source '{code['source']}'")
                )
    for name, med in meds.items():
        for key in ("include", "exclude", "exclude_routes"):
            for i, ref in enumerate(med.get(key, [])):
                if ref not in sets:
                    out.append((pointer_join("/medications", name, key, i), f"unknown code set '{ref}'"))
    out.extend(_shared_codes(sets, meds))
    for path, spec in data["fields"].items():
        out.extend(_field_problems(path, spec, sets, meds))
    return out


def _shared_codes(sets: dict[str, Any], meds: dict[str, Any]) -> list[tuple[str, str]]:
    """A code two drugs include: an order coded with it names both, so it would never be read as
    either (bundle.py sets such an order aside); the map must tell its drugs apart."""
    out: list[tuple[str, str]] = []
    owner: dict[tuple[str, str], str] = {}
    for name, med in meds.items():
        for i, ref in enumerate(med.get("include", [])):
            for code in sets.get(ref, {}).get("codes", []):
                key = (code["system"], code["code"])
                other = owner.setdefault(key, name)
                if other != name:
                    where = pointer_join("/medications", name, "include", i)
                    out.append((where, f"code {key[0]}|{key[1]} is included by medication '{other}' too"))
    return out


def _field_problems(
    path: str, spec: dict[str, Any], sets: dict[str, Any], meds: dict[str, Any]
) -> list[tuple[str, str]]:
    out = []
    base = pointer_join("/fields", path)
    allowed = {spec["unit"]} if spec["type"] == "number" else set(spec.get("values", []))
    for i, src in enumerate(spec["sources"]):
        here = pointer_join(base, "sources", i)
        for j, match in enumerate(src.get("match", [])):
            for key in ("code_set", "component"):
                if key in match and match[key] not in sets:
                    out.append((pointer_join(here, "match", j, key), f"unknown code set '{match[key]}'"))
            out.extend(_convert_problems(pointer_join(here, "match", j, "convert"), match["convert"], allowed))
        if "convert" in src:
            out.extend(_convert_problems(pointer_join(here, "convert"), src["convert"], allowed))
        for j, item in enumerate(src.get("values", [])):
            if item["code_set"] not in sets:
                out.append((pointer_join(here, "values", j, "code_set"), f"unknown code set '{item['code_set']}'"))
        drugs = [src["drug"]] if "drug" in src else list(src.get("drugs", {}).values())
        out.extend((pointer_join(here, "drug"), f"unknown medication '{d}'") for d in drugs if d not in meds)
    return out


def _convert_problems(pointer: str, convert: dict[str, Any], allowed: set[str]) -> list[tuple[str, str]]:
    if not allowed:
        return []
    return [
        (pointer_join(pointer, unit, "to"), f"'{rule['to']}' is not a unit this field holds ({sorted(allowed)})")
        for unit, rule in convert.items()
        if rule["to"] not in allowed
    ]


def load_map(path: str | Path, schema_path: str | Path | None = None, *, raw: bytes | None = None) -> FhirMap:
    """Read, validate and index a FHIR map; raise FhirMapError listing every problem with its pointer.

    `raw`: the file's bytes when the caller has read them (validate reads through engine.load.files,
    which refuses links out of the rules directory, FIFOs and oversized files)."""
    path = Path(path)
    data, positions = load_yaml(path, raw)
    schema = json.loads(Path(schema_path or default_schema_path()).read_text(encoding="utf-8"))
    problems = _schema_problems(data, schema, positions)
    if not problems:
        for pointer, message in _reference_problems(data):
            line, col = _where(positions, pointer)
            problems.append(Problem(message, pointer, line, col))
    if problems:
        raise FhirMapError(problems, str(path))
    return FhirMap(data, str(path), positions)
