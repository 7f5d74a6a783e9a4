"""The `fsgs-kb` command: a thin shell over the `engine` API.

Each command parses its options, calls the engine and picks a renderer; only this module prints
or exits. Exit codes: 0 success, 1 findings (invalid knowledge base or record), 2 usage errors.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from fsgs_kb.engine.audit.audit import audit_report
from fsgs_kb.engine.audit.diff import compare, load_side, materialize, temporary_workdir
from fsgs_kb.engine.audit.replay import impact as run_impact
from fsgs_kb.engine.audit.replay import index_inputs
from fsgs_kb.engine.audit.replay import replay as run_replay
from fsgs_kb.engine.batch.files import LineWriter, open_output, prepare_resume
from fsgs_kb.engine.batch.readers import read_records, sniff_format
from fsgs_kb.engine.batch.run import BatchRunner
from fsgs_kb.engine.errors import KBErrors
from fsgs_kb.engine.kb import KnowledgeBase, load
from fsgs_kb.engine.kb import validate as validate_kb
from fsgs_kb.engine.load.paths import resolve_rules_dir
from fsgs_kb.engine.load.scenario_files import load_cases
from fsgs_kb.engine.report.audit import audit_text, diff_text, impact_text, trace_text
from fsgs_kb.engine.report.explain import explain_text
from fsgs_kb.engine.report.handbook import Handbook, write_page, write_site
from fsgs_kb.engine.report.markdown import markdown
from fsgs_kb.engine.report.scenarios import coverage_text, report_text
from fsgs_kb.engine.report.validation import format_error, validation_json, validation_text
from fsgs_kb.engine.scenarios.run import measure_coverage, report_json, run, select
from fsgs_kb.engine.suggest import did_you_mean

RULES_OPTION = click.option(
    "--rules",
    "rules_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="FSGS_KB_RULES",
    show_envvar=True,
    help="Knowledge-base directory (default: the bundled one).",
)
PATH_OPTION = click.option(
    "--path",
    "rules_path",
    default="rules",
    show_default=True,
    help="Where the knowledge base is inside the repository (for git:REV).",
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
    """Check the knowledge base and report every problem, sorted by place, including any
    condition durable-rules could not run (its rulesets are tried in a separate process)."""

    report = validate_kb(rules_dir)
    click.echo(validation_json(report) if fmt == "json" else validation_text(report))
    sys.exit(0 if report.ok else 1)


def _load_kb(rules_dir: Path | None) -> KnowledgeBase:
    """Load the knowledge base or exit 2 with its problems: a broken KB is a setup error."""

    try:
        return load(rules_dir)
    except KBErrors as exc:
        for error in exc.errors:
            click.echo(format_error(error), err=True)
        click.echo("the knowledge base has errors; run 'fsgs-kb validate' for the full report", err=True)
        sys.exit(2)


def _read_patient(source: str) -> tuple[object, str, str | None]:
    """(parsed record, raw text, None), or (None, raw text, message) when the text is not JSON."""

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


APPROVED_OPTION = click.option(
    "--require-approved", is_flag=True, help="Refuse to run unless every rule is active (signed off)."
)
INPUT_OPTIONS = [
    click.option("--include-input", is_flag=True, help="Store the input in the decision record (for replay)."),
    click.option(
        "--mask",
        "mask",
        multiple=True,
        metavar="POINTER",
        help="With --include-input: replace the value at this JSON pointer by its sha256; repeatable.",
    ),
]


def _with_input_options(command: Any) -> Any:
    for option in reversed(INPUT_OPTIONS):
        command = option(command)
    return command


def _require_approved(kb: KnowledgeBase) -> None:
    if kb.unapproved:
        click.echo(
            f"fsgs-kb: --require-approved: {len(kb.unapproved)} rule(s) are not active (signed off): "
            f"{', '.join(kb.unapproved)}",
            err=True,
        )
        click.echo(
            "sign them off (status: active, approved_by, approved_on) or run without --require-approved", err=True
        )
        sys.exit(2)


def _evaluate_source(
    rules_dir: Path | None,
    source: str,
    require_approved: bool = False,
    include_input: bool = False,
    mask: tuple[str, ...] = (),
) -> dict[str, Any]:
    kb = _load_kb(rules_dir)
    if require_approved:
        _require_approved(kb)
    record, text, problem = _read_patient(source)
    if problem is not None:
        return kb.failed_result("patient.json", problem, text)
    return kb.evaluate(record, include_input=include_input, mask=mask)


EXIT_BY_STATUS = {"invalid": 1, "error": 3}


@main.command()
@click.argument("patient", metavar="PATIENT.json|-")
@RULES_OPTION
@click.option("--compact", is_flag=True, help="One line of JSON instead of indented.")
@APPROVED_OPTION
@_with_input_options
def evaluate(
    patient: str,
    rules_dir: Path | None,
    compact: bool,
    require_approved: bool,
    include_input: bool,
    mask: tuple[str, ...],
) -> None:
    """Evaluate one patient record and print the result JSON.

    Exit 0 when evaluated (any status but invalid or error), 1 for an invalid record, 3 for an
    internal error, 2 for usage errors.
    """

    result = _evaluate_source(rules_dir, patient, require_approved, include_input, mask)
    click.echo(json.dumps(result, ensure_ascii=False, indent=None if compact else 2))
    sys.exit(EXIT_BY_STATUS.get(result["status"], 0))


@main.command()
@click.argument("patient", metavar="PATIENT.json|-")
@RULES_OPTION
@APPROVED_OPTION
def explain(patient: str, rules_dir: Path | None, require_approved: bool) -> None:
    """Explain one patient's result for a person: what fired and why, what is undetermined.

    Exit codes as for evaluate.
    """

    result = _evaluate_source(rules_dir, patient, require_approved)
    click.echo(explain_text(result))
    sys.exit(EXIT_BY_STATUS.get(result["status"], 0))


class _Progress:
    """A one-line progress bar on stderr: records, records/s and, when the size is known, ETA."""

    def __init__(self, total_bytes: int | None) -> None:

        self.total = total_bytes
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, records: int, bytes_read: int, final: bool = False) -> None:

        now = time.monotonic()
        if not final and now - self.last < 0.2:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        text = f"\r{records:,} records  {records / elapsed:,.0f}/s"
        if self.total and bytes_read:
            share = min(bytes_read / self.total, 1.0)
            eta = elapsed * (1 - share) / share if share else 0
            text += f"  {share:5.1%}  ETA {int(eta) // 60}:{int(eta) % 60:02d}"
        click.echo(text + ("\n" if final else ""), err=True, nl=False)


@main.command()
@click.argument("source", metavar="INPUT|-")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write results here (default: stdout)."
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: the number of cores)."
)
@click.option("--resume", is_flag=True, help="Continue a killed run: keep OUTPUT's complete lines, do the rest.")
@click.option(
    "--summary",
    "summary_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the summary as JSON to this file.",
)
@click.option(
    "--input-format",
    "input_format",
    type=click.Choice(["jsonl", "json", "csv"]),
    default=None,
    help="Input format (default: from the file name, else JSON Lines, or a JSON array if it starts with '[').",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@RULES_OPTION
@APPROVED_OPTION
@_with_input_options
def batch(
    source: str,
    output: str | None,
    workers: int | None,
    resume: bool,
    summary_file: str | None,
    input_format: str | None,
    quiet: bool,
    rules_dir: Path | None,
    require_approved: bool,
    include_input: bool,
    mask: tuple[str, ...],
) -> None:
    """Evaluate many patients: JSON Lines (or a JSON array, or CSV with dotted column names) in,
    one JSON result per input record out, in input order.

    Every input record gets exactly one result line, carrying its record number and input line;
    a line that is not JSON, an empty line, an invalid patient or a record that crashes the
    engine gets status invalid or error with a code, and the run goes on. A summary goes to
    stderr (and --summary FILE as JSON).

    \b
    Exit codes:
      0  every record evaluated
      1  some records invalid
      3  some records hit internal errors (e.g. engine_crash)
      2  usage or I/O errors
    """

    kb = _load_kb(rules_dir)
    if require_approved:
        _require_approved(kb)
    if resume and not output:
        raise click.UsageError("--resume needs -o OUTPUT (a file to continue)")
    try:
        stream = sys.stdin if source == "-" else open(source, encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        click.echo(f"fsgs-kb: cannot read {source}: {exc.strerror}", err=True)
        sys.exit(2)
    fmt = input_format or sniff_format(None if source == "-" else source, _peek(stream))
    done = 0
    try:
        if resume and output:
            done = prepare_resume(output, kb.fingerprint)
        fd = open_output(output, append=resume) if output else sys.stdout.fileno()
    except KBErrors as exc:
        for error in exc.errors:
            click.echo(format_error(error), err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"fsgs-kb: cannot write {output}: {exc.strerror}", err=True)
        sys.exit(2)
    writer = LineWriter(fd, None if output else sys.stdout.buffer)
    total = os.path.getsize(source) if source != "-" and fmt != "csv" else None
    show = not quiet and sys.stderr.isatty()
    progress = _Progress(total) if show else None
    records = (r for r in read_records(stream, fmt) if r.number > done)
    options = {"include_input": True, "mask": mask} if include_input else None
    runner = BatchRunner(
        kb,
        str(rules_dir) if rules_dir else None,
        workers or os.cpu_count() or 1,
        writer.write,
        progress,
        options=options,
    )
    try:
        summary = runner.run(records, first_number=done + 1)
    except ValueError as exc:
        writer.flush()
        click.echo(f"fsgs-kb: {source}: {exc}", err=True)
        sys.exit(2)
    writer.flush()
    if output:
        os.close(fd)
    if progress is not None:
        progress(summary.records, total or 0, final=True)
    payload = summary.to_dict()
    text = _summary_text(payload)
    click.echo(text.splitlines()[0] if quiet else text, err=True)
    if summary_file:
        with open(summary_file, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
    sys.exit(summary.exit_code)


def _peek(stream: object) -> str:
    """The first characters of an input without consuming them (for format sniffing)."""
    peek = getattr(getattr(stream, "buffer", None), "peek", None)
    if peek is None:
        return ""
    return bytes(peek(64)[:64]).decode("utf-8", "ignore")


def _summary_text(payload: dict[str, Any]) -> str:
    statuses = ", ".join(f"{k} {v:,}" for k, v in payload["by_status"].items()) or "none"
    lines = [
        f"{payload['records']:,} records in {payload['elapsed_s']:.1f} s "
        f"({payload['records_per_s']:,.0f}/s, {payload['workers']} workers): {statuses}"
    ]
    if payload["resumed_after"]:
        lines.append(f"resumed after record {payload['resumed_after']:,}")
    if payload["worker_crashes"]:
        lines.append(f"worker crashes survived: {payload['worker_crashes']}")
    for rule, counts in payload["by_rule"].items():
        lines.append(f"  {rule:26s} " + "  ".join(f"{k} {v:,}" for k, v in counts.items()))
    return "\n".join(lines)


@main.command(name="test")
@RULES_OPTION
@click.option(
    "-k",
    "patterns",
    multiple=True,
    metavar="PATTERN",
    help="Run only cases whose id (RULE-ID::case) contains PATTERN; repeatable.",
)
@click.option("--coverage", is_flag=True, help="Also report rule outcome and threshold boundary coverage.")
@FORMAT_TEXT_JSON
def test_command(rules_dir: Path | None, patterns: tuple[str, ...], coverage: bool, fmt: str) -> None:
    """Run the scenario tests in RULES/tests/*.yaml.

    Exit 0 when every selected case passes (and, with --coverage, coverage is complete); 1 when
    a case fails, the selection is empty or coverage is incomplete; 2 for usage errors or
    scenario files that cannot be read.
    """

    kb = _load_kb(rules_dir)
    tests_dir = resolve_rules_dir(rules_dir) / "tests"
    try:
        cases = load_cases(tests_dir) if tests_dir.is_dir() else []
    except KBErrors as exc:
        for error in exc.errors:
            click.echo(format_error(error), err=True)
        sys.exit(2)
    chosen = select(cases, patterns)
    if not chosen:
        click.echo(f"no scenario case matches {' '.join(patterns) or '(no cases in ' + str(tests_dir) + ')'}", err=True)
        sys.exit(1)
    results = run(kb, chosen)
    cover = measure_coverage(kb, chosen, results) if coverage else None
    if fmt == "json":
        click.echo(json.dumps(report_json(results, cover), indent=2, ensure_ascii=False))
    else:
        click.echo(report_text(results, patterns))
        if cover is not None:
            click.echo(coverage_text(kb, cover))
    failed = any(not r.passed for r in results) or (cover is not None and not cover.complete)
    sys.exit(1 if failed else 0)


@main.command()
@RULES_OPTION
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(file_okay=True, path_type=Path),
    required=True,
    help="Directory for the HTML site (or file, with --format md).",
)
@click.option("--format", "fmt", type=click.Choice(["html", "md"]), default="html", show_default=True)
def docs(rules_dir: Path | None, out: Path, fmt: str) -> None:
    """Write the handbook: every rule in plain English with its source, parameters and history.

    HTML is a self-contained static site (no network needed to view it); md is one Markdown file.
    """

    kb = _load_kb(rules_dir)
    book = Handbook(kb.model, kb.fingerprint)
    try:
        if fmt == "md":
            target = out / "handbook.md" if out.is_dir() else out
            target.parent.mkdir(parents=True, exist_ok=True)
            write_page(target, markdown(book))
            click.echo(f"wrote {target}")
        else:
            written = write_site(book, out)
            click.echo(f"wrote {len(written)} pages to {out} (open {out / 'index.html'})")
    except OSError as exc:
        click.echo(f"fsgs-kb: cannot write {out}: {exc.strerror}", err=True)
        sys.exit(2)


@main.command()
@RULES_OPTION
@click.option("--rule", "rule_id", default=None, metavar="ID", help="Only this rule.")
@click.option("--format", "fmt", type=click.Choice(["text", "md", "json"]), default="text", show_default=True)
def audit(rules_dir: Path | None, rule_id: str | None, fmt: str) -> None:
    """Where every rule comes from: quotes, parameters and their provenance, history, coverage.

    Anything not verified against a primary document is flagged.
    """

    kb = _load_kb(rules_dir)
    if rule_id is not None and rule_id not in kb.model.rules:
        hint = did_you_mean(rule_id, set(kb.model.rules))
        raise click.BadParameter(f"no rule {rule_id}" + (f" ({hint})" if hint else ""), param_hint="--rule")
    report = audit_report(kb, rule_id)
    click.echo(json.dumps(report, indent=2, ensure_ascii=False) if fmt == "json" else audit_text(report, fmt == "md"))


def _read_results(path: str) -> list[dict[str, Any]]:

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        click.echo(f"fsgs-kb: cannot read {path}: {exc.strerror}", err=True)
        sys.exit(2)
    try:
        whole = json.loads(text)
        return whole if isinstance(whole, list) else [whole]
    except json.JSONDecodeError:
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            click.echo(f"fsgs-kb: {path} holds no result JSON (line {exc.lineno}: {exc.msg})", err=True)
            sys.exit(2)


@main.command()
@click.argument("result_file", metavar="RESULT.json|-")
@RULES_OPTION
def trace(result_file: str, rules_dir: Path | None) -> None:
    """Trace a decision (from evaluate or batch): advice → rule → values → provenance → source.

    Exit 0 when the result was made by the knowledge base at hand, 1 when it was not (the trace
    then shows today's provenance and says so), 2 for usage or I/O errors.
    """

    kb = _load_kb(rules_dir)
    all_same = True
    for i, result in enumerate(_read_results(result_file)):
        if not isinstance(result, dict) or "decision" not in result:
            click.echo(f"fsgs-kb: entry {i + 1} of {result_file} is not a fsgs-kb result", err=True)
            sys.exit(2)
        text, same = trace_text(kb, result)
        click.echo(("\n" if i else "") + text)
        all_same &= same
    sys.exit(0 if all_same else 1)


@main.command()
@click.argument("old")
@click.argument("new")
@PATH_OPTION
@FORMAT_TEXT_JSON
def diff(old: str, new: str, rules_path: str, fmt: str) -> None:
    """Semantic diff of two knowledge bases (each a directory or git:REV), with versioning checks.

    Exit 0 when every change is versioned, 1 when a rule or the knowledge base changed without a
    version bump and history/changelog entry, 2 when a side cannot be read or does not validate.
    """

    with temporary_workdir() as work:
        try:
            sides = [load_side(spec, rules_path, Path(work)) for spec in (old, new)]
        except KBErrors as exc:
            for error in exc.errors:
                click.echo(format_error(error), err=True)
            sys.exit(2)
        except (ValueError, OSError) as exc:
            click.echo(f"fsgs-kb: {exc}", err=True)
            sys.exit(2)
        for side in sides:
            if not side.report.ok:
                click.echo(f"fsgs-kb: {side.label} does not validate:", err=True)
                for error in side.report.errors:
                    click.echo(format_error(error), err=True)
                sys.exit(2)
        result = compare(*sides)
        if fmt == "json":
            click.echo(
                json.dumps(
                    {"changes": result.changes, "violations": result.violations},
                    indent=2,
                    ensure_ascii=False,
                    default=str,
                )
            )
        else:
            click.echo(diff_text(sides[0], sides[1], result))
    sys.exit(1 if result.violations else 0)


@main.command()
@click.argument("results_file", metavar="RESULTS.jsonl")
@click.option(
    "--input",
    "input_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="The patients the results were made from (JSON Lines), matched by input_sha256.",
)
@RULES_OPTION
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def replay(results_file: str, input_file: str | None, rules_dir: Path | None, fmt: str) -> None:
    """Re-evaluate recorded decisions with the knowledge base at hand: identical, changed, or input missing.

    Exit 0 when every decision comes back identical, 1 otherwise, 2 for usage or I/O errors.
    """

    kb = _load_kb(rules_dir)
    index: dict[str, str] = {}
    try:
        if input_file:
            with open(input_file, encoding="utf-8") as inputs:
                index = index_inputs(inputs)
        handle: Any = sys.stdin if results_file == "-" else open(results_file, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        click.echo(f"fsgs-kb: cannot read: {exc}", err=True)
        sys.exit(2)
    counts = {"identical": 0, "changed": 0, "input_missing": 0}
    reports = []
    try:
        for report in run_replay(kb, handle, index):
            counts[report["verdict"]] += 1
            if fmt == "json":
                reports.append(report)
            elif report["verdict"] != "identical":
                what = "; ".join(f"{c['rule']} {c['old']} → {c['new']}" for c in report.get("changes", []))
                click.echo(
                    f"{report['verdict']}: record {report.get('record')} patient {report.get('patient_id')} "
                    f"(decision {report['decision_id']}){': ' + what if what else ''}"
                )
    except json.JSONDecodeError as exc:
        click.echo(f"fsgs-kb: {results_file} line {exc.lineno}: not a result ({exc.msg})", err=True)
        sys.exit(2)
    total = sum(counts.values())
    share = f"{100 * counts['identical'] / total:.1f} %" if total else "n/a"
    summary = (
        f"{total:,} decisions replayed with {kb.id} {kb.version} ({kb.fingerprint[:12]}): "
        f"{counts['identical']:,} identical ({share}), {counts['changed']:,} changed, "
        f"{counts['input_missing']:,} input missing"
    )
    if fmt == "json":
        click.echo(json.dumps({"summary": counts, "decisions": reports}, indent=2, ensure_ascii=False))
    else:
        click.echo(summary)
    sys.exit(0 if counts["identical"] == total else 1)


@main.command()
@click.argument("old")
@click.argument("new")
@click.argument("patients", metavar="PATIENTS.jsonl")
@PATH_OPTION
@FORMAT_TEXT_JSON
def impact(old: str, new: str, patients: str, rules_path: str, fmt: str) -> None:
    """Evaluate a cohort under two knowledge bases (directories or git:REV): per rule, which
    patients newly fire, stop firing, or change to or from undetermined."""

    with temporary_workdir() as work:
        try:
            old_kb, new_kb = (load(materialize(spec, rules_path, Path(work))) for spec in (old, new))
        except (ValueError, OSError) as exc:
            click.echo(f"fsgs-kb: {exc}", err=True)
            sys.exit(2)
        except Exception as exc:  # KBErrors: a side that does not validate
            if not isinstance(exc, KBErrors):
                raise
            for error in exc.errors:
                click.echo(format_error(error), err=True)
            sys.exit(2)
        try:
            with open(patients, encoding="utf-8") as handle:
                report = run_impact(old_kb, new_kb, handle)
        except OSError as exc:
            click.echo(f"fsgs-kb: cannot read {patients}: {exc.strerror}", err=True)
            sys.exit(2)
    click.echo(json.dumps(report, indent=2, ensure_ascii=False) if fmt == "json" else impact_text(report))


@main.command(name="compile")
@RULES_OPTION
def compile_command(rules_dir: Path | None) -> None:
    """Print the compiled durable-rules rulesets (JSON ruleset form), level by level."""

    kb = _load_kb(rules_dir)
    click.echo(json.dumps(kb.compiled.as_json(), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
