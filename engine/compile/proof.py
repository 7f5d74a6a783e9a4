"""Prove that a validated knowledge base can run: its rulesets fit durable-rules, and the core takes them.

A knowledge base that validates but cannot run would turn every evaluation into `error`. Two
things stand between the two, both checked here and reported at the rule's `when` (or the derived
value's `condition`), so `validate` fails instead:
- the core's fixed limits, known from its source (durable-rules 2.0.28): at most MAX_GROUPS
  all/any groups in one pattern (error 113), and at most 64 alpha nodes activated by one fact
  (error 303, bounded by `stack_bound` on a model of the core's alpha network) → `compile.engine_limit`;
- anything else the core refuses, crashes or hangs on: every ruleset is created and probe facts
  are asserted through the real core in a child process (`durable.probe`) →
  `compile.engine_rejected`.
"""

from __future__ import annotations

from fsgs_kb.engine.check.report import ValidationReport
from fsgs_kb.engine.compile.durable import DurableRulesets, ProbeFailure, probe
from fsgs_kb.engine.compile.rulesets import ALPHA_BUDGET, MAX_GROUPS, CompiledKB, compile_kb, groups, stack_bound
from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.load.yamlsafe import Located, located_error
from fsgs_kb.engine.model import KnowledgeBaseModel

ENGINE_STACK = 64  # the core's alpha stack (MAX_STACK_SIZE in events.c)


def _owner(name: str) -> str:
    """The rule id or `derived:NAME` a compiled pattern `OWNER|T` / `OWNER|F` belongs to."""
    return name.rsplit("|", 1)[0]


def _locate(
    owner: str, model: KnowledgeBaseModel, docs: dict[str, Located], code: str, message: str, hint: str
) -> KBError:
    if owner.startswith("derived:"):
        derived = model.derived[owner.removeprefix("derived:")]
        return located_error(docs, derived.file, code, message, derived.pointer + "/condition", hint)
    return located_error(docs, model.rules[owner].file, code, message, "/when", hint, rule_id=owner)


def _label(owner: str) -> str:
    return f"derived value {owner.removeprefix('derived:')}" if owner.startswith("derived:") else owner


def limit_problems(model: KnowledgeBaseModel, docs: dict[str, Located], compiled: CompiledKB) -> list[KBError]:
    """Conditions whose compiled patterns exceed the core's fixed limits."""
    worst_groups: dict[str, int] = {}
    worst_cost: dict[str, int] = {}
    for chunks in compiled.levels:
        for rules in chunks:
            for name, body in rules.items():
                owner = _owner(name)
                worst_groups[owner] = max(worst_groups.get(owner, 0), groups(body["all"][0]["m"]))
                worst_cost[owner] = max(worst_cost.get(owner, 0), stack_bound([body]))
    problems = []
    for owner in sorted(worst_groups):
        if worst_groups[owner] > MAX_GROUPS:
            problems.append(
                _locate(
                    owner,
                    model,
                    docs,
                    "compile.engine_limit",
                    f"{_label(owner)}'s condition compiles to {worst_groups[owner]} all/any groups in one "
                    f"durable-rules pattern; durable-rules 2.0.28 takes at most {MAX_GROUPS} (its error 113)",
                    "flatten it (an all inside an all, an any inside an any, is one list) or split the rule",
                )
            )
        elif worst_cost[owner] > ALPHA_BUDGET:
            problems.append(
                _locate(
                    owner,
                    model,
                    docs,
                    "compile.engine_limit",
                    f"{_label(owner)}'s condition is too wide for durable-rules: one patient can need "
                    f"{worst_cost[owner]} entries of its alpha-node stack, which holds {ENGINE_STACK} "
                    "(its error 303)",
                    "shorten its any/all lists (an any of a few dozen comparisons at most) or split the rule",
                )
            )
    return problems


def probe_problems(model: KnowledgeBaseModel, docs: dict[str, Located], compiled: CompiledKB) -> list[KBError]:
    """What the real core refuses, located at the rules concerned (see durable.probe): the
    rulesets exactly as the wrapper hands them over (fact keys renamed, DurableRulesets)."""
    as_run = DurableRulesets(compiled.levels, "probe").rulesets
    return [error for failure in probe(as_run) for error in _failure_errors(failure, model, docs)]


def _failure_errors(failure: ProbeFailure, model: KnowledgeBaseModel, docs: dict[str, Located]) -> list[KBError]:
    owners = sorted({_owner(name) for name in failure.rules})
    hint = "simplify this condition; `fsgs-kb compile` shows what durable-rules is given"
    if not owners:
        return [KBError("compile.engine_rejected", failure.message, model.root, hint=hint)]
    together = f" (in one ruleset with {', '.join(_label(o) for o in owners)})" if len(owners) > 1 else ""
    return [
        _locate(owner, model, docs, "compile.engine_rejected", f"{_label(owner)}: {failure.message}{together}", hint)
        for owner in owners
    ]


def prove(report: ValidationReport, probe_engine: bool = True) -> ValidationReport:
    """The report with the problems that would stop the knowledge base from running added.

    Only a knowledge base without errors is compiled; the probe runs only when the fixed limits hold."""
    if not report.ok:
        return report
    model = report.load.model
    compiled = compile_kb(model)
    problems = limit_problems(model, report.load.docs, compiled)
    if not problems and probe_engine:
        problems = probe_problems(model, report.load.docs, compiled)
    return report.with_problems(problems)
