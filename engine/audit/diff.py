"""Compare two knowledge bases, and enforce versioning: a changed rule needs a new version and a
history entry; a changed knowledge base needs a new manifest version and a changelog entry; a
changed FHIR map needs a new map_version (engine.audit.mapdiff: the map is versioned on its own).

Either side may be a directory or `git:REV`, read with `git archive` into a temporary
directory: the working tree is never touched. REV is resolved to a commit hash first
(`git rev-parse --verify --end-of-options REV^{commit}`), so it can never be taken as an option
(`git:--output=FILE` is `diff.bad_revision`, not a truncated FILE).
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsgs_kb.engine.audit.mapdiff import MapSide, compare_maps, load_map_side
from fsgs_kb.engine.check.checks import version_key
from fsgs_kb.engine.check.report import ValidationReport
from fsgs_kb.engine.check.validate import validate_dir
from fsgs_kb.engine.compile.proof import prove
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.load.conditions import reach
from fsgs_kb.engine.load.files import MAX_FILE_BYTES
from fsgs_kb.engine.load.fingerprint import canonical_json
from fsgs_kb.engine.load.templating import TEMPLATED_FIELDS, placeholders

RULE_META = ("version", "history")
MAP_SUBJECT = "fhir-map.yaml"
OWN = "its own text or condition"


@dataclass
class KBSide:
    label: str
    report: ValidationReport
    fingerprint: str
    rule_data: dict[str, dict[str, Any]]
    parameter_data: dict[str, Any] = field(default_factory=dict)
    derived_data: dict[str, Any] = field(default_factory=dict)
    fhir_map: MapSide | None = None


GIT_TIMEOUT_S = 60


def _git_error(code: str, message: str, spec: str, hint: str | None = None) -> KBErrors:
    return KBErrors([KBError(code, message, spec, hint=hint)])


def _git(args: list[str], cwd: Path, spec: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _git_error("diff.git_failed", f"cannot run git: {exc}", spec) from None


def _git_root(cwd: Path, spec: str) -> Path:
    out = _git(["rev-parse", "--show-toplevel"], cwd, spec)
    if out.returncode != 0:
        raise _git_error("diff.not_a_repository", f"not inside a git repository: {cwd}", spec)
    return Path(out.stdout.decode("utf-8", "replace").strip())


def resolve_revision(spec: str, root: Path) -> str:
    """The commit `git:REV` names, as a full hash; never lets REV reach git as an option."""
    rev = spec[len("git:") :]
    hint = "name a commit, branch or tag, e.g. git:HEAD~1 or git:v0.1.0"
    if not rev or rev.startswith("-") or "\0" in rev:
        raise _git_error("diff.bad_revision", f"'{rev}' is not a git revision", spec, hint)
    out = _git(["rev-parse", "--verify", "--quiet", "--end-of-options", rev + "^{commit}"], root, spec)
    sha = out.stdout.decode("ascii", "replace").strip()
    if out.returncode != 0 or len(sha) not in (40, 64) or any(c not in "0123456789abcdef" for c in sha):
        raise _git_error("diff.bad_revision", f"'{rev}' names no commit in {root}", spec, hint)
    return sha


def materialize(spec: str, rules_path: str, workdir: Path) -> Path:
    """A directory holding the knowledge base `spec` names (a path, or git:REV).

    git:REV is read with `git archive` into a fresh directory under `workdir`; the revision is
    first resolved to a commit hash (so no argument of ours can be taken as an option), and the
    archive may hold only directories and regular files no larger than the loader reads: a
    committed symbolic link, or anything else, is refused before anything is written."""
    if not spec.startswith("git:"):
        return Path(spec)
    root = _git_root(Path.cwd(), spec)
    sha = resolve_revision(spec, root)
    base = Path(rules_path) if Path(rules_path).is_absolute() else Path.cwd() / rules_path
    try:
        relative = base.resolve().relative_to(root.resolve())
    except ValueError:
        raise _git_error(
            "diff.path_outside_repository", f"{rules_path} is not inside the repository {root}", spec
        ) from None
    target = Path(tempfile.mkdtemp(prefix=sha[:12] + "-", dir=workdir))
    try:
        git = subprocess.Popen(
            ["git", "archive", "--format=tar", sha, "--", str(relative)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise _git_error("diff.git_failed", f"cannot run git: {exc}", spec) from None
    try:
        _unpack(git, target, spec)
        stderr = git.communicate(timeout=GIT_TIMEOUT_S)[1]
    finally:
        if git.poll() is None:
            git.kill()
            git.wait()
    if git.returncode != 0:
        message = stderr.decode("utf-8", "replace").strip()[-300:]
        raise _git_error("diff.git_failed", f"git cannot read {relative} at {spec[4:]}: {message}", spec)
    return target / relative


def _unpack(git: subprocess.Popen[bytes], target: Path, spec: str) -> None:
    """Extract the archive as it streams, checking each member before it is written."""
    try:
        with tarfile.open(fileobj=git.stdout, mode="r|") as archive:
            for member in archive:
                _check_member(member, spec)
                try:
                    archive.extract(member, target, filter="data")
                except TypeError:  # Python before 3.10.12 / 3.11.4: no filters; members are checked above
                    archive.extract(member, target)  # noqa: S202
    except tarfile.ReadError:
        return  # git failed before writing an archive: its message is reported by the caller
    except (tarfile.TarError, OSError) as exc:
        raise _git_error("diff.git_failed", f"cannot unpack {spec}: {exc}", spec) from None


def _check_member(member: tarfile.TarInfo, spec: str) -> None:
    where = f"{spec}:{member.name}"
    if not (member.isfile() or member.isdir()):
        kind = "a symbolic link" if member.issym() else "a hard link" if member.islnk() else "not a regular file"
        raise KBErrors(
            [
                KBError(
                    "load.not_regular_file",
                    f"is {kind} in {spec}; a knowledge base holds plain files only, so it was not read",
                    where,
                    1,
                    1,
                    hint="replace the link by the file itself and commit that",
                )
            ]
        )
    if member.isfile() and member.size > MAX_FILE_BYTES:
        raise KBErrors(
            [
                KBError(
                    "yaml.too_large",
                    f"file is {member.size} bytes; the limit is {MAX_FILE_BYTES}",
                    where,
                    1,
                    1,
                    hint="split it into several files",
                )
            ]
        )


def load_side(spec: str, rules_path: str, workdir: Path, *, check_map: bool = False) -> KBSide:
    """One side of a diff. check_map: validate its FHIR map too (the new side, as `validate` does);
    an old revision's map is only parsed, since today's patient schema may postdate it."""
    directory = materialize(spec, rules_path, workdir)
    report = prove(validate_dir(directory, fhir_map=check_map))
    rule_data, parameter_data, derived_data = {}, {}, {}
    for doc in report.load.docs.values():
        if not isinstance(doc.data, dict):
            continue
        if "when" in doc.data and "id" in doc.data:
            rule_data[doc.data["id"]] = doc.data
        elif isinstance(doc.data.get("parameters"), dict):
            parameter_data = doc.data["parameters"]
        elif isinstance(doc.data.get("derived"), dict):
            derived_data = doc.data["derived"]
    fhir_map = load_map_side(directory)
    return KBSide(spec, report, report.load.fingerprint, rule_data, parameter_data, derived_data, fhir_map)


def reaches(side: KBSide, rule_id: str) -> tuple[list[str], list[str]]:
    """(parameters, derived values) a rule's meaning rests on: those its condition reaches,
    directly or through derived values, and those its prose names ({parameter})."""
    model = side.report.load.model
    rule = model.rules.get(rule_id)
    if rule is None:
        return [], []
    names, derived = reach(model, rule)
    data = side.rule_data.get(rule_id, {})
    for key in TEMPLATED_FIELDS:
        value = data.get(key)
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                names += placeholders(text)[0]
    return sorted(set(names)), derived


def meaning_changes(old: KBSide, new: KBSide, rule_id: str) -> list[str]:
    """What changed in a rule's effective meaning: its own YAML (version and history aside), or
    any parameter or derived value it reaches (value, unit, boundary, provenance, definition)."""
    before, after = old.rule_data[rule_id], new.rule_data[rule_id]
    reasons = []
    if _content(before) != _content(after):
        reasons.append(OWN)
    old_params, old_derived = reaches(old, rule_id)
    new_params, new_derived = reaches(new, rule_id)
    for name in sorted(set(old_params) | set(new_params)):
        a, b = old.parameter_data.get(name), new.parameter_data.get(name)
        if name not in old_params or name not in new_params or canonical_json(a) != canonical_json(b):
            reasons.append(f"parameter {name}")
    for name in sorted(set(old_derived) | set(new_derived)):
        a, b = old.derived_data.get(name), new.derived_data.get(name)
        if name not in old_derived or name not in new_derived or canonical_json(a) != canonical_json(b):
            reasons.append(f"derived value {name}")
    return reasons


@dataclass
class KBDiff:
    changes: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def add(self, kind: str, subject: str, detail: str, **extra: Any) -> None:
        self.changes.append({"kind": kind, "subject": subject, "detail": detail, **extra})


def _content(data: dict[str, Any]) -> str:
    return canonical_json({k: v for k, v in data.items() if k not in RULE_META})


def _provenance_text(param: Any) -> str:
    data = param.provenance
    if param.provenance_kind == "source":
        return f"source {data['sentence']}"
    if param.provenance_kind == "cited":
        return (
            f"cited ({'verified' if data['verified'] else 'not verified'}): {' '.join(data['reference'].split())[:60]}"
        )
    return f"local ({data['decided_on']})"


def compare(old: KBSide, new: KBSide) -> KBDiff:
    diff = KBDiff()
    _compare_rules(old, new, diff)
    _compare_parameters(old, new, diff)
    old_m, new_m = old.report.load.model.manifest, new.report.load.model.manifest
    if old.fingerprint != new.fingerprint:
        if new_m.get("version") == old_m.get("version"):
            diff.violations.append(
                f"the knowledge base changed but its version is still {new_m.get('version')}: "
                "bump the version in kb.yaml and add a changelog entry"
            )
        elif new_m.get("version") not in {e["version"] for e in new_m.get("changelog", [])}:
            diff.violations.append(f"kb.yaml version {new_m.get('version')} has no changelog entry")
        elif version_key(str(new_m.get("version"))) <= version_key(str(old_m.get("version"))):
            diff.violations.append(
                f"kb.yaml version went from {old_m.get('version')} to {new_m.get('version')}: versions only go up"
            )
    if canonical_json(old_m.get("scope")) != canonical_json(new_m.get("scope")):
        diff.add("kb_scope", "kb.yaml", "scope explanation changed (who the review covers, the reasons results give)")
    if old_m.get("version") != new_m.get("version"):
        diff.add("kb_version", "kb.yaml", f"{old_m.get('version')} → {new_m.get('version')}")
    mapped = compare_maps(old.fhir_map, new.fhir_map)  # not in the fingerprint: versioned by map_version
    for kind, detail, extra in mapped.changes:
        diff.add(kind, MAP_SUBJECT, detail, **extra)
    diff.violations.extend(mapped.violations)
    return diff


def _compare_rules(old: KBSide, new: KBSide, diff: KBDiff) -> None:
    for rid in sorted(set(old.rule_data) | set(new.rule_data)):
        before, after = old.rule_data.get(rid), new.rule_data.get(rid)
        if before is None:
            diff.add("rule_added", rid, f"added, version {after['version']} ({after['status']})")  # type: ignore[index]
            continue
        if after is None:
            diff.add("rule_removed", rid, "removed (rules should be retired, not deleted: ids are stable forever)")
            continue
        if before.get("status") != after.get("status"):
            kind = "rule_retired" if after.get("status") == "retired" else "rule_status"
            diff.add(kind, rid, f"status {before.get('status')} → {after.get('status')}")
        for key, label in (
            ("when", "condition"),
            ("says", "advice text"),
            ("citations", "citation"),
            ("evidence", "evidence note"),
            ("kind", "kind"),
            ("title", "title"),
            ("interpretation", "interpretation"),
            ("complements", "complements"),
        ):
            if canonical_json(before.get(key)) != canonical_json(after.get(key)):
                diff.add(
                    f"rule_{label.replace(' ', '_')}_changed",
                    rid,
                    f"{label} changed",
                    old=before.get(key),
                    new=after.get(key),
                )
        if before["version"] != after["version"]:
            diff.add("rule_version", rid, f"version {before['version']} → {after['version']}")
        reasons = meaning_changes(old, new, rid)
        if reasons:
            reached = [r for r in reasons if r != OWN]
            if reached:
                diff.add("rule_meaning", rid, "meaning changed through " + ", ".join(reached), reasons=reasons)
            history = {h["version"] for h in after.get("history", [])}
            if before["version"] == after["version"]:
                diff.violations.append(
                    f"{rid}'s meaning changed ({', '.join(reasons)}) but its version is still {after['version']}: "
                    "raise its version and add a history entry saying what changed"
                )
            elif after["version"] not in history:
                diff.violations.append(f"{rid} is version {after['version']} but has no history entry for it")
            elif version_key(str(after["version"])) <= version_key(str(before["version"])):
                diff.violations.append(
                    f"{rid} went from version {before['version']} to {after['version']}: versions only go up"
                )


def _compare_parameters(old: KBSide, new: KBSide, diff: KBDiff) -> None:
    before, after = old.report.load.model.parameters, new.report.load.model.parameters
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if a is None:
            diff.add("parameter_added", name, f"added: {b.value} {b.unit} ({_provenance_text(b)})")  # type: ignore[union-attr]
        elif b is None:
            diff.add("parameter_removed", name, f"removed (was {a.value} {a.unit})")
        else:
            if canonical_json(a.value) != canonical_json(b.value) or a.unit != b.unit:
                diff.add(
                    "parameter_value",
                    name,
                    f"{a.value} {a.unit} ({_provenance_text(a)}) → {b.value} {b.unit} ({_provenance_text(b)})",
                    old=a.value,
                    new=b.value,
                )
            elif canonical_json(a.provenance) != canonical_json(b.provenance) or a.provenance_kind != b.provenance_kind:
                diff.add("parameter_provenance", name, f"provenance {_provenance_text(a)} → {_provenance_text(b)}")


def temporary_workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="fsgs-kb-diff-")
