"""Issue 9: the public API has one error type, `fsgs_kb.KBError`. What the API raises (`KBErrors`,
every problem found) is a KBError too, located as its first problem, so code written against the
one type catches it and reads where; it survives pickling (a Dask task's error travels so) and
the exception machinery (a context manager sets `__traceback__` on a frozen dataclass)."""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

import fsgs_kb


def test_loading_a_broken_knowledge_base_raises_the_one_error_type(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "kb.yaml").write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(fsgs_kb.KBError) as caught:
        fsgs_kb.load(rules)
    error = caught.value
    assert isinstance(error, fsgs_kb.KBErrors) and error.errors
    first = error.errors[0]
    assert (error.code, error.file, error.line, error.col, error.pointer) == (
        first.code,
        first.file,
        first.line,
        first.col,
        first.pointer,
    )
    assert any(e.code == "yaml.syntax" and str(e.file).endswith("kb.yaml") and e.line for e in error.errors)
    assert str(error).startswith(f"{len(error.errors)} problem(s); first: ")


def test_the_error_type_pickles_and_stays_frozen() -> None:
    one = fsgs_kb.KBError("patient.range", "/age_years: out of range", pointer="/age_years", hint="check it")
    many = fsgs_kb.KBErrors([one, fsgs_kb.KBError("kb.x", "another", file="a.yaml", line=2)])
    assert pickle.loads(pickle.dumps(one)) == one
    again = pickle.loads(pickle.dumps(many))
    assert type(again) is fsgs_kb.KBErrors and again.errors == many.errors and str(again) == str(many)
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.code = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        many.line = 3  # type: ignore[misc]


@contextlib.contextmanager
def _around() -> Iterator[None]:
    yield


@pytest.mark.parametrize("error", [fsgs_kb.KBError("a.b", "one"), fsgs_kb.KBErrors([fsgs_kb.KBError("a.b", "one")])])
def test_the_error_type_can_be_raised_through_a_context_manager(error: fsgs_kb.KBError) -> None:
    with pytest.raises(fsgs_kb.KBError) as caught, _around():
        raise error
    assert caught.value is error and caught.value.__traceback__ is not None


def test_a_problem_of_no_file_or_record_is_said_by_the_program() -> None:
    """One text form (`where: severity[code] message`); where nothing locates a problem (an extra
    not installed, an interrupted command), the program names itself, as command-line tools do,
    rather than `<input>`, which named an input that was not the problem."""
    from fsgs_kb.engine.report.validation import format_error

    line = format_error(fsgs_kb.KBError("service.extra_missing", "the cds extra is not installed", hint="pip it"))
    assert line == "fsgs-kb: error[service.extra_missing] the cds extra is not installed (hint: pip it)"
    assert format_error(fsgs_kb.KBError("patient.type", "bad", pointer="/age")).startswith("/age: error[")
