"""Compile the knowledge base to durable-rules rulesets (their JSON ruleset form).

Three-valued logic in a two-valued engine: durable-rules treats a missing field as "no match"
(and `$neq` on a missing field does not match either), so each condition C compiles to two
patterns, `ID|T` (C is definitely true) and `ID|F` (C is definitely false):
    T(all) = and T(items)   F(all) = or F(items)     T(not x) = F(x)
    T(any) = or T(items)    F(any) = and F(items)    F(not x) = T(x)
    T(x > t) = x > t        F(x > t) = x <= t        (both need x present)
A rule whose T pattern fires is `fired`, F `not_fired`, neither `undetermined`. So the engine,
not Python, decides all three outcomes.

Facts are flat: durable-rules 2.0.28 crashed on nested objects and lists (durable-rules-notes).
A field path becomes `a__b`, a list field `L` becomes `L__n` (its length) and `L__has__ITEM`,
booleans become 1/0, numeric derived values are computed exactly in Python and asserted as
`d__NAME`, and boolean derived values are decided by the engine itself, one level at a time:
the conclusions of level k (`b__NAME` = "T" | "F" | "U") are asserted as facts into level k+1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fsgs_kb.engine.load.conditions import walk
from fsgs_kb.engine.load.fields import catalogue
from fsgs_kb.engine.model import AllOf, Compare, Condition, KnowledgeBaseModel, Not, ParamRef

ALPHA_BUDGET = 60  # alpha-stack entries one fact may need; the core stops at 64 (error 303)
MAX_GROUPS = 15  # $and/$or groups in one pattern: each takes 2 of the core's 31 expression slots (error 113)
TRUE: dict[str, Any] = {"k": 1}  # every fact carries k = 1
FALSE: dict[str, Any] = {"k": 0}
NEGATE = {"eq": "ne", "ne": "eq", "lt": "ge", "le": "gt", "gt": "le", "ge": "lt"}
DURABLE_OP = {"ne": "$neq", "lt": "$lt", "le": "$lte", "gt": "$gt", "ge": "$gte"}


def field_key(path: str) -> str:
    return path.replace(".", "__")


def derived_key(name: str) -> str:
    return f"d__{name}"


def boolean_key(name: str) -> str:
    return f"b__{name}"


def scalar(value: Any) -> Any:
    """Booleans as 1/0: durable-rules compares numbers and strings most reliably."""
    return int(value) if isinstance(value, bool) else value


def _flat(word: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An $and inside an $and (an $or inside an $or) is one list: every group costs the core
    two of its 31 expression slots (error 113), so none is spent on nesting that means nothing."""
    return [inner for item in items for inner in (item[word] if list(item) == [word] else [item])]


def _and(items: list[dict[str, Any]]) -> dict[str, Any]:
    items = [i for i in _flat("$and", items) if i != TRUE]
    if FALSE in items:
        return FALSE
    return items[0] if len(items) == 1 else ({"$and": items} if items else TRUE)


def _or(items: list[dict[str, Any]]) -> dict[str, Any]:
    items = [i for i in _flat("$or", items) if i != FALSE]
    if TRUE in items:
        return TRUE
    return items[0] if len(items) == 1 else ({"$or": items} if items else FALSE)


@dataclass(frozen=True)
class CompiledKB:
    """The rulesets, level by level, and what each level decides."""

    levels: tuple[tuple[dict[str, Any], ...], ...]  # per level, rulesets small enough for the core
    level_derived: tuple[tuple[str, ...], ...]
    level_rules: tuple[tuple[str, ...], ...]
    boolean_derived: tuple[str, ...]
    fact_fields: tuple[str, ...]
    fact_derived: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """The inspectable form printed by `fsgs-kb compile`."""
        return {
            "fact_keys": {
                "fields": {p: field_key(p) for p in self.fact_fields},
                "derived": {n: derived_key(n) for n in self.fact_derived},
                "conclusions": {n: boolean_key(n) for n in self.boolean_derived},
            },
            "levels": [
                {"decides": {"derived": list(d), "rules": list(r)}, "rulesets": list(chunks)}
                for d, r, chunks in zip(self.level_derived, self.level_rules, self.levels, strict=True)
            ],
        }


class Compiler:
    def __init__(self, model: KnowledgeBaseModel) -> None:
        self.model = model
        self.fields = catalogue()

    def _threshold(self, operand: Any) -> Any:
        value = self.model.parameters[operand.name].value if isinstance(operand, ParamRef) else operand
        return [scalar(v) for v in value] if isinstance(value, (list, tuple)) else scalar(value)

    def _key(self, leaf: Compare) -> str:
        return field_key(leaf.name) if leaf.source == "field" else derived_key(leaf.name)

    def patterns(self, cond: Condition) -> tuple[dict[str, Any], dict[str, Any]]:
        """(definitely true, definitely false) patterns of a condition."""
        if isinstance(cond, Compare):
            return self._leaf(cond)
        if isinstance(cond, Not):
            t, f = self.patterns(cond.item)
            return f, t
        parts = [self.patterns(item) for item in cond.items]
        ts, fs = [p[0] for p in parts], [p[1] for p in parts]
        return (_and(ts), _or(fs)) if isinstance(cond, AllOf) else (_or(ts), _and(fs))

    def _leaf(self, leaf: Compare) -> tuple[dict[str, Any], dict[str, Any]]:
        if leaf.source == "derived" and self.model.derived[leaf.name].is_boolean:
            key = boolean_key(leaf.name)
            want = leaf.operand if leaf.op == "eq" else not leaf.operand
            yes, no = ({key: "T"}, {key: "F"})
            return (yes, no) if want else (no, yes)
        info = self.fields.get(leaf.name) if leaf.source == "field" else None
        is_list = info is not None and info.type == "array"
        key = self._key(leaf)
        present_key = key + "__n" if is_list else key
        present = {"$ex": {present_key: 1}}
        absent = {"$nex": {present_key: 1}}
        if leaf.op == "present":
            return present, absent
        if leaf.op == "absent":
            return absent, present
        threshold = self._threshold(leaf.operand)
        if leaf.op == "includes_any":
            has = [{f"{key}__has__{item}": 1} for item in threshold]
            return _or(has), _and([present] + [{"$nex": {f"{key}__has__{item}": 1}} for item in threshold])
        if leaf.op == "in":
            return (_or([{key: v} for v in threshold]), _and([present] + [{"$neq": {key: v}} for v in threshold]))
        return self._comparison(leaf.op, key, threshold), self._comparison(NEGATE[leaf.op], key, threshold)

    @staticmethod
    def _comparison(op: str, key: str, value: Any) -> dict[str, Any]:
        return {key: value} if op == "eq" else {DURABLE_OP[op]: {key: value}}

    # ---- levels -------------------------------------------------------------------------------
    def _boolean_deps(self, cond: Condition) -> set[str]:
        return {
            leaf.name for leaf in walk(cond) if leaf.source == "derived" and self.model.derived[leaf.name].is_boolean
        }

    def compile(self) -> CompiledKB:
        booleans = [n for n in self.model.derived_order if self.model.derived[n].is_boolean]
        level: dict[str, int] = {}
        for name in booleans:
            deps = self._boolean_deps(self.model.derived[name].condition)  # type: ignore[arg-type]
            level[name] = 1 + max((level[d] for d in deps), default=-1)
        rule_level = {
            rid: 1 + max((level[d] for d in self._boolean_deps(r.when)), default=-1)
            for rid, r in sorted(self.model.rules.items())
        }
        depth = 1 + max([*level.values(), *rule_level.values()], default=0)
        levels, level_derived, level_rules = [], [], []
        for k in range(depth):
            ruleset: dict[str, Any] = {}
            names = tuple(n for n in booleans if level[n] == k)
            rids = tuple(r for r in sorted(rule_level) if rule_level[r] == k)
            for name in names:
                self._add(ruleset, f"derived:{name}", self.model.derived[name].condition)  # type: ignore[arg-type]
            for rid in rids:
                self._add(ruleset, rid, self.model.rules[rid].when)
            levels.append(split_for_alpha_budget(ruleset))
            level_derived.append(names)
            level_rules.append(rids)
        return CompiledKB(
            tuple(levels),
            tuple(level_derived),
            tuple(level_rules),
            tuple(booleans),
            self._fact_fields(),
            tuple(n for n in self.model.derived_order if not self.model.derived[n].is_boolean),
        )

    def _add(self, ruleset: dict[str, Any], name: str, cond: Condition) -> None:
        t, f = self.patterns(cond)
        ruleset[f"{name}|T"] = {"all": [{"m": _guarded(t)}]}
        ruleset[f"{name}|F"] = {"all": [{"m": _guarded(f)}]}

    def _fact_fields(self) -> tuple[str, ...]:
        conds = [r.when for r in self.model.rules.values()]
        conds += [d.condition for d in self.model.derived.values() if d.condition is not None]
        conds += [when for d in self.model.derived.values() for when, _ in d.cases]
        return tuple(sorted({leaf.name for c in conds for leaf in walk(c) if leaf.source == "field"}))


def _guarded(pattern: dict[str, Any]) -> dict[str, Any]:
    """Match only our patient facts. Under Host, durable-rules also matches patterns against the
    session's state document, and a pattern of absences ($nex) matches it, so an action that
    updates the state would fire the rule again, forever."""
    if pattern in (TRUE, FALSE):
        return pattern
    return {"$and": [TRUE, *pattern["$and"]]} if "$and" in pattern else {"$and": [TRUE, pattern]}


class AlphaNetwork:
    """The alpha network durable-rules 2.0.28 builds for a ruleset's patterns (rete.c,
    createAlpha), modelled to bound its alpha stack (events.c, handleAlpha: 64 entries, error 303).

    Every pattern hangs under one shared root; a test is shared when its parent already has an
    identical one (findAlpha); an $and is a chain; each branch of an $or starts at the $or's
    parent and links to a fresh forward node, under which the rest of the pattern continues.
    For one fact the core walks this network depth first with an explicit stack: a node popped
    pushes its matching children. Counting every child as matching, the stack never holds more
    than 1 + the largest sum of (children - 1) along a path from the root (`stack_bound`).
    """

    def __init__(self) -> None:
        self.children: list[list[int]] = [[]]  # node 0 is the root
        self.tests: dict[tuple[int, tuple[str, str, Any]], int] = {}

    def _node(self) -> int:
        self.children.append([])
        return len(self.children) - 1

    def add(self, pattern: dict[str, Any], parent: int = 0) -> int:
        """Add a pattern under `parent`; return the node its matches continue from."""
        (word, value), *_ = pattern.items()
        if word == "$and":
            for item in value:
                parent = self.add(item, parent)
            return parent
        if word == "$or":
            ends = [self.add(item, parent) for item in value]
            forward = self._node()  # numbered after its parents (the core makes it first: same links)
            for end in ends:
                self.children[end].append(forward)
            return forward
        test = _test(word, value)
        node = self.tests.get((parent, test))
        if node is None:
            node = self.tests[(parent, test)] = self._node()
            self.children[parent].append(node)
        return node

    def stack_bound(self) -> int:
        best = [0] * len(self.children)
        for node in reversed(range(len(self.children))):  # every child is numbered after its parents
            below = max((best[child] for child in self.children[node]), default=0)
            best[node] = len(self.children[node]) - 1 + max(below, 0)
        return 1 + best[0]


def _test(word: str, value: Any) -> tuple[str, str, Any]:
    """What makes two alpha tests one node for the core: operator, property and value (numbers
    compared as numbers: 5 and 5.0 are one test)."""
    op, (prop, operand) = (word, next(iter(value.items()))) if word.startswith("$") else ("$eq", (word, value))
    if isinstance(operand, (int, float)) and not isinstance(operand, bool):
        operand = float(operand)
    return op, prop, operand if isinstance(operand, (str, float, int, type(None))) else repr(operand)


def stack_bound(rules: Any) -> int:
    """The most alpha-stack entries one fact can need in a ruleset made of `rules` (see AlphaNetwork)."""
    network = AlphaNetwork()
    for body in rules:
        network.add(body["all"][0]["m"])
    return network.stack_bound()


def groups(pattern: Any) -> int:
    """$and and $or groups in a pattern (the core allows MAX_GROUPS)."""
    if isinstance(pattern, dict):
        return sum((key in ("$and", "$or")) + groups(value) for key, value in pattern.items())
    if isinstance(pattern, list):
        return sum(groups(item) for item in pattern)
    return 0


def split_for_alpha_budget(ruleset: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """Split a ruleset so that no fact can need more of the core's alpha stack than ALPHA_BUDGET.

    A rule's T and F patterns share a ruleset when together they fit, else they go apart (the
    evaluation collects what fired across all rulesets of a level). A pattern over the budget on
    its own gets a ruleset of its own: engine.compile.proof reports it as an error.
    """
    chunks: list[dict[str, Any]] = [{}]
    network = AlphaNetwork()

    def place(names: list[str]) -> None:
        nonlocal network
        for name in names:
            network.add(ruleset[name]["all"][0]["m"])
        if network.stack_bound() > ALPHA_BUDGET and chunks[-1]:
            chunks.append({})  # the grown network is dropped with the chunk it no longer fits
            network = AlphaNetwork()
            for name in names:
                network.add(ruleset[name]["all"][0]["m"])
        for name in names:
            chunks[-1][name] = ruleset[name]

    names = list(ruleset)
    for pair in (names[i : i + 2] for i in range(0, len(names), 2)):
        if stack_bound(ruleset[name] for name in pair) <= ALPHA_BUDGET:
            place(pair)
        else:
            for name in pair:
                place([name])
    return tuple(chunks)


def compile_kb(model: KnowledgeBaseModel) -> CompiledKB:
    return Compiler(model).compile()
