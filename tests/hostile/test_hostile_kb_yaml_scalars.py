"""Every scalar of every YAML file we load is read one way (yamlsafe.read_scalar): numbers as
YAML 1.2 and JSON read them, and a form YAML 1.1 reads otherwise refused where it is written
(hostile sweep of session 11: `value: 0110` became a threshold of 72, `1:30`, `0x5A`,
`0b1011010` and `9_0` one of 90, a scenario's `weight_kg: 070` a weight of 56, and `1e300` the
text '1e300')."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hostile_kb import ROOT, copy_kb, run_cli

import fsgs_kb
from fsgs_kb.engine.errors import KBErrors
from fsgs_kb.engine.load.yamlsafe import parse_yaml
from fsgs_kb.engine.report.validation import format_error

EXAMPLES = ROOT / "examples"


def _read(value: str) -> Any:
    return parse_yaml(f"key: {value}\n".encode(), "f.yaml").data["key"]


def _refusal(text: str) -> str:
    with pytest.raises(KBErrors) as info:
        parse_yaml(text.encode(), "f.yaml")
    return "\n".join(format_error(error) for error in info.value.errors)


@pytest.mark.parametrize(
    ("value", "read_as", "decimal"),
    [
        ("0110", "72", "110"),
        ("070", "56", "70"),
        ("-0110", "-72", "-110"),
        ("090", "the text '090'", "90"),
        ("1:30", "90", "90"),
        ("1:30.5", "90.5", "90.5"),
        ("0x5A", "90", "90"),
        ("0b1011010", "90", "90"),
        ("9_0", "90", "90"),
        ("1_000.5", "1000.5", "1000.5"),
        ("0o17", "the text '0o17'", "15"),
    ],
)
def test_a_number_yaml_11_reads_otherwise_is_refused_where_it_is(value: str, read_as: str, decimal: str) -> None:
    shown = _refusal(f"a: 1\nkey: {value}\n")
    assert shown.startswith(f"f.yaml:2:6: error[yaml.number] '{value}' is read as {read_as} ("), shown
    assert f'plain decimal digits ({decimal}), or quote it ("{value}")' in shown, shown


@pytest.mark.parametrize(
    ("value", "number"),
    [("1e300", 1e300), ("1.0e5", 100000.0), ("-2E-3", -0.002), ("5", 5), ("-0", 0), (".5", 0.5), ("1.", 1.0)],
)
def test_numbers_are_read_as_yaml_12_and_json_read_them(value: str, number: float) -> None:
    read = _read(value)
    assert read == number and type(read) is type(number), read


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e400", "-1.0e+400"])
def test_infinity_and_nan_are_refused_where_they_are(value: str) -> None:
    """YAML's .inf and .nan, and a number beyond a double that it reads as infinity: nothing
    compares with them (yaml.not_finite, whichever way they are written)."""
    shown = _refusal(f"a: 1\nkey: {value}\n")
    assert shown.startswith(f"f.yaml:2:6: error[yaml.not_finite] '{value}'"), shown


@pytest.mark.parametrize("value", ['"0110"', "'1:30'", "!!str 0x5A", "0.1.3", "S5", "2160-0"])
def test_text_that_looks_like_a_number_stays_text(value: str) -> None:
    assert _read(value) == value.strip("'\"").removeprefix("!!str ")


def test_a_scenario_weight_in_octal_is_refused_by_test(tmp_path: Path) -> None:
    kb = copy_kb(tmp_path / "rules")
    bases = kb / "tests" / "_bases.yaml"
    bases.write_text(bases.read_text(encoding="utf-8").replace("weight_kg: 70\n", "weight_kg: 070\n"), encoding="utf-8")
    proc = run_cli("test", "--rules", "rules", "-q", cwd=tmp_path)
    shown = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "error[yaml.number] '070' is read as 56" in shown, shown
    assert "rules/tests/_bases.yaml:7:16" in shown, shown


@pytest.mark.parametrize("digits", [309, 4301, 5000])
def test_an_integer_too_large_for_a_double_is_refused_where_it_is(digits: int) -> None:
    """Hostile sweep: 5,000 digits were a ValueError out of int() (exit 3); 4,300 as a parameter an
    OverflowError in the prose templates. The message does not echo the digits."""
    shown = _refusal("a: 1\nkey: -" + "9" * digits + "\n")
    assert shown.startswith(f"f.yaml:2:6: error[yaml.number] an integer of {digits:,} digits"), shown
    assert "9" * 20 not in shown, shown


def test_the_largest_integers_a_double_holds_are_read() -> None:
    assert _read("9" * 308) == int("9" * 308)


def _with_huge_integer(kb: Path) -> Path:
    """5,000 digits under a key nothing reads: the YAML is read before anything checks keys."""
    manifest = kb / "kb.yaml"
    manifest.write_text(manifest.read_text(encoding="utf-8") + "x_extra: " + "1" * 5000 + "\n", encoding="utf-8")
    return kb


@pytest.mark.parametrize("command", ["validate", "test", "compile", "impact"])
def test_a_huge_integer_is_a_located_error_for_every_command(tmp_path: Path, command: str) -> None:
    kb = _with_huge_integer(copy_kb(tmp_path / "rules"))
    args = {
        "validate": ["validate", "--rules", "rules"],
        "test": ["test", "--rules", "rules", "-q"],
        "compile": ["compile", "--rules", "rules"],
        "impact": ["impact", str(copy_kb(tmp_path / "old")), str(kb), str(EXAMPLES / "cohort.jsonl")],
    }[command]
    proc = run_cli(*args, cwd=tmp_path)
    shown = proc.stdout + proc.stderr
    assert proc.returncode in (1, 2) and "error[internal]" not in shown, shown
    assert "kb.yaml:" in shown and "error[yaml.number] an integer of 5,000 digits" in shown, shown


def test_the_library_raises_located_errors_for_a_huge_integer(tmp_path: Path) -> None:
    kb = _with_huge_integer(copy_kb(tmp_path / "rules"))
    with pytest.raises(KBErrors) as info:
        fsgs_kb.load(kb)
    assert [error.code for error in info.value.errors] == ["yaml.number"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!python/object/apply:os.system ['echo PWNED']", "unsupported tag !!python/object/apply:os.system"),
        ("!!python/name:os.system ''", "unsupported tag !!python/name:os.system"),
        ("!!python/str 'Current'", "unsupported tag !!python/str"),
        ("!!set {a, b}", "unsupported tag !!set"),
        ("!!omap [a: 1]", "unsupported tag !!omap"),
        ("!foo {a: 1}", "unsupported tag !foo"),
        ("!foo bar", "unsupported tag !foo"),
        ("!!null x", "the tag !!null would change how this value is read"),
        ("!!float 5", "the tag !!float would change how this value is read"),
        ('!!int "5"', "the tag !!int would change how this value is read"),
        ("!!map [1]", "the tag !!map would change how this list is read"),
    ],
)
def test_a_tag_is_refused_on_lists_mappings_and_quoted_values(value: str, message: str) -> None:
    """Hostile sweep: a tag on a quoted value or a collection was dropped without a word."""
    shown = _refusal(f"a: 1\nkey: {value}\n")
    assert shown.startswith(f"f.yaml:2:6: error[yaml.tag] {message} (hint: remove the tag"), shown


@pytest.mark.parametrize(
    ("value", "read"),
    [("!!str 0110", "0110"), ("!!str yes", "yes"), ("!!int 5", 5), ("!!float 5.5", 5.5), ("!!bool true", True)]
    + [("!!null", None), ("!!map {a: 1}", {"a": 1}), ("!!seq [1]", [1]), ('!!str "x"', "x")],
)
def test_a_standard_tag_that_changes_nothing_is_read(value: str, read: Any) -> None:
    assert _read(value) == read


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("a: 1\nkind: warn\0ing\n", "2:11", "a NUL character (U+0000)"),
        ("a: 1\r\nb: 2\r\n# note \0\r\n", "3:8", "a NUL character (U+0000)"),
        ("a: 1\nb: \x07x\n", "2:4", "the character U+0007"),
        ('a: "x\ufffey"\n', "1:6", "the character U+FFFE"),
    ],
)
def test_a_character_yaml_refuses_is_placed_where_it_is(text: str, where: str, what: str) -> None:
    """Hostile sweep: a NUL byte in a rule was reported at 1:1 in PyYAML's words ('unacceptable
    character #x0000 ... in "<unicode string>", position 190')."""
    shown = _refusal(text)
    assert shown.startswith(f"f.yaml:{where}: error[yaml.character] {what} is not allowed in YAML"), shown
    assert "(hint: delete it" in shown and "position" not in shown, shown
