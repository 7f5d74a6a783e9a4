"""The validated knowledge base as plain, immutable Python objects.

Loading (engine.loader) turns YAML into these; everything downstream (checks, compilation,
evaluation, explanation, handbook) reads only these, never the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

# ---- conditions -------------------------------------------------------------------------------

COMPARISON_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "includes_any", "present", "absent")
NUMERIC_OPS = ("lt", "le", "gt", "ge")
OP_SYMBOL = {
    "eq": "=",
    "ne": "≠",
    "lt": "<",
    "le": "≤",
    "gt": ">",
    "ge": "≥",
    "in": "in",
    "includes_any": "includes any of",
    "present": "is recorded",
    "absent": "is not recorded",
}


@dataclass(frozen=True)
class ParamRef:
    """A named threshold from parameters.yaml."""

    name: str


@dataclass(frozen=True)
class Compare:
    """`<field|derived> <op> <operand>`; `source` is 'field' or 'derived'."""

    source: str
    name: str
    op: str
    operand: Any
    pointer: str


@dataclass(frozen=True)
class AllOf:
    items: tuple[Condition, ...]
    pointer: str


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]
    pointer: str


@dataclass(frozen=True)
class Not:
    item: Condition
    pointer: str


Condition = Union[Compare, AllOf, AnyOf, Not]  # noqa: UP007 - a runtime alias of forward references

# ---- expressions (derived values) ------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A reference inside an expression: source is 'field', 'derived' or 'param'."""

    source: str
    name: str
    pointer: str


@dataclass(frozen=True)
class Const:
    value: Any


@dataclass(frozen=True)
class Op:
    """An arithmetic operation: divide, multiply, subtract or percent_change (args: from, to)."""

    name: str
    args: tuple[Expression, ...]
    pointer: str


Expression = Union[Ref, Const, Op]  # noqa: UP007 - a runtime alias of forward references

# ---- knowledge-base parts -------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    source: str
    sentence: str
    quote: str
    file: str
    pointer: str


@dataclass(frozen=True, kw_only=True)  # wide: built by keyword, so no field can be swapped
class Parameter:
    name: str
    title: str
    value: Any
    unit: str
    boundary: str | None
    provenance_kind: str  # source | cited | local
    provenance: dict[str, Any]
    note: str | None
    file: str
    pointer: str
    shapes: tuple[tuple[str, str], ...] = ()  # (field|derived, name): what a local choice shapes


@dataclass(frozen=True, kw_only=True)  # wide: built by keyword, so no field can be swapped
class Derived:
    """A boolean `condition`, a `value` expression, or `cases` of (when, value)."""

    name: str
    title: str
    unit: str
    condition: Condition | None
    value: Expression | None
    cases: tuple[tuple[Condition, Expression], ...]
    file: str
    pointer: str

    @property
    def is_boolean(self) -> bool:
        return self.condition is not None


@dataclass(frozen=True, kw_only=True)  # wide: built by keyword, so no field can be swapped
class Rule:
    id: str
    version: str
    status: str
    title: str
    kind: str
    when: Condition
    says: str
    citations: tuple[Quote, ...]
    evidence: Quote
    interpretation: tuple[str, ...]
    history: tuple[dict[str, Any], ...]
    approved_by: str | None
    approved_on: str | None
    file: str
    qualifies: tuple[str, ...] = ()  # caveats: the advice they qualify
    complements: str | None = None  # the rule on the other side of this rule's threshold (a pair)
    provenance_kind: str | None = None  # caveats: source | cited | local
    provenance: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    shows: tuple[tuple[str, str], ...] = ()  # (field|derived, name) shown with the rule when it fires


@dataclass(frozen=True, kw_only=True)  # wide: built by keyword, so no field can be swapped
class ScopeCase:
    """One explanation of the scope (kb.yaml `scope`): under the outcome of in_scope (met,
    not_met, undetermined), the first case whose `when` holds gives the result's reason."""

    outcome: str
    when: Condition | None  # None: always holds
    reason: str  # may name {missing}: the inputs that would decide the scope
    undetermined_needs: tuple[str, ...]  # not met, but reported undetermined until these fields are recorded
    file: str
    pointer: str


@dataclass(frozen=True)
class Source:
    id: str
    record: dict[str, Any]
    sentences: dict[str, str]
    not_encoded: dict[str, str]
    file: str


@dataclass
class KnowledgeBaseModel:
    """Everything in a rules directory, after loading and checking."""

    root: str
    manifest: dict[str, Any]
    sources: dict[str, Source] = field(default_factory=dict)
    parameters: dict[str, Parameter] = field(default_factory=dict)
    derived: dict[str, Derived] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)
    derived_order: tuple[str, ...] = ()
    scope: tuple[ScopeCase, ...] = ()  # kb.yaml `scope`, in file order

    @property
    def scope_covers(self) -> str | None:
        """Who the source covers (kb.yaml `scope.covers`), as in "the review covers … only";
        None for a knowledge base that does not say (one older than the `scope` block)."""
        covers = self.manifest.get("scope", {}).get("covers")
        return " ".join(covers.split()) if isinstance(covers, str) else None

    @property
    def source(self) -> Source:
        """The knowledge base's primary source (the manifest's `source`)."""
        return self.sources[self.manifest["source"]]


def rule_order(rule: Rule) -> tuple[str, str]:
    """The stable order of results and advice: kind, then id (both alphabetical)."""
    return (rule.kind, rule.id)
