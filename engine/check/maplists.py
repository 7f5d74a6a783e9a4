"""`validate`: a list field written from orders alone must settle every condition that reads it.

The FHIR map writes a list field (other_immunosuppressants) from orders alone only when the orders
name an item of the source's `settled_by` (engine/fhir/orderlist.py): such a list is a lower bound
of the real one, and the record cannot say so. That is honest only while every condition reading
the field is decided by any list holding one of those items: `includes_any` on the item key whose
values contain all of `settled_by` (true for every completion), or `present` / `absent`. Any other
reading (a rule asking for a drug outside `settled_by`, for "none", for a status, or an expression
computing on the field) could be decided on items that were simply not ordered, so it is an error
here, naming the condition and the map source.
"""

from __future__ import annotations

from typing import Any

from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.load.conditions import expression_refs, walk
from fsgs_kb.engine.load.yamlsafe import Located, located_error
from fsgs_kb.engine.model import Compare, Condition, KnowledgeBaseModel, ParamRef


def _conditions(model: KnowledgeBaseModel) -> list[tuple[str, str, Condition]]:
    """(file, what, condition) for every condition of the knowledge base."""
    out: list[tuple[str, str, Condition]] = [(r.file, f"rule {r.id}", r.when) for r in model.rules.values()]
    for d in model.derived.values():
        if d.condition is not None:
            out.append((d.file, f"derived value {d.name}", d.condition))
        out += [(d.file, f"derived value {d.name}", when) for when, _ in d.cases]
    out += [(s.file, "the scope", s.when) for s in model.scope if s.when is not None]
    return out


def _values(model: KnowledgeBaseModel, operand: Any) -> set[Any]:
    value = model.parameters[operand.name].value if isinstance(operand, ParamRef) else operand
    return set(value) if isinstance(value, (list, tuple)) else {value}


def _reading(path: str, name: str) -> bool:
    return name == path or name.startswith(path + ".")


def _leaf_problem(model: KnowledgeBaseModel, leaf: Compare, path: str, key: str, settled: set[str]) -> str | None:
    if leaf.op in ("present", "absent"):
        return None
    if leaf.op != "includes_any" or leaf.name != f"{path}.{key}":
        return f"reads {leaf.name} with {leaf.op}"
    if isinstance(leaf.operand, ParamRef) and leaf.operand.name not in model.parameters:
        return None  # reported by the reference checks
    missing = settled - _values(model, leaf.operand)
    return f"asks includes_any without {sorted(missing)}" if missing else None


def list_settling_problems(model: KnowledgeBaseModel, docs: dict[str, Located], fmap: FhirMap) -> list[KBError]:
    """Conditions reading a list field the map may write from orders alone, that such a list would
    not settle (see the module docstring)."""
    out: list[KBError] = []
    for path, spec in fmap.fields.items():
        srcs = [s for s in spec["sources"] if s["kind"] == "medication_list" and s.get("settled_by")]
        if not srcs:
            continue
        settled = {v for s in srcs for v in s["settled_by"]}
        key = spec["item"]["key"]
        where = f"the FHIR map writes {path} from orders alone when they name one of {sorted(settled)}"
        for file, what, cond in _conditions(model):
            for leaf in walk(cond):
                if leaf.source != "field" or not _reading(path, leaf.name):
                    continue
                why = _leaf_problem(model, leaf, path, key, settled)
                if why is not None:
                    message = f"{where}, but {what} {why}, which such a list would not decide"
                    out.append(_error(docs, message, file, leaf.pointer))
        for d in model.derived.values():
            exprs = [d.value] if d.value is not None else []
            exprs += [v for _, v in d.cases]
            for ref in (r for e in exprs for r in expression_refs(e)):
                if ref.source == "field" and _reading(path, ref.name):
                    message = f"{where}, but derived value {d.name} computes on it, which such a list would not decide"
                    out.append(_error(docs, message, d.file, ref.pointer))
    return out


def _error(docs: dict[str, Located], message: str, file: str, pointer: str) -> KBError:
    hint = "narrow settled_by of the medication_list source in the FHIR map, or drop it"
    return located_error(docs, file, "fhirmap.settled_by", message, pointer, hint)
