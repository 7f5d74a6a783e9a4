"""The `fsgs-kb` command: a thin shell over the `engine` API.

Each command parses its options, calls the engine and picks a renderer; only this module prints
or exits. Exit codes: 0 success, 1 findings (invalid knowledge base or record), 2 usage errors.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from engine.kb import KnowledgeBase

RULES_OPTION = click.option(
    "--rules",
    "rules_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="FSGS_KB_RULES",
    show_envvar=True,
    help="Knowledge-base directory (default: the bundled one).",
)
FORMAT_TEXT_JSON = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output format."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fsgs-kb")
def main() -> None:
    """Cyclosporine in idiopathic FSGS: a rules-as-data knowledge base.

    Exit codes: 0 success, 1 findings (knowledge-base problems, invalid patient record),
    2 usage or I/O errors.
    """


@main.command()
@RULES_OPTION
@FORMAT_TEXT_JSON
def validate(rules_dir: Path | None, fmt: str) -> None:
    """Check the knowledge base and report every problem, sorted by place."""
    from engine.paths import resolve_rules_dir
    from engine.report import validation_json, validation_text
    from engine.validate import validate_dir

    report = validate_dir(resolve_rules_dir(rules_dir))
    click.echo(validation_json(report) if fmt == "json" else validation_text(report))
    sys.exit(0 if report.ok else 1)


def _load_kb(rules_dir: Path | None) -> KnowledgeBase:
    """Load the knowledge base or exit 2 with its problems: a broken KB is a setup error."""
    from engine.errors import KBErrors
    from engine.kb import load
    from engine.report import format_error

    try:
        return load(rules_dir)
    except KBErrors as exc:
        for error in exc.errors:
            click.echo(format_error(error), err=True)
        click.echo("the knowledge base has errors; run 'fsgs-kb validate' for the full report", err=True)
        sys.exit(2)


def _read_patient(source: str) -> tuple[object, str, str | None]:
    """(parsed record, raw text, None), or (None, raw text, message) when the text is not JSON."""
    import json

    try:
        if source == "-":
            text = sys.stdin.read()
        else:
            with open(source, encoding="utf-8") as handle:
                text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        click.echo(f"fsgs-kb: cannot read {source}: {exc}", err=True)
        sys.exit(2)
    try:
        return json.loads(text), text, None
    except json.JSONDecodeError as exc:
        return None, text, f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"


def _evaluate_source(rules_dir: Path | None, source: str) -> dict[str, Any]:
    kb = _load_kb(rules_dir)
    record, text, problem = _read_patient(source)
    if problem is not None:
        from engine.evaluate import invalid_json_result

        return invalid_json_result(kb, text, problem)
    return kb.evaluate(record)


EXIT_BY_STATUS = {"invalid": 1, "error": 3}


@main.command()
@click.argument("patient", metavar="PATIENT.json|-")
@RULES_OPTION
@click.option("--compact", is_flag=True, help="One line of JSON instead of indented.")
def evaluate(patient: str, rules_dir: Path | None, compact: bool) -> None:
    """Evaluate one patient record and print the result JSON.

    Exit 0 when evaluated (any status but invalid or error), 1 for an invalid record, 3 for an
    internal error, 2 for usage errors.
    """
    import json

    result = _evaluate_source(rules_dir, patient)
    click.echo(json.dumps(result, ensure_ascii=False, indent=None if compact else 2))
    sys.exit(EXIT_BY_STATUS.get(result["status"], 0))


@main.command()
@click.argument("patient", metavar="PATIENT.json|-")
@RULES_OPTION
def explain(patient: str, rules_dir: Path | None) -> None:
    """Explain one patient's result for a person: what fired and why, what is undetermined.

    Exit codes as for evaluate.
    """
    from engine.explain import explain_text

    result = _evaluate_source(rules_dir, patient)
    click.echo(explain_text(result))
    sys.exit(EXIT_BY_STATUS.get(result["status"], 0))


@main.command(name="compile")
@RULES_OPTION
def compile_command(rules_dir: Path | None) -> None:
    """Print the compiled durable-rules rulesets (JSON ruleset form), level by level."""
    import json

    kb = _load_kb(rules_dir)
    click.echo(json.dumps(kb.compiled.as_json(), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
