"""The map is data: it loads, matches the patient schema, cites a source for every verified code,
and a broken map is refused with a JSON pointer and a line for each problem."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fsgs_kb.engine.fhir import FhirMap, FhirMapError, default_map_path, load_map


def _schema_node(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: Any = schema
    for part in path.split("."):
        node = node.get("properties", {}).get(part)
        if node is None:
            return None
    return node


def _leaves(schema: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for name, node in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        if node.get("type") == "object" and "properties" in node and set(node["properties"]) != {"value", "unit"}:
            out += _leaves(node, path + ".")
        else:
            out.append(path)
    return out


def test_shipped_map_loads(fmap: FhirMap) -> None:
    assert fmap.fields and fmap.code_sets


def test_every_mapped_field_is_a_real_patient_field(fmap: FhirMap, patient_schema: dict[str, Any]) -> None:
    for path, spec in fmap.fields.items():
        node = _schema_node(patient_schema, path)
        if spec.get("in_patient_schema") is False:
            assert node is None, f"{path} is in the schema now: drop in_patient_schema: false"
            continue
        assert node is not None, path
        if spec["type"] in ("enum",):
            assert spec["values"] == node["enum"], path
        if spec["type"] == "enum_list":
            assert spec["values"] == node["items"]["enum"], path
        if spec["type"] == "quantity":
            assert spec["values"] == node["properties"]["unit"]["enum"], path
        if spec["type"] == "shared_unit":
            unit = _schema_node(patient_schema, spec["unit_path"])
            assert unit is not None and spec["values"] == unit["enum"], path


def test_map_covers_every_patient_field_but_id_and_ext(fmap: FhirMap, patient_schema: dict[str, Any]) -> None:
    units = {"serum_creatinine.unit", "kidney_function.unit"}  # written beside the values (shared_unit, sets_unit)
    leaves = set(_leaves(patient_schema)) - {"id", "ext"} - units
    assert leaves == {p for p, s in fmap.fields.items() if s.get("in_patient_schema") is not False}


def test_unverified_codes_never_match_by_default(fmap: FhirMap) -> None:
    unverified = {(c["system"], c["code"]) for c in fmap.unverified_codes()}
    assert unverified, "the map is expected to list some unverified codes"
    assert fmap.settings["unverified_codes"] == "ignore"
    assert not unverified & set().union(*fmap.code_sets.values())
    assert all(c.get("note") for c in fmap.unverified_codes())


def test_verified_codes_cite_a_known_source(fmap: FhirMap) -> None:
    for coding, info in fmap.code_info.items():
        if info["verified"]:
            assert info["source"] in fmap.data["sources"], coding


def _broken(tmp_path: Path, old: str, new: str) -> FhirMapError:
    text = default_map_path().read_text()
    assert old in text
    path = tmp_path / "fhir-map.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(FhirMapError) as info:
        load_map(path)
    return info.value


@pytest.mark.parametrize(
    ("old", "new", "pointer", "words"),
    [
        (
            "  days_per_month: 30.4375",
            "  days_per_month: 30.4375\n  days_per_month: 31",
            "/settings/days_per_month",
            "duplicate key",
        ),
        (
            'code: "29463-7", display: "Body weight", verified: true',
            'code: "29463-7", display: "Body weight", verified: yes',
            "/code_sets/body_weight/codes/0/verified",
            "YAML 1.1 boolean",
        ),
        (  # YAML 1.1 reads 030.4375 as text, 0x1E as 30: one reading of numbers with the knowledge base's
            "  days_per_month: 30.4375",
            "  days_per_month: 0x1E",
            "/settings/days_per_month",
            "'0x1E' is read as 30 (a hexadecimal number)",
        ),
        (  # a tag on a list was dropped without a word: one reading of tags with the knowledge base's
            "    include: [voclosporin_rxnorm]",
            "    include: !!python/object/apply:os.system [voclosporin_rxnorm]",
            "/medications/voclosporin/include",
            "unsupported tag !!python/object/apply:os.system",
        ),
        (
            'code: "29463-7", display: "Body weight", verified: true, source: fhir-bodyweight',
            'code: "29463-7", display: "Body weight", verified: true',
            "/code_sets/body_weight/codes/0",
            "source",
        ),
        (
            "          - code_set: body_weight\n",
            "          - code_set: body_wieght\n",
            "/fields/weight_kg/sources/0/match/0/code_set",
            "unknown code set",
        ),
        (
            '"g": {to: kg, factor: 0.001}',
            '"g": {to: g, factor: 1}',
            "/fields/weight_kg/sources/0/match/0/convert/g/to",
            "not a unit this field holds",
        ),
        ("  unverified_codes: ignore", "  unverified_codes: sometimes", "/settings/unverified_codes", "is not one of"),
        (  # an order coded 42316 would name two drugs, and be read as neither
            "    include: [voclosporin_rxnorm]",
            "    include: [voclosporin_rxnorm, tacrolimus_rxnorm]",
            "/medications/voclosporin/include/1",
            "code http://www.nlm.nih.gov/research/umls/rxnorm|42316 is included by medication 'tacrolimus' too",
        ),
    ],
)
def test_broken_map_is_refused_with_pointer_and_line(
    tmp_path: Path, old: str, new: str, pointer: str, words: str
) -> None:
    err = _broken(tmp_path, old, new)
    hit = [p for p in err.problems if p.pointer == pointer]
    assert hit, [p.render() for p in err.problems]
    assert words in hit[0].message
    assert hit[0].line and hit[0].line > 1
    assert str(hit[0].line) in hit[0].render("fhir-map.yaml")


def test_empty_and_unreadable_maps(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(FhirMapError, match="empty"):
        load_map(empty)
    with pytest.raises(FhirMapError, match="cannot read"):
        load_map(tmp_path / "absent.yaml")


def test_yaml_aliases_dates_and_tabs_are_refused(tmp_path: Path) -> None:
    err = _broken(
        tmp_path,
        "settings:\n  observation_statuses: [final, amended, corrected]",
        "settings:\n  observation_statuses: &s [final, amended, corrected]\n  x: *s",
    )
    assert any("aliases" in p.message for p in err.problems)
    err = _broken(tmp_path, 'map_version: "0.3.1"', "map_version: 2024-01-02")
    assert any("date" in p.message and p.pointer == "/map_version" for p in err.problems)


def test_a_nul_character_in_the_map_is_refused_where_it_is(tmp_path: Path) -> None:
    """As in the knowledge base (yamlsafe.character_problem): at its line and column, in plain words."""
    err = _broken(tmp_path, 'map_version: "0.3.1"', 'map_version: "0.3\x001"')
    assert len(err.problems) == 1 and err.problems[0].message.startswith("a NUL character (U+0000) is not allowed")
    line = default_map_path().read_text().split('map_version: "0.3.1"')[0].count("\n") + 1
    assert (err.problems[0].line, err.problems[0].col) == (line, 18), err.problems


def test_a_surrogate_escape_in_the_map_is_refused_where_it_is(tmp_path: Path) -> None:
    """The map's YAML builder refuses UTF-16 surrogates as the knowledge base's does (one check,
    `yamlsafe.surrogate_problem`): a value no UTF-8 output can hold."""
    err = _broken(tmp_path, 'map_version: "0.3.1"', 'map_version: "0.3.1\\ud83d\\ude00"')
    assert [p.pointer for p in err.problems] == ["/map_version"], err.problems
    assert "two UTF-16 surrogates" in err.problems[0].message and "\\U0001F600" in err.problems[0].message


@pytest.mark.parametrize("depth", [65, 100_000])
def test_a_map_nested_too_deep_is_refused_where_it_is(tmp_path: Path, depth: int) -> None:
    """The map's YAML goes through the knowledge base's bounded composer: 100,000 nested lists
    (200 KB, well under the size limit) were a RecursionError out of PyYAML's composer."""
    err = _broken(
        tmp_path, "  days_per_month: 30.4375", "  days_per_month: 30.4375\n  deep: " + "[" * depth + "]" * depth
    )
    assert [p.message for p in err.problems] == ["nested more than 64 levels deep"]
    assert err.problems[0].line and err.problems[0].line > 1


def test_a_map_nested_too_deep_is_refused_by_the_cli(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(default_map_path().parent, rules)
    with (rules / "fhir-map.yaml").open("a", encoding="utf-8") as handle:
        handle.write("deep: " + "[" * 100_000 + "]" * 100_000 + "\n")
    run = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "validate", "--rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert "fhir-map.yaml:" in run.stdout and "nested more than 64 levels deep" in run.stdout
