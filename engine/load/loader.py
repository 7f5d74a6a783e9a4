"""Read a rules directory into a KnowledgeBaseModel, collecting every problem on the way.

Layout of a knowledge base:
    kb.yaml                      manifest: id, version, changelog
    sources/*.yaml               the cited publication(s), sentence by sentence
    parameters.yaml              thresholds with provenance
    derived.yaml                 values computed from the record
    recommendations/*.yaml       one rule per file
A broken file never hides the problems of another: each is loaded and checked on its own; so is each
derived value of derived.yaml (one that does not load is left out, and what reads it is not told
that its name is unknown).
Every file is read through engine.load.files: regular files inside the rules directory only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsgs_kb.engine.errors import KBError, KBErrors, pointer_join
from fsgs_kb.engine.load.conditions import ConditionParser
from fsgs_kb.engine.load.files import RulesFiles, exists, misnamed_error, misnamed_yaml, yaml_files
from fsgs_kb.engine.load.fingerprint import kb_fingerprint
from fsgs_kb.engine.load.schemas import load_schema, schema_errors, schema_regex
from fsgs_kb.engine.load.templating import placeholders, render
from fsgs_kb.engine.load.yamlsafe import Located, load_yaml
from fsgs_kb.engine.model import Condition, Derived, KnowledgeBaseModel, Parameter, Quote, Rule, ScopeCase, Source
from fsgs_kb.engine.suggest import did_you_mean


@dataclass
class LoadResult:
    model: KnowledgeBaseModel
    docs: dict[str, Located] = field(default_factory=dict)
    errors: list[KBError] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)  # parts that could not be loaded: their names are unknown
    relative: dict[str, str] = field(default_factory=dict)  # display path -> path inside the rules directory
    # derived values that are written but did not load, for errors reported here: their name is
    # known, so what reads them is not told that it reads an unknown derived value
    broken_derived: set[str] = field(default_factory=set)

    @property
    def fingerprint(self) -> str:
        """The content fingerprint, the same from whichever directory the files were read."""
        return kb_fingerprint(self.docs, self.model.root, self.relative)


def display_path(path: Path) -> str:
    """Paths as an editor can click them: relative to the working directory when inside it.
    Symbolic links are not resolved: a problem is shown where the editor sees the file."""
    absolute = Path(os.path.abspath(path))
    try:
        return os.path.relpath(absolute) if absolute.is_relative_to(Path.cwd()) else str(absolute)
    except (OSError, ValueError):
        return str(absolute)


class _Reader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = RulesFiles(root)
        self.result = LoadResult(KnowledgeBaseModel(display_path(root), {}))

    def read(self, path: Path, schema: str, skip: Callable[[str], bool] = lambda p: False) -> Located | None:
        display = display_path(path)
        try:
            doc = load_yaml(path, display, self.files)
        except KBErrors as exc:
            self.result.errors.extend(exc.errors)
            return None
        self.result.docs[display] = doc
        self.result.relative[display] = Path(
            os.path.relpath(os.path.abspath(path), os.path.abspath(self.root))
        ).as_posix()
        if not isinstance(doc.data, dict):
            held = "a list" if isinstance(doc.data, list) else f"the single value {str(doc.data)[:40]!r}"
            self.result.errors.append(
                doc.error(
                    "schema.invalid",
                    f"the file must hold a mapping (it holds {held})",
                    "",
                    f"write the file's fields as 'key: value' lines starting at column 1, as "
                    f"schema/{schema}.schema.json describes (no '- ' before the first key)",
                )
            )
            return None
        problems = schema_errors(schema, doc, skip)
        self.result.errors.extend(problems)
        return doc if not problems else None

    def parser(self, doc: Located, rule_id: str | None = None) -> ConditionParser:
        return ConditionParser(doc, rule_id)

    def finish(self, parser: ConditionParser) -> None:
        self.result.errors.extend(parser.errors)

    def required(self, name: str, code: str, what: str) -> Path | None:
        """The path of a file every knowledge base has, or None after reporting that it is missing."""
        path = self.root / name
        if exists(path):
            return path
        stem = name.removesuffix(".yaml")
        misnamed = [p.name for p in misnamed_yaml(self.root) if p.stem == stem]
        hint = f"rename {misnamed[0]} to {name}: only files named *.yaml are read" if misnamed else _HINT
        self.result.errors.append(
            KBError(code, f"no {name} in the rules directory ({what})", display_path(self.root), hint=hint)
        )
        return None

    def files_of(self, folder: str) -> list[Path]:
        """The YAML files of one folder, after reporting each file there that is not read for its
        name (`CSA-TROUGH-HIGH.yml`)."""
        self.result.errors += [misnamed_error(p, display_path(p)) for p in misnamed_yaml(self.root / folder)]
        return yaml_files(self.root / folder)


_HINT = "a knowledge base has kb.yaml, parameters.yaml, derived.yaml, sources/ and recommendations/ (rules/README.md)"


def _quote(data: dict[str, Any], doc: Located, pointer: str) -> Quote:
    return Quote(data["source"], data["sentence"], data["quote"], doc.file, pointer)


SCOPE_OUTCOMES = ("met", "not_met", "undetermined")


def _in_scope_condition(pointer: str) -> bool:
    """The conditions of kb.yaml's scope cases are checked by the condition parser."""
    parts = pointer.split("/")
    return len(parts) > 4 and parts[1] == "scope" and parts[4] == "when"


def _load_manifest(reader: _Reader) -> None:
    path = reader.required("kb.yaml", "kb.missing_manifest", "its id, version and changelog")
    if path is None:
        return
    doc = reader.read(path, "manifest", skip=_in_scope_condition)
    if doc is None:
        return
    reader.result.model.manifest = doc.data
    parser = reader.parser(doc)
    cases = []
    for outcome in SCOPE_OUTCOMES:
        for i, case in enumerate(doc.data.get("scope", {}).get(outcome, ())):
            pointer = pointer_join("/scope", outcome, i)
            when = parser.condition(case["when"], pointer + "/when") if "when" in case else None
            cases.append(
                ScopeCase(
                    outcome=outcome,
                    when=when,
                    reason=" ".join(case["reason"].split()),
                    undetermined_needs=tuple(case.get("undetermined_needs", ())),
                    file=doc.file,
                    pointer=pointer,
                )
            )
    reader.finish(parser)
    if not parser.errors:
        reader.result.model.scope = tuple(cases)


def _load_sources(reader: _Reader) -> None:
    for path in reader.files_of("sources"):
        doc = reader.read(path, "source")
        if doc is None:
            reader.result.failed.add("source")
            continue
        data = doc.data
        record = {k: v for k, v in data.items() if k not in ("sentences", "not_encoded")}
        source = Source(data["id"], record, dict(data["sentences"]), dict(data.get("not_encoded", {})), doc.file)
        if source.id in reader.result.model.sources:
            reader.result.errors.append(
                doc.error("source.duplicate_id", f"source id '{source.id}' is used twice", "/id")
            )
        reader.result.model.sources[source.id] = source


def _load_parameters(reader: _Reader) -> None:
    path = reader.required("parameters.yaml", "kb.missing_file", "the thresholds rules compare with")
    doc = reader.read(path, "parameters") if path is not None else None
    if doc is None:
        reader.result.failed.add("param")
        return
    for name, data in doc.data["parameters"].items():
        kind = next(iter(data["provenance"]))
        reader.result.model.parameters[name] = Parameter(
            name=name,
            title=data["title"],
            value=data["value"],
            unit=data["unit"],
            boundary=data.get("boundary"),
            provenance_kind=kind,
            provenance=data["provenance"][kind],
            note=data.get("note"),
            file=doc.file,
            pointer=pointer_join("/parameters", name),
            shapes=tuple(next(iter(ref.items())) for ref in data.get("shapes", ())),
        )


def _in_derived_expression(pointer: str) -> bool:
    """Conditions and expressions of derived values are checked by the condition parser."""
    parts = pointer.split("/")
    return (len(parts) > 3 and parts[3] in ("condition", "value")) or (
        len(parts) > 5 and parts[3] == "cases" and parts[5] in ("when", "value")
    )


def _load_derived(reader: _Reader) -> None:
    path = reader.required("derived.yaml", "kb.missing_file", "the values computed from the record")
    doc = reader.read(path, "derived", skip=_in_derived_expression) if path is not None else None
    if doc is None:
        reader.result.failed.add("derived")
        return
    for name, data in doc.data["derived"].items():
        derived = _derived(reader, doc, name, data)
        if derived is None:
            reader.result.broken_derived.add(name)
        else:
            reader.result.model.derived[name] = derived


def _derived_form_fix(data: dict[str, Any], forms: Sequence[str]) -> str:
    """What is missing or doubled in a derived value, named."""
    missing = [key for key in ("title", "unit") if not isinstance(data.get(key), str)]
    if missing:
        return f"add {' and '.join(missing)} as text (unit: none for a value without one, e.g. a yes/no)"
    if forms:
        return f"keep one of {', '.join(forms)}; make the other a derived value of its own"
    return "add condition: (a yes/no), value: (arithmetic) or cases: (a category)"


def _derived(reader: _Reader, doc: Located, name: str, data: dict[str, Any]) -> Derived | None:
    """One derived value, judged by its own errors only (None after reporting them)."""
    base = pointer_join("/derived", name)
    forms = [k for k in ("condition", "value", "cases") if k in data]
    if len(forms) != 1 or not isinstance(data.get("title"), str) or not isinstance(data.get("unit"), str):
        reader.result.errors.append(
            doc.error(
                "derived.form",
                f"derived value '{name}' needs a title, a unit and exactly one of condition, value, cases",
                base,
                _derived_form_fix(data, forms),
            )
        )
        return None
    parser = reader.parser(doc)
    condition = parser.condition(data["condition"], base + "/condition") if "condition" in data else None
    value = parser.expression(data["value"], base + "/value") if "value" in data else None
    cases = tuple(
        (
            parser.condition(c.get("when"), pointer_join(base, "cases", i, "when")),
            parser.expression(c.get("value"), pointer_join(base, "cases", i, "value")),
        )
        for i, c in enumerate(data.get("cases", []))
        if isinstance(c, dict)
    )
    reader.finish(parser)
    if parser.errors or any(c is None or v is None for c, v in cases):
        return None
    return Derived(
        name=name,
        title=_Templates(reader, doc, None)(data["title"], pointer_join(base, "title")),
        unit=data["unit"],
        condition=condition,
        value=value,
        cases=cases,  # type: ignore[arg-type]
        file=doc.file,
        pointer=base,
    )


def _owners(read: list[tuple[Path, Located, Condition]]) -> dict[str, str]:
    """The file each rule id belongs to when several files use it: the one named after it (a rule
    copied to make a new one, its id left as it was, is the copy, whatever its name sorts as),
    else the first."""
    owners: dict[str, str] = {}
    for path, doc, _ in read:
        rule_id = doc.data["id"]
        if rule_id not in owners or (path.stem == rule_id and Path(owners[rule_id]).stem != rule_id):
            owners[rule_id] = doc.file
    return owners


def _duplicate_hint(path: Path, rule_id: str) -> str:
    if path.stem != rule_id and schema_regex(load_schema("rule")["properties"]["id"]["pattern"]).search(path.stem):
        return f"this file is named {path.name}: give it id {path.stem}; ids are stable forever"
    return "give each rule its own id; ids are stable forever"


def _load_rules(reader: _Reader) -> None:
    read: list[tuple[Path, Located, Condition]] = []
    files = reader.files_of("recommendations")
    if not files:  # said once, here: every scenario naming a rule would say it again (205 times)
        folder = reader.root / "recommendations"
        reader.result.errors.append(
            KBError(
                "kb.no_rules",
                f"no rule files in recommendations/{'' if folder.is_dir() else ' (the folder is missing)'}: "
                "a knowledge base without rules advises nothing",
                file=display_path(folder),
                hint="put each rule in recommendations/ID.yaml, one rule per file (rules/README.md)",
            )
        )
        reader.result.failed.add("rule")
    for path in files:
        doc = reader.read(path, "rule", skip=lambda p: p == "/when" or p.startswith("/when/"))
        if doc is None:
            reader.result.failed.add("rule")
            continue
        parser = reader.parser(doc, doc.data["id"])
        when = parser.condition(doc.data["when"], "/when")
        reader.finish(parser)
        if when is None:
            reader.result.failed.add("rule")
            continue
        read.append((path, doc, when))
    owners = _owners(read)
    for path, doc, when in read:
        data = doc.data
        if owners[data["id"]] != doc.file:
            reader.result.errors.append(
                doc.error(
                    "rule.duplicate_id",
                    f"rule id '{data['id']}' is already used by {owners[data['id']]}",
                    "/id",
                    _duplicate_hint(path, data["id"]),
                    rule_id=data["id"],
                )
            )
            continue
        text = _Templates(reader, doc, data["id"])
        reader.result.model.rules[data["id"]] = Rule(
            id=data["id"],
            version=data["version"],
            status=data["status"],
            title=text(data["title"], "/title"),
            kind=data["kind"],
            when=when,
            says=text(data["says"], "/says"),
            citations=tuple(
                _quote(c, doc, pointer_join("/citations", i)) for i, c in enumerate(data.get("citations", []))
            ),
            evidence=_quote(data["evidence"], doc, "/evidence"),
            interpretation=tuple(
                text(note, pointer_join("/interpretation", i)) for i, note in enumerate(data.get("interpretation", []))
            ),
            history=tuple(data["history"]),
            approved_by=data.get("approved_by"),
            approved_on=data.get("approved_on"),
            file=doc.file,
            qualifies=tuple(data.get("qualifies", ())),
            complements=data.get("complements"),
            provenance_kind=next(iter(data["provenance"])) if "provenance" in data else None,
            provenance=next(iter(data["provenance"].values())) if "provenance" in data else {},
            shows=tuple(next(iter(ref.items())) for ref in data.get("shows", ())),
        )


class _Templates:
    """Renders `{parameter}` in a rule's prose (engine.load.templating), reporting unknown names."""

    def __init__(self, reader: _Reader, doc: Located, rule_id: str | None) -> None:
        self.reader, self.doc, self.rule_id = reader, doc, rule_id
        self.values = {name: (p.value, p.unit) for name, p in reader.result.model.parameters.items()}

    def __call__(self, text: str, pointer: str) -> str:
        names, stray = placeholders(text)
        if "param" not in self.reader.result.failed:
            for name in dict.fromkeys(n for n in names if n not in self.values):
                self.reader.result.errors.append(
                    self.doc.error(
                        "rule.unknown_placeholder",
                        f"unknown parameter '{{{name}}}' in the text",
                        pointer,
                        did_you_mean(name, set(self.values))
                        or "name a parameter of parameters.yaml, e.g. {max_daily_dose}",
                        rule_id=self.rule_id,
                    )
                )
        if stray:
            self.reader.result.errors.append(
                self.doc.error(
                    "rule.placeholder_syntax",
                    f"a lone '{stray[0]}' in the text",
                    pointer,
                    "write {parameter_name} for a parameter's value, or {{ and }} for a literal brace",
                    rule_id=self.rule_id,
                )
            )
        return render(text, self.values)


def read_rules_dir(root: Path) -> LoadResult:
    """Load every file of a knowledge base; errors are collected, not raised."""
    reader = _Reader(root)
    if not root.is_dir():
        reader.result.errors.append(
            KBError(
                "kb.not_found",
                f"no such rules directory: {root}",
                str(root),
                hint="pass --rules DIR or set FSGS_KB_RULES",
            )
        )
        return reader.result
    _load_manifest(reader)
    _load_sources(reader)
    _load_parameters(reader)
    _load_derived(reader)
    _load_rules(reader)
    return reader.result
