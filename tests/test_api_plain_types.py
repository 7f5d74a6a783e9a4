"""The Python API takes a record as plain JSON types (engine/read/plain.py): `evaluate`,
`evaluate_json` and `reference_evaluate` never raise for a record whatever its values' classes
do, and judge what the record holds, not what its subclasses' operators say. A subclass of
str, int, float, dict or list is read as its base type (the same result, input hash and decision
id as the plain record); one that cannot be read so (two keys that read as the same text, an
object JSON has no type for) is `invalid`, naming the JSON pointer. Hostile sweep: a float whose
`>` raises, a dict whose `len` raises, a str key whose `==` is always true escaped as exceptions,
and a str whose `==` is always true was judged `never` while the input hash recorded `current`."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from fsgs_kb.engine.kb import KnowledgeBase

BASE = {
    **json.loads((Path(__file__).resolve().parents[1] / "examples" / "dose-above-ceiling.json").read_text()),
    "gc_toxicity_risk_factors": ["uncontrolled_diabetes"],  # a list, for the list subclass
    "weight_kg": 70.5,  # a float, for the float subclass
}


class RaisingGt(float):
    def __gt__(self, other: object) -> bool:
        raise RuntimeError("gt boom")

    def __float__(self) -> float:
        raise RuntimeError("float boom")


class RaisingLen(dict):  # type: ignore[type-arg]
    def __len__(self) -> int:
        raise RuntimeError("len boom")

    def items(self) -> Any:
        raise RuntimeError("items boom")

    def get(self, *_: Any) -> Any:
        raise RuntimeError("get boom")


class AlwaysEqual(str):
    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __str__(self) -> str:
        raise RuntimeError("str boom")


class RaisingKey(str):
    """A key whose comparisons raise (sorting the keys for the input hash compares them)."""

    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq boom")

    def __lt__(self, other: object) -> bool:
        raise RuntimeError("lt boom")


class RaisingIndex(int):
    def __index__(self) -> int:
        raise RuntimeError("index boom")


class RaisingList(list):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        raise RuntimeError("iter boom")

    def __len__(self) -> int:
        raise RuntimeError("len boom")


class Disguised:
    """An object that claims to be a dict through __class__ and raises on everything else."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("class boom")

    def __repr__(self) -> str:
        raise RuntimeError("repr boom")


def edited(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    record = copy.deepcopy(BASE)
    node = record
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return record


SAME_AS_PLAIN: dict[str, Callable[[], Any]] = {
    "float subclass whose > raises": lambda: edited(("weight_kg",), RaisingGt(BASE["weight_kg"])),
    "int subclass whose __index__ raises": lambda: edited(("age_years",), RaisingIndex(BASE["age_years"])),
    "dict subclass whose len raises": lambda: RaisingLen(copy.deepcopy(BASE)),
    "inner dict subclass": lambda: edited(("cyclosporine",), RaisingLen(BASE["cyclosporine"])),
    "str value whose == is always true": lambda: edited(("cyclosporine", "status"), AlwaysEqual("current")),
    "str keys whose == and < raise": lambda: {RaisingKey(k): v for k, v in copy.deepcopy(BASE).items()},
    "list subclass whose iteration raises": lambda: edited(
        ("gc_toxicity_risk_factors",), RaisingList(BASE["gc_toxicity_risk_factors"])
    ),
}


def entries(kb: KnowledgeBase) -> dict[str, Callable[[Any], dict[str, Any]]]:
    return {
        "evaluate": kb.evaluate,
        "evaluate_json": lambda record: orjson.loads(kb.evaluate_json(record)),
        "reference_evaluate": kb.reference_evaluate,
        "evaluate include_input": lambda record: kb.evaluate(record, include_input=True),
    }


@pytest.mark.parametrize("name", list(SAME_AS_PLAIN))
def test_a_subclass_is_read_as_its_base_type(kb: KnowledgeBase, name: str) -> None:
    for entry, evaluate in entries(kb).items():
        plain = evaluate(copy.deepcopy(BASE))
        result = evaluate(SAME_AS_PLAIN[name]())
        assert result["status"] == "evaluated", (entry, result["errors"])
        assert result == plain, entry  # the same advice, input hash, decision id (and stored input)
        if "input" in result["decision"]:
            assert type(result["decision"]["input"]) is dict
            assert orjson.dumps(result["decision"]["input"]) == orjson.dumps(BASE)


REFUSED: dict[str, tuple[Callable[[], Any], str, str, str]] = {
    "two keys that read as the same text": (
        lambda: {AlwaysEqual("id"): "x", **copy.deepcopy(BASE)},
        "input.duplicate_key",
        "/id",
        'key "id" appears twice in one object',
    ),
    "an object in disguise": (
        lambda: edited(("weight_kg",), Disguised()),
        "input.not_json",
        "/weight_kg",
        "/weight_kg: a Disguised is not JSON data",
    ),
    "an object in disguise as a key": (
        lambda: {**copy.deepcopy(BASE), Disguised(): 1},
        "input.not_json",
        "",
        "/: key <test_api_plain_types.Disguised> is not a string",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_record_that_cannot_be_read_as_json_is_invalid_and_located(kb: KnowledgeBase, name: str) -> None:
    make, code, pointer, message = REFUSED[name]
    for entry, evaluate in entries(kb).items():
        result = evaluate(make())
        assert result["status"] == "invalid", entry
        error = result["errors"][0]
        assert (error["code"], error.get("pointer", ""), error["message"]) == (code, pointer, message), entry
        assert "input" not in result["decision"]
        assert result == evaluate(make()), entry  # the same hash and decision id every time


def test_a_list_that_holds_itself_twice_is_copied_once_per_depth(kb: KnowledgeBase) -> None:
    """Unrolled, it would be 2**32 lists: the copy is linear, and the result is the shape check's
    (too deep, at the pointer of the first path down), with the input hash of the value itself."""
    from fsgs_kb.engine.read.canonical import value_sha256

    twice: list[Any] = RaisingList()
    list.extend(twice, [twice, twice])
    record = {**copy.deepcopy(BASE), "gc_toxicity_risk_factors": twice}
    result = kb.evaluate(record)
    assert result["status"] == "invalid" and result["errors"][0]["code"] == "input.too_deep"
    assert result["errors"][0]["pointer"].startswith("/gc_toxicity_risk_factors/")
    assert result["decision"]["input_sha256"] == value_sha256(record)


def test_plain_records_are_returned_as_they_are() -> None:
    """The common case is not copied: orjson's exact-type check passes it through."""
    from fsgs_kb.engine.read.plain import plain_record

    record = copy.deepcopy(BASE)
    assert plain_record(record)[0] is record
    nan = edited(("weight_kg",), float("nan"))  # orjson writes NaN as null: still the record, for the shape check
    assert plain_record(nan)[0] is nan
