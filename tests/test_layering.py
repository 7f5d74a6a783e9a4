"""Imports flow one way, from the shell down to the model, and this test keeps it so.

The stages in order, highest first (each may import only its own stage or lower ones):
cli → service (the CDS Hooks service; the engine never imports it) → report →
batch/audit/scenarios → kb (façade, cache) → explain → evaluate → compile → check → read/fhir →
load → model/errors. No cycles between modules, no `_private` name taken from another module, and
no parameter typed `kb: Any`.

An import of the package inside a function (the usual way to dodge a cycle) is refused, unless its
line says `# deferred: <why>`: a module only some commands need (the validator and its schemas, FHIR,
Dask, the service), imported when first used so that `fsgs-kb explain` does not pay for them at
start. A deferred import is an edge like any other: it must point to the same or a lower stage
and may not close a cycle, so it cannot dodge one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "fsgs_kb"
STAGES: list[tuple[str, ...]] = [
    ("engine.drills", "engine.errors", "engine.fresh", "engine.intervals", "engine.model", "engine.suggest")
    + ("engine.version",),
    ("engine.load",),
    ("engine.read", "engine.fhir"),
    ("engine.check",),
    ("engine.compile",),
    ("engine.evaluate",),
    ("engine.explain",),
    ("engine.kb", "engine.cache"),
    ("engine.batch", "engine.audit", "engine.scenarios"),
    ("engine.report",),
    ("service",),
    ("ctrl_c",),  # Ctrl-C while the command starts and runs (imported first by the package)
    ("output",),  # everything the command writes to standard output and to files (cli.py's writer)
    ("cli", "__main__", "__init__", "engine.__init__"),
]


def package_sources() -> dict[str, str]:
    """Module name → source, for every module of the package in the checkout."""
    files = [ROOT / name for name in ("cli.py", "output.py", "ctrl_c.py", "__init__.py", "__main__.py")]
    files += [*sorted((ROOT / "engine").rglob("*.py")), *sorted((ROOT / "service").rglob("*.py"))]
    sources = {}
    for path in files:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1] if parts[:-1] != ["engine"] else ["engine", "__init__"]
        sources[".".join([PACKAGE, *parts])] = path.read_text(encoding="utf-8")
    return sources


def stage_of(module: str) -> int:
    name = module.removeprefix(PACKAGE + ".") if module != PACKAGE else "__init__"
    for rank, prefixes in enumerate(STAGES):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no stage: add it to STAGES")


def _imports(module: str, source: str) -> tuple[list[tuple[str, int, list[str]]], list[str]]:
    """(imported module, line, imported names) for every import of the package, and problems."""
    tree = ast.parse(source)
    found: list[tuple[str, int, list[str]]] = []
    problems: list[str] = []
    top_level = {id(node) for node in tree.body}
    lines = source.splitlines()
    guarded = {id(n) for node in tree.body if isinstance(node, ast.If) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                problems.append(f"{module}:{node.lineno}: relative import; use fsgs_kb.…")
                continue
            targets = [(node.module or "", [a.name for a in node.names])]
        elif isinstance(node, ast.Import):
            targets = [(a.name, []) for a in node.names]
        else:
            continue
        for target, names in targets:
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            statement = "\n".join(lines[node.lineno - 1 : node.end_lineno])
            deferred = re.search(r"# deferred: \S", statement) is not None
            if id(node) not in top_level and not deferred:
                where = "under `if TYPE_CHECKING`" if id(node) in guarded else "inside a function"
                problems.append(f"{module}:{node.lineno}: import of {target} {where}")
            found.append((target, node.lineno, names))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for arg in node.args.args + node.args.kwonlyargs:
                annotation = ast.unparse(arg.annotation) if arg.annotation else ""
                if arg.arg.endswith("kb") and annotation == "Any":
                    problems.append(f"{module}:{node.lineno}: parameter {arg.arg}: Any")
    return found, problems


def layering_violations(sources: dict[str, str]) -> list[str]:
    problems: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in sources}
    for module, source in sources.items():
        found, local = _imports(module, source)
        problems += local
        for target, line, names in found:
            resolved = target if target in sources else f"{target}.__init__"
            # `from pkg import module` is an edge to that module, `from module import name` to module
            edges = {f"{target}.{n}" if f"{target}.{n}" in sources else resolved for n in names or [""]}
            for edge in edges:
                graph[module].add(edge)
                if stage_of(edge) > stage_of(module):
                    problems.append(f"{module}:{line}: imports {edge}, a later stage (back-edge)")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            problems += [f"{module}:{line}: takes private {n} from {target}" for n in private]
    problems += [f"import cycle: {' → '.join(c)}" for c in _cycles(graph)]
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return cycles


def test_imports_flow_one_way() -> None:
    assert layering_violations(package_sources()) == []


def test_a_back_edge_is_caught() -> None:
    sources = package_sources()
    sources["fsgs_kb.engine.load.yamlsafe"] += "\nfrom fsgs_kb.engine.report.explain import explain_text\n"
    assert any("back-edge" in p and "yamlsafe" in p for p in layering_violations(sources))


def test_a_function_level_import_and_a_cycle_are_caught() -> None:
    sources = package_sources()
    sources["fsgs_kb.engine.load.paths"] += "\n\ndef f():\n    from fsgs_kb.engine.load import schemas\n"
    problems = layering_violations(sources)
    assert any("inside a function" in p for p in problems)
    assert any(p.startswith("import cycle") and "fsgs_kb.engine.load.paths" in p for p in problems)


def test_a_deferred_import_is_an_edge_like_any_other() -> None:
    """Marked `# deferred:`, a function-level import is allowed, but still may not point up a stage
    nor close a cycle."""
    sources = package_sources()
    sources["fsgs_kb.engine.load.paths"] += (
        "\n\ndef f():\n    from fsgs_kb.engine.load import schemas  # deferred: only validate needs it\n"
    )
    problems = layering_violations(sources)
    assert not any("inside a function" in p for p in problems)
    assert any(p.startswith("import cycle") and "fsgs_kb.engine.load.paths" in p for p in problems)
    sources = package_sources()
    sources["fsgs_kb.engine.load.yamlsafe"] += (
        "\n\ndef g():\n    from fsgs_kb.engine.report.explain import explain_text  # deferred: no\n"
    )
    assert any("back-edge" in p and "yamlsafe" in p for p in layering_violations(sources))


def test_a_private_reach_in_and_kb_any_are_caught() -> None:
    sources = package_sources()
    sources["fsgs_kb.engine.report.explain"] += (
        "\nfrom fsgs_kb.engine.evaluate.evaluation import _error_dict\n\ndef g(kb: Any) -> None: ...\n"
    )
    problems = layering_violations(sources)
    assert any("private _error_dict" in p for p in problems)
    assert any("kb: Any" in p for p in problems)


def stdout_writes_around_output(source: str) -> list[str]:
    """Places in `source` (cli.py) that write standard output other than through fsgs_kb.output:
    a `click.echo` without err=True, `print`, or `sys.stdout` itself (whose failures would escape as
    an internal error, or be dropped silently when it is closed)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            to_stderr = any(k.arg == "err" and ast.unparse(k.value) == "True" for k in node.keywords)
            if (name == "click.echo" and not to_stderr) or name == "print":
                found.append(f"cli.py:{node.lineno}: {name}")
        elif isinstance(node, ast.Attribute) and ast.unparse(node) in ("sys.stdout.write", "sys.stdout.buffer"):
            found.append(f"cli.py:{node.lineno}: {ast.unparse(node)}")
    return found


def test_cli_writes_standard_output_only_through_output() -> None:
    assert stdout_writes_around_output((ROOT / "cli.py").read_text(encoding="utf-8")) == []
    sneaked = "click.echo('x')\nprint('y')\nsys.stdout.buffer.write(b'z')\nclick.echo('ok', err=True)\n"
    assert len(stdout_writes_around_output(sneaked)) == 3
