"""The `fsgs-kb` command: a thin shell over the `engine` API.

Each command parses its options, calls the engine and picks a renderer; only this module prints
or exits. Exit codes: 0 success, 1 findings (invalid knowledge base or record), 2 usage errors.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

RULES_OPTION = click.option(
    "--rules", "rules_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    envvar="FSGS_KB_RULES", show_envvar=True,
    help="Knowledge-base directory (default: the bundled one).")
FORMAT_TEXT_JSON = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                                show_default=True, help="Output format.")


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


if __name__ == "__main__":
    main()
