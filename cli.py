"""The `fsgs-kb` command: a thin shell over the `fsgs_kb` API.

Each command parses its options, calls the API, picks a renderer from `engine/report` and maps
the outcome to an exit code from `EXIT_CODES`. Every problem is a `KBError`, printed by the one
renderer (`format_error`); nothing here formats an error by hand.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from signal import SIGINT
from typing import TYPE_CHECKING, Any, NoReturn

import click

from fsgs_kb import ctrl_c
from fsgs_kb.engine.audit.replay import (
    FHIR_ONLY,
    Inputs,
    Places,
    carried_fhir,
    index_inputs,
    is_result,
    replay_counts,
)
from fsgs_kb.engine.audit.replay import impact as run_impact
from fsgs_kb.engine.audit.replay import replay as run_replay
from fsgs_kb.engine.audit.trace import Trace, explained_result
from fsgs_kb.engine.audit.trace import trace as trace_result
from fsgs_kb.engine.batch.files import SIDECAR_SUFFIX, InputFiles, same_file, standard_stream
from fsgs_kb.engine.batch.job import BatchJob, open_input, run_batch
from fsgs_kb.engine.batch.parts import (
    check_parts,
    expand_parts,
    is_pattern,
    is_url,
    local_parts,
    part_output,
    prepare_outdir,
    run_parts_locally,
)
from fsgs_kb.engine.batch.run import MAX_WORKERS
from fsgs_kb.engine.cache import clear as clear_cache
from fsgs_kb.engine.cache import info as cache_state
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.fresh import write_replacing
from fsgs_kb.engine.kb import KnowledgeBase, load
from fsgs_kb.engine.kb import validate as validate_kb
from fsgs_kb.engine.load.fields import names_a_field
from fsgs_kb.engine.load.paths import RULES_ENV, RulesLocation, kb_identity, locate_rules
from fsgs_kb.engine.load.scenario_files import load_cases
from fsgs_kb.engine.read.patients import PatientsFile
from fsgs_kb.engine.read.record import in_input
from fsgs_kb.engine.read.records import (
    FHIR_FORMATS,
    Record,
    read_csv,
    read_document,
    read_documents,
    record_value,
    sniff_format,
)
from fsgs_kb.engine.report.batch import ProgressLine, summary_text
from fsgs_kb.engine.report.cache import cache_clear_text, cache_info_text
from fsgs_kb.engine.report.colour import CHOICES, Palette, wants_colour
from fsgs_kb.engine.report.explain import explain_text, explanation, sources_lines
from fsgs_kb.engine.report.identity import kb_line, kb_place
from fsgs_kb.engine.report.scenarios import coverage_text, report_text
from fsgs_kb.engine.report.validation import (
    format_error,
    validation_github,
    validation_json,
    validation_sarif,
    validation_text,
)
from fsgs_kb.engine.scenarios.run import measure_coverage, report_json, run, select
from fsgs_kb.engine.suggest import did_you_mean
from fsgs_kb.output import (
    STDOUT,
    check_writable,
    descriptor_binary,
    echo,
    replace_file,
    stdout_binary,
    write_report,
    writing,
)

if TYPE_CHECKING:
    from fsgs_kb.engine.audit.diff import KBSide  # deferred: a type only
    from fsgs_kb.engine.fhir.records import FhirReader  # deferred: a type only


EXIT_CODES = {
    "ok": 0,  # success
    "findings": 1,  # an invalid record, a failed check, a mismatch
    "usage": 2,  # usage, input/output or knowledge-base errors
    "internal": 3,  # an internal error while evaluating a record
    "no_tests": 5,  # fsgs-kb test selected no scenario case (as pytest)
}
MASK_KEY_ENV = "FSGS_KB_MASK_KEY"
EXIT_BY_STATUS = {"invalid": EXIT_CODES["findings"], "error": EXIT_CODES["internal"]}
EXIT_HELP = """\b
Exit codes:
  0    success
  1    findings: an invalid record, a failed check or test, a mismatch
  2    usage, input/output or knowledge-base errors
  3    an internal error while evaluating a record
  5    test: no scenario case selected (as pytest)
  130  stopped by SIGINT (Ctrl-C)   \\  batch writes what is done;
  143  stopped by SIGTERM           /  run it again with --resume"""


def exit_for_signal(signum: int) -> int:
    return 128 + signum


class Command(click.Command):
    """Every command's --help ends with the exit codes; Ctrl-C while it runs is one line and exit
    130 (fsgs_kb/ctrl_c.py, Group.invoke)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", EXIT_HELP)
        super().__init__(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with ctrl_c.raising():
            return super().invoke(ctx)


class FilePath(click.Path):
    """A path the command writes: never empty (`-o ""` sent batch's results nowhere, exit 1, and
    `--summary ""` failed after the whole run), and, where a directory is not taken, not one
    ending in `/` (`--summary new/` wrote a file named `new`)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            if value == "":
                self.fail("an empty path names no file", param, ctx)
            if not self.dir_okay and value.endswith(("/", os.sep)) and value != "-":
                self.fail(f"{value!r} names a directory (it ends with '/'): give a file name", param, ctx)
        return super().convert(value, param, ctx)


class Group(click.Group):
    """Turns every KBErrors that reaches the shell into its lines on stderr and exit 2."""

    command_class = Command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KBErrors as exc:  # an `internal` problem (a Dask task's bug, named by its part) exits 3
            fail(exc.errors, EXIT_CODES["internal" if any(e.code == "internal" for e in exc.errors) else "usage"])
        except BrokenPipeError:  # the reader went away (`| head`): nothing more to say
            sys.stderr.close()
            sys.exit(EXIT_CODES["ok"])
        except KeyboardInterrupt:  # Ctrl-C outside a batch run's own handler: loading, verifying, between parts
            interrupted(ctx)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug: one clear line, the traceback only on request
            if os.environ.get("FSGS_KB_DEBUG"):
                raise
            problem = KBError("internal", f"{type(exc).__name__}: {exc}", hint="set FSGS_KB_DEBUG=1 for the traceback")
            fail([problem], EXIT_CODES["internal"])


def fail(errors: list[KBError], code: int = EXIT_CODES["usage"], note: str | None = None) -> NoReturn:
    for error in errors:
        click.echo(format_error(error), err=True)
    if note:
        click.echo(note, err=True)
    sys.exit(code)


def interrupted(ctx: click.Context) -> NoReturn:
    """One line and exit 130 for a Ctrl-C that stopped a command."""
    names = [ctx.invoked_subcommand or ""]
    while ctx.parent is not None:  # the root's name is how Python was run: not shown
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    where = " ".join(["fsgs-kb", *reversed([n for n in names if n])])
    hint = "run it again: batch -o OUTPUT continues with --resume" if names[0] == "batch" else None
    fail([KBError("cli.interrupted", "stopped by SIGINT (Ctrl-C)", file=where, hint=hint)], exit_for_signal(SIGINT))


def usage_error(code: str, message: str, hint: str | None = None) -> KBErrors:
    """A usage problem, named by the command given (`fsgs-kb replay: error[cli.replay] …`)."""
    names, ctx = [], click.get_current_context(silent=True)
    while ctx is not None and ctx.parent is not None:  # the root's name is how Python was run: not shown
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    where = " ".join(["fsgs-kb", *reversed(names)])
    return KBErrors([KBError(f"cli.{code}", message, file=where, hint=hint)])


RULES_OPTION = click.option(
    "--rules",
    "rules_dir",
    type=click.Path(path_type=Path),  # checked by _locate, as $FSGS_KB_RULES is
    default=None,
    help=f"Knowledge-base directory (default: ${RULES_ENV}, else the nearest rules/kb.yaml at or above the "
    "working directory, else the bundled one).",
)
PATH_OPTION = click.option(
    "--path",
    "rules_path",
    default="rules",
    show_default=True,
    help="Where the knowledge base is inside the repository (for git:REV).",
)
COLOR_OPTION = click.option(
    "--color",
    "color",
    type=click.Choice(CHOICES),
    default="auto",
    show_default=True,
    help="Colour: auto colours a terminal unless $NO_COLOR is set; always and never override it.",
)
FORMAT_TEXT_JSON = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output format."
)
DETAIL_CHOICE = click.Choice(["full", "standard", "minimal"])
DETAIL_HELP = (
    "full: the self-contained record; standard: without what the knowledge base holds (advice "
    "text, quotes, provenance, condition wording), which trace and replay rebuild from the "
    "knowledge base of its fingerprint; minimal: status, fired advice and caveats with their text, "
    "what is missing, the decision record."
)
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
        help="With --include-input: mask the value at this JSON pointer (e.g. /id); repeatable. Keyed "
        "(HMAC-SHA256) with $FSGS_KB_MASK_KEY when set, else removed.",
    ),
]


AS_OF_OPTION = click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    metavar="YYYY-MM-DD",
    help="FHIR input: the evaluation date for ages, look-back windows and current orders, a calendar day "
    "(default: today's date on this computer's clock); a resource counts on the day its own date or dateTime "
    "is written in. Recorded in the result (decision.fhir.as_of) so a replay converts the same way.",
)


def _fhir_formats() -> str:
    """`--input-format …` for each FHIR format of the command at hand (batch has no format "fhir",
    which its hint named)."""
    ctx = click.get_current_context(silent=True)
    params = ctx.command.params if ctx is not None else []
    kinds = next((p.type.choices for p in params if p.name == "input_format" and isinstance(p.type, click.Choice)), ())
    return " or ".join(f"--input-format {kind}" for kind in kinds if str(kind).startswith("fhir")) or "a FHIR input"


def _fhir_reader(rules_dir: Path | None, fmt: str | None, as_of: datetime | None) -> FhirReader | None:
    """The FHIR reader (map of the knowledge base, evaluation date) for a FHIR input format; the
    FHIR modules are imported only then (every other input passes through here too)."""
    if fmt not in FHIR_FORMATS:
        if as_of is not None:
            raise usage_error("as_of", "--as-of applies to FHIR input only", hint=f"add {_fhir_formats()}")
        return None
    from fsgs_kb.engine.fhir.checkmap import load_checked_map, map_path  # deferred: FHIR input and docs only
    from fsgs_kb.engine.fhir.dates import evaluation_day_problem  # deferred: FHIR input only
    from fsgs_kb.engine.fhir.dates import today as fhir_today  # deferred: FHIR input only
    from fsgs_kb.engine.fhir.records import FhirReader  # deferred: FHIR input only

    day = as_of.date() if as_of is not None else fhir_today()
    problem = evaluation_day_problem(day)
    if problem is not None:
        raise usage_error("as_of", f"--as-of {problem}", hint="give an evaluation date in that range")
    return FhirReader(load_checked_map(map_path(_locate(rules_dir).path)), day)  # the map of the KB in use


def _with_input_options(command: Any) -> Any:
    for option in reversed(INPUT_OPTIONS):
        command = option(command)
    return command


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_HELP)
@click.version_option(package_name="fsgs-kb")
def main() -> None:
    """Cyclosporine in idiopathic FSGS: a rules-as-data knowledge base."""


def _locate(rules_dir: Path | None) -> RulesLocation:
    """The knowledge base a command uses. One that is not a directory is a usage error (exit 2)
    for every command, validate included, wherever it came from (--rules or $FSGS_KB_RULES):
    there is no knowledge base to report findings about."""
    location = locate_rules(rules_dir)  # a discovered one that is not trusted is refused there
    if not location.path.is_dir():
        what = "not a directory" if location.path.exists() else "no such directory"
        raise KBErrors(
            [
                KBError(
                    "cli.rules",
                    f"{what} ({location.how})",
                    file=str(location.path),
                    hint="give the knowledge-base directory, the one that holds kb.yaml",
                )
            ]
        )
    return location


def _load_kb(rules_dir: Path | None, require_approved: bool = False) -> KnowledgeBase:
    """Load the knowledge base or exit 2 with its problems: a broken KB is a setup error."""
    location = _locate(rules_dir)
    try:
        kb = load(location.path)
    except KBErrors as exc:
        where = kb_place(location.path, location.found_by)
        fail(exc.errors, note=f"the knowledge base in {where} has errors; run 'fsgs-kb validate' for the full report")
    kb.location = location
    if require_approved and kb.unapproved:
        raise usage_error(
            "require_approved",
            f"--require-approved: {len(kb.unapproved)} rule(s) are not active (signed off): {', '.join(kb.unapproved)}",
            hint="sign them off (status: active, approved_by, approved_on) or run without --require-approved",
        )
    return kb


def _evaluate_options(include_input: bool, mask: tuple[str, ...]) -> dict[str, Any]:
    bad = [p for p in mask if not p.startswith("/")]
    if bad:
        raise usage_error("mask", f"--mask {bad[0]!r} is not a JSON pointer", hint=f"write /{bad[0].lstrip('/')}")
    if mask and not include_input:
        raise usage_error("mask", "--mask masks the stored input: it needs --include-input")
    unknown = [p for p in mask if not names_a_field(p)]
    if unknown:  # a mistyped mask would leave the value meant unmasked: refused, not ignored
        raise usage_error(
            "mask",
            f"--mask {unknown[0]!r} names no value a patient record can hold (schema/patient.schema.json)",
            hint="mask a field of the record, e.g. /id or /weight_kg",
        )
    key = os.environ.get(MASK_KEY_ENV)
    if not include_input:
        return {}
    return {"include_input": True, "mask": mask, "mask_key": key.encode("utf-8") if key else None}


def _evaluate_one(
    rules_dir: Path | None,
    source: str,
    require_approved: bool,
    options: dict[str, Any],
    fhir: FhirReader | None = None,
    announce: bool = True,
) -> tuple[KnowledgeBase, Any, dict[str, Any]]:
    kb = _load_kb(rules_dir, require_approved)
    if announce:
        click.echo(kb_line(kb.identity), err=True)  # stdout is the result
    stream, path = open_input(source)
    try:
        (record,) = in_input(fhir.document(stream) if fhir is not None else read_document(stream), source)
    finally:
        if path is not None:
            stream.close()
    return kb, record_value(record)[0], kb.evaluate_record(record, **options)


@main.command()
@RULES_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github", "sarif"]),
    default="text",
    show_default=True,
    help="Output format: text, json, github (GitHub Actions annotations) or sarif (SARIF 2.1.0).",
)
@COLOR_OPTION
def validate(rules_dir: Path | None, fmt: str, color: str) -> None:
    """Check the knowledge base and report every problem, sorted by place, including any
    condition durable-rules could not run (its rulesets are tried in a separate process)."""
    location = _locate(rules_dir)
    report = validate_kb(location.path)
    model = report.load.model
    identity = kb_identity(location, model.manifest, report.load.fingerprint if model.manifest else None)
    if fmt == "json":
        echo(validation_json(report, identity))
    elif fmt == "github":
        echo(validation_github(report, identity))
    elif fmt == "sarif":
        echo(validation_sarif(report, identity))
    else:
        paint = Palette(wants_colour(color, sys.stdout))
        echo(kb_line(identity))
        echo(validation_text(report, paint), color=paint.enabled)
    sys.exit(EXIT_CODES["ok"] if report.ok else EXIT_CODES["findings"])


ONE_FORMAT_OPTION = click.option(
    "--input-format",
    "input_format",
    type=click.Choice(["json", "fhir"]),
    default="json",
    show_default=True,
    help="json: a patient record; fhir: a FHIR R4 Bundle (collection, searchset or transaction) holding one "
    "Patient and its resources, converted by the knowledge base's fhir-map.yaml.",
)


@main.command()
@click.argument("patient", metavar="PATIENT.json|BUNDLE.json|-")
@RULES_OPTION
@click.option("--compact", is_flag=True, help="One line of JSON instead of indented.")
@click.option("--detail", type=DETAIL_CHOICE, default="full", show_default=True, help=DETAIL_HELP)
@ONE_FORMAT_OPTION
@AS_OF_OPTION
@APPROVED_OPTION
@_with_input_options
def evaluate(
    patient: str,
    rules_dir: Path | None,
    compact: bool,
    detail: str,
    input_format: str,
    as_of: datetime | None,
    require_approved: bool,
    include_input: bool,
    mask: tuple[str, ...],
) -> None:
    """Evaluate one patient record and print the result JSON (exit 1 for an invalid record).

    With --input-format fhir the result also says, per field, which FHIR resource filled it (type,
    id, code, date) or why it stayed empty (sources), and records the evaluation date and map."""
    options = {**_evaluate_options(include_input, mask), "detail": detail}
    reader = _fhir_reader(rules_dir, input_format, as_of)
    _, _, result = _evaluate_one(rules_dir, patient, require_approved, options, reader)
    echo(json.dumps(result, ensure_ascii=False, indent=None if compact else 2))
    sys.exit(EXIT_BY_STATUS.get(result["status"], EXIT_CODES["ok"]))


@main.command()
@click.argument("patient", metavar="PATIENT.json|BUNDLE.json|-")
@RULES_OPTION
@ONE_FORMAT_OPTION
@AS_OF_OPTION
@APPROVED_OPTION
@click.option("--all", "show_all", is_flag=True, help="Also show why each rule that does not apply does not.")
@FORMAT_TEXT_JSON
@COLOR_OPTION
def explain(
    patient: str,
    rules_dir: Path | None,
    input_format: str,
    as_of: datetime | None,
    require_approved: bool,
    show_all: bool,
    fmt: str,
    color: str,
) -> None:
    """Explain one patient's result for a clinician: warnings, then advice, each with why (the
    condition in words, with units and where each threshold comes from), its source sentence and
    how it was read; then what the record lacks to decide the rest; for FHIR input, where each
    value came from and why a field stayed empty. --format json for tools.

    PATIENT may also be a stored result (of evaluate or batch, at any detail level) that holds its
    input (--include-input): it is explained after checking that the knowledge base at hand
    reproduces it byte for byte."""
    reader = _fhir_reader(rules_dir, input_format, as_of)
    kb, data, result = _evaluate_one(rules_dir, patient, require_approved, {}, reader, announce=False)
    carried: list[str] = []
    if is_result(data):
        stored = data
        data, result = explained_result(kb, stored, file="standard input" if patient == "-" else patient, line=1)
        for key in FHIR_ONLY:  # FHIR input: the conversion, as the stored result says
            if stored.get(key) is not None:
                result[key] = stored[key]
        carried = carried_fhir(stored)
    doc = {**explanation(kb, data, result), "sources": result.get("sources"), "set_aside": result.get("set_aside")}
    if fmt == "json":
        echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        paint = Palette(wants_colour(color, sys.stdout))
        echo(kb_line(kb.identity))
        echo(explain_text(doc, show_all, paint), color=paint.enabled)
        sources = sources_lines(result, carried)
        if sources:
            echo("\n" + "\n".join(sources))
    sys.exit(EXIT_BY_STATUS.get(result["status"], EXIT_CODES["ok"]))


@main.command()
@click.argument("source", metavar="INPUT|DIR|-")
@click.option(
    "-o",
    "--output",
    type=FilePath(),
    default=None,
    help="Write results here (default, and '-': stdout); for input parts, the directory of the output parts.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, MAX_WORKERS),
    default=None,
    help=f"Worker processes, 1 to {MAX_WORKERS} (default: the number of cores); never more than the input "
    "has chunks of 64 records.",
)
@click.option("--resume", is_flag=True, help="Continue a stopped run: keep OUTPUT's recorded results, do the rest.")
@click.option(
    "--summary",
    "summary_file",
    type=FilePath(dir_okay=False),
    default=None,
    help="Also write the summary as JSON, at the end ('-': stdout, when the results go to -o FILE).",
)
@click.option(
    "--input-format",
    "input_format",
    type=click.Choice(["jsonl", "json", "csv", "fhir-bundles", "fhir-bulk"]),
    default=None,
    help="Input format (default: from the file name, else JSON Lines, or a JSON array if it starts with '[': "
    "JSON Lines again if its first line is a whole JSON value with more lines after it; lines after an "
    "array's closing ']' are read as JSON Lines). "
    "fhir-bundles: one FHIR R4 Bundle per line; fhir-bulk: a Bulk Data export directory (NDJSON files in any "
    "order), one result per Patient and an invalid result naming FILE:LINE for each unusable line.",
)
@AS_OF_OPTION
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--detail",
    type=DETAIL_CHOICE,
    default="standard",
    show_default=True,
    help=DETAIL_HELP + " standard is the default for batch: every rule's outcome, what is missing and "
    "the values compared, at about a fifth of the bytes of full, and full again on demand.",
)
@click.option(
    "--dask",
    "scheduler",
    metavar="SCHEDULER",
    default=None,
    help="Run on the Dask cluster at SCHEDULER (e.g. tcp://host:8786; the dask extra): one task per input "
    "part, INPUT a glob of parts (paths or URLs through fsspec), -o the output directory.",
)
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
    as_of: datetime | None,
    quiet: bool,
    detail: str,
    scheduler: str | None,
    rules_dir: Path | None,
    require_approved: bool,
    include_input: bool,
    mask: tuple[str, ...],
) -> None:
    """Evaluate many patients: JSON Lines (or a JSON array, or CSV with dotted column names) in,
    one JSON result per input record out, in input order.

    Every input record gets exactly one result line, carrying its record number and input line;
    a record that cannot be read (not UTF-8, not JSON, too large or deep, duplicate keys), an
    invalid patient or a record that crashes the engine gets status invalid or error with a code,
    and the run goes on. The output is locked while a run writes it and never the input; a resume
    record beside it (OUTPUT.fsgs-kb.json) lets --resume check the input, knowledge base and
    options before continuing. A summary goes to stderr (and --summary FILE as JSON).

    FHIR: --input-format fhir-bundles reads one Bundle per line; --input-format fhir-bulk reads a
    Bulk Data export directory, groups its resources by patient through an on-disk index (memory
    stays flat) and writes one result per Patient and one invalid result per unusable line (origin
    FILE:LINE; lines found unusable while indexing come first, resources about absent patients last).
    Each result carries the provenance of every field (sources).

    INPUT may be a glob of parts ('data/part-*.jsonl', quoted): each part is evaluated into
    OUTDIR/PART (-o OUTDIR), as a batch of that part alone would write it; locally one part
    after the other, or with --dask one task per part on a Dask cluster, with one summary of
    all parts at the end.
    """
    kb = _load_kb(rules_dir, require_approved)
    click.echo(kb_line(kb.identity), err=True)  # stdout may be the results
    for slower in kb.fallback_warnings(detail)[:1]:  # one line: why this run is slower
        click.echo(format_error(slower), err=True)
    if scheduler is not None or (is_pattern(source) and not os.path.exists(source)):
        options = {**_evaluate_options(include_input, mask), "detail": detail}
        _batch_parts(
            kb, source, output, scheduler, workers, resume, input_format, options, rules_dir, summary_file, quiet
        )
    output, results_to, results_fd = _results_target(source, output)  # a closed stdout: refused before the run
    reader = _fhir_reader(rules_dir, input_format, as_of)
    written: list[tuple[str, str | int]] = []
    if output is not None:
        written += [("output", output), ("output's resume record", output + SIDECAR_SUFFIX)]
    summary_fd = _check_summary(summary_file, results_fd, written, InputFiles.of(source, input_format))
    size = os.path.getsize(source) if source != "-" and os.path.isfile(source) else None
    progress = ProgressLine(size, lambda text: click.echo(text, err=True, nl=False))
    job = BatchJob(
        source=source,
        output=output,
        input_format=input_format,
        workers=workers or min(os.cpu_count() or 1, MAX_WORKERS),
        resume=resume,
        rules_dir=str(kb.location.path),
        options={**_evaluate_options(include_input, mask), "detail": detail},
        progress=progress if not quiet and sys.stderr.isatty() else None,
        fhir=reader,
    )
    summary = run_batch(kb, job, results_to)
    if job.progress is not None:
        progress(summary.records, size or 0, final=True)
    payload = {"kb": kb.identity, **summary.to_dict()}
    text = summary_text(payload, shlex.join(["fsgs-kb", *sys.argv[1:]]))
    click.echo(text.splitlines()[0] if quiet and not summary.interrupted_by else text, err=True)
    _write_summary(summary_file, summary_fd, payload)
    if summary.interrupted_by:
        sys.exit(exit_for_signal(summary.interrupted_by))
    sys.exit(max((EXIT_BY_STATUS.get(s, 0) for s in summary.by_status), default=EXIT_CODES["ok"]))


def _results_target(source: str, output: str | None) -> tuple[str | None, Any, int | None]:
    """(output file, None, None), or (None, stream, its descriptor) for results written to a
    stream: standard output without -o or with `-o -`, and any path naming a descriptor the shell
    opened (/dev/stdout, /dev/fd/N, /proc/self/fd/N), written through it: reopened, it would be
    opened afresh without the shell's O_APPEND (`-o /dev/stdout >> log` truncated the log)."""
    fd = 1 if output is None else standard_stream(output)
    if fd is not None:
        return None, descriptor_binary(fd, output or STDOUT), fd
    return _output_in_directory(source, output), None, None


def _output_in_directory(source: str, output: str | None) -> str | None:
    """`-o DIR` with an existing directory: the results go to DIR/<input file name>, as `cp`
    would put them (the same name a part gets in an output directory)."""
    if output is None or not os.path.isdir(output):
        return output
    if source == "-" or not os.path.isfile(source):
        raise usage_error("output", f"{output} is a directory", hint="name the output file: -o DIR/results.jsonl")
    return part_output(output, source)


def _batch_parts(
    kb: KnowledgeBase,
    source: str,
    outdir: str | None,
    scheduler: str | None,
    workers: int | None,
    resume: bool,
    input_format: str | None,
    options: dict[str, Any],
    rules_dir: Path | None,
    summary_file: str | None,
    quiet: bool = False,
) -> NoReturn:
    """`batch` over input parts, one output part each, locally or on a Dask cluster."""
    from fsgs_kb.engine.batch.dask_bag import connect, run_parts  # deferred: only batch --dask needs Dask

    if outdir is None:
        raise usage_error("parts", "input parts need -o OUTDIR: each part's results go to OUTDIR/PART")
    outdir = outdir.removeprefix("file://")  # a local directory, made and written as a path is
    if scheduler is not None and resume:
        raise usage_error("parts", "--resume is for local runs: with --dask, run the parts again")
    if input_format is not None and input_format.startswith("fhir"):
        raise usage_error("parts", "input parts are JSON Lines, JSON or CSV files; FHIR input runs one at a time")
    if source == "-":
        raise usage_error(
            "parts",
            "input parts are files: standard input cannot be split into parts",
            hint="without --dask, batch - reads standard input",
        )
    parts, warnings = expand_parts(source)
    for warning in warnings:
        click.echo(format_error(warning), err=True)
    check_parts(source, parts, outdir)
    written: list[tuple[str, str | int]] = []
    for part in parts:
        out = part_output(outdir, part)
        written += [("input part", part), ("output part", out), ("output part's resume record", out + SIDECAR_SUFFIX)]
    summary_fd = _check_summary(summary_file, None, written)
    if scheduler is None:
        parts = local_parts(parts)
    if scheduler is not None:  # the workers open them: from their own working directory, not ours
        parts = [p if is_url(p) else os.path.abspath(p) for p in parts]
        outdir = outdir if is_url(outdir) else os.path.abspath(outdir)
    client = connect(scheduler) if scheduler is not None else None  # before OUTDIR is made
    try:
        prepare_outdir(outdir)
    except BaseException:
        if client is not None:
            client.close()
        raise
    if scheduler is not None:
        rules = os.path.abspath(kb.location.path)
        run = run_parts(client, scheduler, parts, outdir, rules, options, input_format)
    else:
        job = BatchJob(
            source=source,
            input_format=input_format,
            workers=workers or min(os.cpu_count() or 1, MAX_WORKERS),
            resume=resume,
            rules_dir=str(kb.location.path),
            options=options,
        )
        run = run_parts_locally(kb, job, parts, outdir)
    payload = {"kb": kb.identity, **run.summary()}
    text = summary_text(payload, shlex.join(["fsgs-kb", *sys.argv[1:]]))
    click.echo(text.splitlines()[0] if quiet and not run.interrupted_by else text, err=True)
    click.echo(f"{len(payload['parts'])} part(s) written to {outdir}", err=True)
    _write_summary(summary_file, summary_fd, payload)
    if run.interrupted_by:
        sys.exit(exit_for_signal(run.interrupted_by))
    sys.exit(max((EXIT_BY_STATUS.get(s, 0) for s in payload["by_status"]), default=EXIT_CODES["ok"]))


def _check_summary(
    path: str | None,
    results_fd: int | None,
    written: list[tuple[str, str | int]],
    inputs: InputFiles | None = None,
) -> int | None:
    """Before the run: refuse a --summary that would overwrite what the run reads or writes (the
    input, any file of a Bulk Data export, the output, its resume record: by resolved path, and
    by device and inode) or mix with the results on standard output, and one that could not be
    written at the end (to a standard output that was closed before the command started, say);
    nothing is written yet. Returns the descriptor the summary goes to (`-`,
    /dev/stdout, /dev/fd/N), or None for a file."""
    if path is None:
        return None
    fd = standard_stream(path)
    if fd == 1:
        stdout_binary()  # closed before the command started: refused now, as every command refuses it
    clash = inputs.clash(path if fd is None else fd) if inputs is not None else None
    if clash is not None:
        raise usage_error("summary", f"--summary {path} is {clash}", hint="write the summary to another file")
    if fd is not None and fd == results_fd:
        raise usage_error(
            "summary",
            f"--summary {path} is where the results go ({STDOUT if fd == 1 else path}): the two would mix",
            hint="write the summary to a file, or the results to one with -o FILE",
        )
    if results_fd is not None:
        written = [*written, ("file the results go to", results_fd)]
    for what, other in written:
        if same_file(path if fd is None else fd, other):
            name = other if isinstance(other, str) else {0: "standard input", 1: STDOUT}.get(other, f"/dev/fd/{other}")
            raise usage_error(
                "summary",
                f"--summary {path} is the {what} ({name}): writing the summary there would destroy it",
                hint="write the summary to another file",
            )
    with writing(path, "the summary", "cli.summary"):
        if fd is not None:
            os.fstat(fd)  # open (`3>file`), or "Bad file descriptor" now rather than after the run
    if fd is None:
        check_writable(path, "the summary", "cli.summary")
    return fd


def _write_summary(path: str | None, fd: int | None, payload: dict[str, Any]) -> None:
    """Write the --summary checked by `_check_summary`, at the end of the run: to standard output,
    through the descriptor it names, or replacing the file whole (a failed run, or a failure to
    write it, leaves the previous summary as it was)."""
    if path is None:
        return
    text = json.dumps(payload, indent=2)
    if fd == 1:
        echo(text)
    elif fd is not None:
        with writing(path, "the summary", "cli.summary"), descriptor_binary(fd, path) as stream:
            stream.write(text.encode())
    else:
        replace_file(path, text, "the summary", "cli.summary")


def _refuse_inside_kb(path: Path, kb: KnowledgeBase, option: str, code: str) -> None:
    """A report path in the rules directory of the knowledge base at hand (through links too) would
    overwrite one of its files, or add one that the next load reads (hostile sweep g: `test
    --junit-xml RULES/recommendations/X.yaml` replaced a rule and said "passed"): refused before
    the run."""
    root = os.path.realpath(kb.location.path)
    target = os.path.realpath(path)
    if target == root or target.startswith(root.rstrip(os.sep) + os.sep):
        raise KBErrors(
            [
                KBError(
                    code,
                    f"{option} names a path inside the knowledge base under test ({kb.location.path})",
                    file=str(path),
                    hint="write the report outside the rules directory, e.g. --junit-xml junit.xml",
                )
            ]
        )


@main.command(name="test")
@RULES_OPTION
@click.option(
    "-k",
    "patterns",
    multiple=True,
    metavar="EXPRESSION",
    help="Run only cases whose id (RULE-ID::case) matches, as pytest -k: words match anywhere in the id "
    "(ignoring case; * and ? are wildcards), combined with and, or, not and parentheses, e.g. "
    "-k 'DOSE and not WITHIN'. Repeated, any of them.",
)
@click.option("-v", "--verbose", "verbose", count=True, help="Also list every passing case.")
@click.option("-q", "--quiet", "quiet", count=True, help="Failures without the rules' conditions.")
@click.option("-x", "--exitfirst", "exitfirst", is_flag=True, help="Stop at the first failing case.")
@click.option(
    "--junit-xml",
    "junit_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a JUnit XML report here (for CI).",
)
@click.option("--coverage", is_flag=True, help="Also report rule outcome and threshold boundary coverage.")
@FORMAT_TEXT_JSON
@COLOR_OPTION
def test_command(
    rules_dir: Path | None,
    patterns: tuple[str, ...],
    verbose: int,
    quiet: int,
    exitfirst: bool,
    junit_file: Path | None,
    coverage: bool,
    fmt: str,
    color: str,
) -> None:
    """Run the scenario tests in RULES/tests/*.yaml.

    Exit 1 when a case fails or (with --coverage) coverage is incomplete; 5 when no case is
    selected (as pytest).
    """
    from fsgs_kb.engine.report.junit import junit_xml  # deferred: test --junit-xml only

    kb = _load_kb(rules_dir)
    tests_dir = kb.location.path / "tests"
    cases = load_cases(tests_dir, rule_ids=kb.model.rules) if tests_dir.is_dir() else []
    chosen = select(cases, patterns)
    if fmt == "text":
        echo(kb_line(kb.identity))
    if not chosen:
        what = f"-k {' -k '.join(patterns)}" if patterns else f"(no cases in {tests_dir})"
        click.echo(f"no scenario case matches {what}: 0 cases selected", err=True)
        sys.exit(EXIT_CODES["no_tests"])
    if junit_file is not None:
        _refuse_inside_kb(junit_file, kb, "--junit-xml", "cli.junit")
    results = run(kb, chosen, stop_at_first_failure=exitfirst)
    cover = measure_coverage(kb, chosen, results) if coverage else None
    if junit_file is not None:
        write_report(str(junit_file), junit_xml(results, kb.identity).decode("utf-8"), "the report", "cli.junit")
    if fmt == "json":
        echo(json.dumps({"kb": kb.identity, **report_json(results, cover)}, indent=2, ensure_ascii=False))
    else:
        paint = Palette(wants_colour(color, sys.stdout))
        echo(report_text(kb, results, patterns, verbose - quiet, paint, selected=len(chosen)), color=paint.enabled)
        if cover is not None:
            echo(coverage_text(kb, cover))
    failed = any(not r.passed for r in results) or (cover is not None and not cover.complete)
    sys.exit(EXIT_CODES["findings"] if failed else EXIT_CODES["ok"])


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
    from fsgs_kb.engine.fhir.checkmap import load_checked_map, map_path  # deferred: FHIR input and docs only
    from fsgs_kb.engine.report.handbook import Handbook, write_site  # deferred: docs only
    from fsgs_kb.engine.report.markdown import markdown  # deferred: docs only

    kb = _load_kb(rules_dir)
    echo(kb_line(kb.identity))
    book = Handbook(kb.model, kb.fingerprint, load_checked_map(map_path(kb.location.path)))
    with writing(str(out), "the handbook", "cli.docs"):
        if fmt == "md":
            target = out / "handbook.md" if out.is_dir() else out
            target.parent.mkdir(parents=True, exist_ok=True)
            # replaced, never written through a link; but a stream named as the file (/dev/stdout) is
            # written in place: renamed over, /dev/stdout itself would be replaced (output.write_report)
            write_report(str(target), markdown(book), "the handbook", "cli.docs")
        else:
            site = write_site(book, out)
    if fmt == "md":
        echo(f"wrote {target}")
        return
    echo(f"wrote {len(site.written)} pages to {out} (open {out / 'index.html'})")
    if site.removed:
        names = ", ".join(str(p.relative_to(out)) for p in site.removed)
        echo(f"removed {len(site.removed)} page(s) of the handbook written there before, gone from this one: {names}")
    if site.unknown:
        shown = ", ".join(str(p.relative_to(out)) for p in site.unknown[:5]) + (" …" if len(site.unknown) > 5 else "")
        click.echo(
            format_error(
                KBError(
                    "docs.unknown_pages",
                    f"{len(site.unknown)} HTML page(s) in {out} were not written by fsgs-kb docs: {shown}",
                    hint="if they are an older handbook's pages, remove them: they may hold advice "
                    "this knowledge base no longer gives",
                    severity="warning",
                )
            ),
            err=True,
        )


@main.command()
@RULES_OPTION
@click.option("--rule", "rule_id", default=None, metavar="ID", help="Only this rule.")
@click.option("--format", "fmt", type=click.Choice(["text", "md", "json"]), default="text", show_default=True)
def audit(rules_dir: Path | None, rule_id: str | None, fmt: str) -> None:
    """Where every rule comes from: quotes, parameters and their provenance, history, coverage.

    Anything not verified against a primary document is flagged.
    """
    from fsgs_kb.engine.audit.audit import audit_report  # deferred: only audit needs it
    from fsgs_kb.engine.report.audit import audit_text  # deferred: the audit commands only

    kb = _load_kb(rules_dir)
    if rule_id is not None and rule_id not in kb.model.rules:
        hint = did_you_mean(rule_id, set(kb.model.rules))
        raise click.BadParameter(f"no rule {rule_id}" + (f" ({hint})" if hint else ""), param_hint="--rule")
    report = audit_report(kb, rule_id)
    report["kb"] = kb.identity
    if fmt == "text":
        echo(kb_line(kb.identity))
    echo(json.dumps(report, indent=2, ensure_ascii=False) if fmt == "json" else audit_text(report, fmt == "md"))


def _records(source: str, patients: bool = False) -> Iterator[Record]:
    """The records of a results or patients file, through the bounded reader. A patients file
    named .csv is read as batch reads it (read as JSON, each row was a record that is no JSON)."""
    stream, path = open_input(source)
    try:
        records = read_csv(stream) if patients and sniff_format(path, b"") == "csv" else read_documents(stream)
        yield from in_input(records, source)
    finally:
        if path is not None:
            stream.close()


def _patients(source: str) -> Inputs:
    """The records of a patients file by input hash, read as batch and as evaluate read it
    (engine/read/patients.py): a CSV file read as JSON, a JSON array read as JSON Lines, gave
    records no result was made from."""
    stream, path = open_input(source)
    try:
        patients = PatientsFile(stream, path)
        index = index_inputs(in_input(patients.records(), source))
        index.add_whole(patients.whole())
    finally:
        if path is not None:
            stream.close()
    return index


def _results(source: str) -> Iterator[Record]:
    """The records of a results file; KBErrors (exit 2) when it holds none: an empty file is not
    a result, and checking nothing must not pass as a check."""
    empty = True
    for record in _records(source):
        empty = False
        yield record
    if empty:
        where = "standard input" if source == "-" else "the file"
        raise KBErrors(
            [
                KBError(
                    "input.empty",
                    f"no result in {where}: it is empty",
                    file=source,
                    hint="give a result written by fsgs-kb evaluate or batch",
                )
            ]
        )


@main.command()
@click.argument("result_file", metavar="RESULT.json|-")
@click.option(
    "--input",
    "input_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="The patients the results were made from, matched by input_sha256, to re-derive each result.",
)
@RULES_OPTION
def trace(result_file: str, input_file: str | None, rules_dir: Path | None) -> None:
    """Trace a decision (from evaluate or batch): advice → rule → values → provenance → source.

    Every field is checked against the knowledge base, and the whole result re-derived when its
    input is at hand. Exit 0 when every result agrees with the knowledge base at hand (the
    trace is exact when it was also re-derived), 1 for any mismatch, another knowledge base or
    a line that is not a result, 2 when the file cannot be read or holds no result at all.
    """
    from fsgs_kb.engine.report.audit import trace_text  # deferred: the audit commands only

    kb = _load_kb(rules_dir)
    echo(kb_line(kb.identity))
    inputs = _patients(input_file) if input_file else None
    agrees = True
    places = Places(inputs)
    for i, record in enumerate(_results(result_file)):
        value, problem = record_value(record)
        found = (
            trace_result(kb, value, inputs) if problem is None else Trace(result={}, same_kb=False, malformed=[problem])
        )
        # a malformed result is named by its place in the file (the checks see one result, not where it lies)
        found.malformed = [p if p.file else replace(p, file=result_file, line=record.line) for p in found.malformed]
        misplaced = places.problem(found.result) if not found.malformed else None
        if misplaced is not None:  # a duplicated, reordered or renumbered line of a batch's results
            found.mismatches.append(misplaced.message)
        echo(("\n" if i else "") + trace_text(kb, found))
        agrees &= found.consistent
    sys.exit(EXIT_CODES["ok"] if agrees else EXIT_CODES["findings"])


@main.command()
@click.argument("old")
@click.argument("new")
@PATH_OPTION
@FORMAT_TEXT_JSON
def diff(old: str, new: str, rules_path: str, fmt: str) -> None:
    """Semantic diff of two knowledge bases (each a directory or git:REV), with versioning checks.

    A rule's meaning is its own YAML and every parameter and derived value it reaches (value,
    unit, boundary, provenance, definition): when any of them changed, the rule's version must go
    up with a history entry, and the knowledge base's with a changelog entry. The FHIR map
    (fhir-map.yaml) is versioned on its own: any change to what it says (codes, settings,
    sources, conversions, medications, fields) needs a higher map_version.

    Exit 1 when something changed without those bumps; 2 when a side cannot be read, or NEW does
    not validate, its FHIR map included (OLD is compared as long as it loads: a check added since
    may reject it, and its map is only parsed).
    """
    from fsgs_kb.engine.audit.diff import compare, load_side, temporary_workdir  # deferred: diff and impact only
    from fsgs_kb.engine.report.audit import diff_text  # deferred: the audit commands only

    with temporary_workdir() as work:
        sides = [load_side(old, rules_path, Path(work)), load_side(new, rules_path, Path(work), check_map=True)]
        if sides[0].report.load.errors or not sides[0].report.load.model.rules:
            fail(sides[0].report.errors, note=f"{sides[0].label} cannot be read")
        if not sides[0].report.ok:
            click.echo(
                f"note: {sides[0].label} has {len(sides[0].report.errors)} problem(s) under today's checks; "
                "compared as it is",
                err=True,
            )
        if not sides[1].report.ok:
            fail(sides[1].report.errors, note=f"{sides[1].label} does not validate")
        result = compare(*sides)
        if fmt == "json":
            payload = {
                "old": _side_identity(sides[0]),
                "new": _side_identity(sides[1]),
                "changes": result.changes,
                "violations": result.violations,
            }
            echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
        else:
            echo(diff_text(sides[0], sides[1], result))
    sys.exit(EXIT_CODES["findings"] if result.violations else EXIT_CODES["ok"])


def _side_identity(side: KBSide) -> dict[str, Any]:
    manifest, fmap = side.report.load.model.manifest, side.fhir_map
    return {
        "id": manifest.get("id"),
        "version": manifest.get("version"),
        "fingerprint": side.fingerprint,
        "fhir_map": None if fmap is None else {"version": fmap.version, "sha256": fmap.sha256},
        "path": side.label,
    }


@main.command()
@click.argument("results_file", metavar="RESULTS.jsonl", required=False)
@click.option(
    "--input",
    "input_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="The patients the results were made from (JSON Lines, a JSON array, or CSV when named .csv), "
    "matched by input_sha256.",
)
@click.option(
    "--decision-log",
    "decision_log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Replay the decisions of a CDS Hooks service's decision log (SQLite) instead of a results file.",
)
@RULES_OPTION
@FORMAT_TEXT_JSON
def replay(
    results_file: str | None, input_file: str | None, decision_log: Path | None, rules_dir: Path | None, fmt: str
) -> None:
    """Re-evaluate recorded decisions with the knowledge base at hand: identical, changed, or input missing.

    Give a results file (from evaluate --include-input or batch), or --decision-log DB. Decisions
    in a log made by a knowledge base with another fingerprint are flagged and not replayed.
    Exit 0 when every decision comes back identical, 1 otherwise, 2 when the results file cannot
    be read or holds no result at all.
    """
    from fsgs_kb.engine.report.audit import replay_text  # deferred: the audit commands only
    from fsgs_kb.engine.report.cds import replay_log_text  # deferred: decision-log commands only
    from fsgs_kb.service.decisionlog import replay_log, replay_summary  # deferred: decision-log commands only (sqlite3)

    if (results_file is None) == (decision_log is None):
        raise usage_error("replay", "give either RESULTS.jsonl or --decision-log DB", hint="not both, not neither")
    if decision_log is not None and input_file:
        raise usage_error("replay", "--input goes with RESULTS.jsonl: a decision log stores each input")
    kb = _load_kb(rules_dir)
    if decision_log is not None:
        reports = replay_log(kb, decision_log)
        counts = replay_summary(reports)
        if fmt == "json":
            echo(json.dumps({"summary": counts, "decisions": reports}, indent=2, ensure_ascii=False))
        else:
            echo(replay_log_text({"id": kb.id, "version": kb.version, "fingerprint": kb.fingerprint}, reports, counts))
        same = all(r["verdict"] in ("identical", "not_evaluated") for r in reports)
        sys.exit(EXIT_CODES["ok"] if same else EXIT_CODES["findings"])
    index: dict[str, Record] = _patients(input_file) if input_file else {}
    reports = list(run_replay(kb, _results(str(results_file)), index))
    if fmt == "json":
        payload = {"kb": kb.identity, "summary": replay_counts(reports), "decisions": reports}
        echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        echo(kb_line(kb.identity))
        echo(replay_text(kb, reports))
    identical = all(r["verdict"] == "identical" for r in reports)
    sys.exit(EXIT_CODES["ok"] if identical else EXIT_CODES["findings"])


@main.command(name="feedback-report")
@click.argument("decision_log", metavar="DB", type=click.Path(dir_okay=False, path_type=Path))
@FORMAT_TEXT_JSON
def feedback_report(decision_log: Path, fmt: str) -> None:
    """Per rule and version: how often the service's cards were accepted or overridden, and why."""
    from fsgs_kb.engine.report.cds import feedback_text  # deferred: decision-log commands only
    from fsgs_kb.service.decisionlog import feedback_summary  # deferred: decision-log commands only (sqlite3)

    summary = feedback_summary(decision_log)
    echo(json.dumps(summary, indent=2, ensure_ascii=False) if fmt == "json" else feedback_text(summary))


@main.command()
@click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The service's YAML configuration (schema/cds-config.schema.json).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
def serve(config_file: Path, host: str, port: int, workers: int) -> None:
    """Run the CDS Hooks 2.0 service (needs the optional extra: pip install 'fsgs-kb[cds]').

    Every call but CORS preflight, /healthz and the handbook pages needs a JWT from a trusted
    issuer; every hook call and feedback is written to the decision log.
    """
    from fsgs_kb.service.config import load_config  # deferred: serve only
    from fsgs_kb.service.run import serve as run_service  # deferred: serve only

    stopped = run_service(load_config(config_file), host, port, workers)
    if stopped is not None:  # a clean shutdown that was asked for: its exit code, no error line
        sys.exit(exit_for_signal(stopped))


@main.command()
@click.argument("old")
@click.argument("new")
@click.argument("patients", metavar="PATIENTS.jsonl")
@PATH_OPTION
@FORMAT_TEXT_JSON
def impact(old: str, new: str, patients: str, rules_path: str, fmt: str) -> None:
    """Evaluate a cohort under two knowledge bases (directories or git:REV): per rule, which
    patients newly fire, stop firing, or change to or from undetermined. Exit 1 when some input
    records are not valid patients (they are listed, not compared)."""
    from fsgs_kb.engine.audit.diff import materialize, temporary_workdir  # deferred: diff and impact only
    from fsgs_kb.engine.report.audit import impact_text  # deferred: the audit commands only

    with temporary_workdir() as work:
        old_kb, new_kb = (load(materialize(spec, rules_path, Path(work))) for spec in (old, new))
        report = run_impact(old_kb, new_kb, _records(patients, patients=True))
    echo(json.dumps(report, indent=2, ensure_ascii=False) if fmt == "json" else impact_text(report))
    sys.exit(EXIT_CODES["findings"] if report["invalid"] else EXIT_CODES["ok"])


@main.group(name="export", cls=Group, epilog=EXIT_HELP)
def export() -> None:
    """Export the knowledge base for other systems."""


@export.command(name="fhir")
@RULES_OPTION
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write the Bundle into.",
)
@click.option(
    "--base-url",
    default=None,
    metavar="URL",
    help="Canonical base of the exported resources (default: urn:fsgs-kb:KB-ID).",
)
def export_fhir(rules_dir: Path | None, out: Path, base_url: str | None) -> None:
    """Write a FHIR R4 Bundle for CQL-based systems: one PlanDefinition (eca-rule) per rule, with its
    advice, citations (DOI, PMID, verbatim quote), triggers patient-view and order-sign, its
    condition in plain English and its input data requirements (codes of the FHIR map), and one
    Library with the parameters and data requirements."""
    from fsgs_kb.engine.fhir.checkmap import load_checked_map, map_path  # deferred: FHIR input and docs only
    from fsgs_kb.engine.report.fhir_export import fhir_bundle  # deferred: export fhir only

    kb = _load_kb(rules_dir)
    fmap = load_checked_map(map_path(kb.location.path))
    bundle = fhir_bundle(kb.model, fmap, base_url.rstrip("/") if base_url else None)
    target = out / f"{kb.id}-{kb.version}.fhir-bundle.json"
    with writing(str(out), "the export", "cli.export"):
        out.mkdir(parents=True, exist_ok=True)
    with writing(str(target), "the export", "cli.export"):  # as docs -o writes: what is at the name is replaced
        write_replacing(target, json.dumps(bundle, indent=2, ensure_ascii=False) + "\n")
    rules = len(bundle["entry"]) - 1
    echo(f"wrote {target}: 1 Library, {rules} PlanDefinitions (FHIR R4)")


@main.group(name="cache", cls=Group, epilog=EXIT_HELP)
def cache_group() -> None:
    """Inspect or clear the cache of validated knowledge bases.

    The cache is $FSGS_KB_CACHE (an absolute path), else $XDG_CACHE_HOME/fsgs-kb, else
    ~/.cache/fsgs-kb (FSGS_KB_CACHE=off, in any case, or a relative path turns it off). It is
    bounded: after each new entry the least recently used are removed beyond 64 entries or 64 MiB.
    """


@cache_group.command(name="info")
@FORMAT_TEXT_JSON
def cache_info(fmt: str) -> None:
    """Where the cache is, whether it is on, its entries, bytes and limits."""
    state = cache_state()
    echo(json.dumps(state.as_json(), indent=2) if fmt == "json" else cache_info_text(state))


@cache_group.command(name="clear")
def cache_clear() -> None:
    """Remove every entry of the cache (and leftovers of an older format).

    The secret, other users' files, names that are not the cache's own and temporary files of the
    last hour (perhaps a concurrent writer's) are left alone.
    """
    echo(cache_clear_text(clear_cache()))


@main.command(name="compile")
@RULES_OPTION
def compile_command(rules_dir: Path | None) -> None:
    """Print the compiled durable-rules rulesets (JSON ruleset form), level by level."""
    kb = _load_kb(rules_dir)
    click.echo(kb_line(kb.identity), err=True)  # stdout is the rulesets
    echo(json.dumps(kb.compiled.as_json(), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
