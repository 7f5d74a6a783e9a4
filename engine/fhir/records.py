"""FHIR input as framed Records, the unit the evaluation pipeline works on.

Three forms: one Bundle (`fhir`), one Bundle per line (`fhir-bundles`), and a Bulk Data export
directory (`fhir-bulk`: NDJSON files by resource type, grouped by patient through the on-disk
SQLite index of bulk.py, so memory stays flat). Each Bundle or patient becomes one Record whose
`data` is the converted patient record, `sources` the provenance of every field (or why it is
empty), `set_aside` the resources not used and why (each located by its Bundle entry, or by its
FILE:LINE in a Bulk Data export) and `conversion` what reproduces the conversion: the evaluation
date, the map's version and fingerprint, the Bundle's sha256. Whatever cannot be read (not JSON,
too large, not a Bundle of one patient, a bulk line that is not a FHIR resource) is a Record with
a `problem` naming where it is, so it gets its own `invalid` result and the run goes on.

Fields the map fills but the patient schema does not hold (`in_patient_schema: false`, e.g. eGFR)
travel under the record's `ext` (carried, never read by rules), so the record stays valid.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.fhir.bulk import PatientGroup, export_files, group_bulk_export, unreadable_export_files
from fsgs_kb.engine.fhir.convert import convert_bundle
from fsgs_kb.engine.fhir.errors import FhirInputError, field_pointer
from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.load.fingerprint import canonical_json
from fsgs_kb.engine.read.records import BOM, FHIR_FORMATS, Record, parse_json, skip_document, skip_line

FORMATS = FHIR_FORMATS
EXT = "ext"


def _whole_numbers(node: Any) -> Any:
    """70.0 -> 70: FHIR decimals arrive as floats; a whole one reads (and hashes) as the integer."""
    if isinstance(node, float) and node.is_integer() and abs(node) < 2**53:
        return int(node)
    if isinstance(node, dict):
        return {k: _whole_numbers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_whole_numbers(v) for v in node]
    return node


def patient_record(record: dict[str, Any], sources: dict[str, Any], fmap: FhirMap) -> None:
    """Make a converted record a patient record, in place: whole numbers as integers, and fields the
    patient schema lacks moved under /ext with their provenance pointers."""
    record.update(_whole_numbers(record))
    for path, spec in fmap.fields.items():
        if spec.get("in_patient_schema") is not False:
            continue
        *parents, leaf = path.split(".")
        node: Any = record
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            target = record.setdefault(EXT, {})
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = node.pop(leaf)
        pointer = field_pointer(path)
        if pointer in sources:
            sources[field_pointer(f"{EXT}.{path}")] = sources.pop(pointer)
    for parent in {path.split(".")[0] for path in fmap.fields if "." in path}:
        if record.get(parent) == {}:
            del record[parent]


BUNDLE_TO_RESOURCE = 3  # Bundle → entry (list) → an entry → its resource


@dataclass(frozen=True)
class FhirReader:
    """Reads FHIR input with one map and one evaluation date (as_of) for every record."""

    fmap: FhirMap
    as_of: date

    @property
    def max_bytes(self) -> int:
        return int(self.fmap.settings["limits"]["max_line_bytes"])

    @property
    def max_depth(self) -> int:
        """How deep a Bundle may nest before it is refused whole: deep enough that a resource
        nested beyond the map's max_json_depth is read and set aside as `too_deep` (a patient
        record's own limit, 32, refused a Bundle holding one deep QuestionnaireResponse, and the
        map's limit was never reached), bounded so that a nesting bomb is still refused."""
        return 2 * int(self.fmap.settings["limits"]["max_json_depth"]) + BUNDLE_TO_RESOURCE

    def conversion(self, digest: str) -> dict[str, Any]:
        """What a replay needs to convert the same Bundle to the same record."""
        return {
            "as_of": self.as_of.isoformat(),
            "map": {"version": self.fmap.version, "sha256": self.fmap.sha256},
            "bundle_sha256": digest,
        }

    def too_large(self, what: str) -> KBError:
        return KBError(
            "input.too_large",
            f"{what} is larger than {self.max_bytes:,} bytes (settings.limits.max_line_bytes of the FHIR map)",
            hint="send one patient's resources per Bundle, or use a Bulk Data export",
        )

    def from_bytes(self, number: int, line: int, raw: bytes, end: int, origin: str | None = None) -> Record:
        """One Bundle's JSON text -> its Record."""
        digest = hashlib.sha256(raw).hexdigest()
        value, problem = parse_json(raw, self.max_bytes, self.max_depth)
        if problem is not None:
            conversion = self.conversion(digest)
            return Record(number, line, raw=raw, problem=problem, end=end, conversion=conversion, origin=origin)
        return self.from_bundle(number, line, value, end, origin, digest, raw)

    def from_bundle(
        self,
        number: int,
        line: int,
        bundle: Any,
        end: int,
        origin: str | None,
        digest: str,
        raw: bytes = b"",
        entry_origins: tuple[str, ...] = (),
    ) -> Record:
        """One parsed Bundle -> its Record: the converted patient, or the reason there is none.
        `entry_origins`: where each Bundle entry came from (FILE:LINE), for a Bulk Data export."""
        conversion = self.conversion(digest)
        try:
            done = convert_bundle(bundle, self.fmap, as_of=self.as_of)
        except FhirInputError as exc:
            problem = KBError("fhir.bundle", exc.message, pointer=exc.pointer, hint=exc.hint or _BUNDLE_HINT)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
            problem = KBError("fhir.internal", f"the FHIR conversion failed: {type(exc).__name__}: {exc}")
        else:
            record, sources = done.record, done.sources
            patient_record(record, sources, self.fmap)
            set_aside = [located(item.to_dict(), entry_origins) for item in done.set_aside]
            return Record(
                number,
                line,
                data=record,
                end=end,
                sources=sources,
                conversion=conversion,
                origin=origin,
                set_aside=set_aside,
            )
        return Record(number, line, raw=raw, problem=problem, end=end, conversion=conversion, origin=origin)

    def document(self, stream: BinaryIO) -> Iterator[Record]:
        """One Bundle (a file or standard input) as one record."""
        raw = stream.read(self.max_bytes + 1)
        if len(raw) > self.max_bytes:  # hashed over all its bytes, not its first 4 KiB: two ids for two Bundles
            skipped, digest = skip_document(stream, raw.removeprefix(BOM))
            yield Record(1, 1, problem=self.too_large("the Bundle"), end=len(raw) + skipped, digest=digest)
        else:
            yield self.from_bytes(1, 1, raw.removeprefix(BOM), len(raw))

    def bundles(self, stream: BinaryIO) -> Iterator[Record]:
        """One Bundle per line (NDJSON); a bad or oversized line is that line's record."""
        offset = number = 0
        while raw := stream.readline(self.max_bytes + 1):
            offset += len(raw)
            number += 1
            if number == 1:
                raw = raw.removeprefix(BOM)
            if len(raw) > self.max_bytes and not raw.endswith(b"\n"):  # hashed as an oversized JSON line is
                skipped, digest = skip_line(stream, number, raw)
                offset += skipped
                problem = self.too_large(f"line {number}")
                yield Record(number, number, problem=problem, end=offset, digest=digest)
            elif not raw.strip():
                yield Record(number, number, problem=KBError("patient.empty", "empty line: no Bundle"), end=offset)
            else:
                yield self.from_bytes(number, number, raw.rstrip(b"\r\n"), offset, f"line {number}")

    def check_bulk(self, directory: str | Path) -> None:
        """KBErrors when a Bulk Data export cannot be read at all: not a directory, an export file
        that cannot be read (a link to nothing), no NDJSON file. Asked by batch before it opens its
        output, so that such a run leaves no empty output behind."""
        root = Path(directory)
        if not root.is_dir():
            raise KBErrors([KBError("input.unreadable", "a Bulk Data export must be a directory", file=str(root))])
        unreadable = unreadable_export_files(root)
        if unreadable:
            raise KBErrors(unreadable)
        if not export_files(root):  # an empty or unfinished export is not "0 patients"
            found = sorted(p.name for p in root.iterdir())[:5]
            raise KBErrors(
                [
                    KBError(
                        "input.unreadable",
                        "no NDJSON file (*.ndjson) in this Bulk Data export"
                        + (f"; it holds {', '.join(found)}" if found else ": it is empty"),
                        file=str(root),
                        hint="a Bulk Data export is one RESOURCE.ndjson file per resource type (uncompressed)",
                    )
                ]
            )

    def bulk(self, directory: str | Path, index_dir: str | Path | None = None) -> Iterator[Record]:
        """A Bulk Data export: one Record per Patient, and one per unusable line (file:line)."""
        root = Path(directory)
        self.check_bulk(root)
        with tempfile.TemporaryDirectory(prefix="fsgs-kb-bulk-", dir=index_dir) as work:
            items = group_bulk_export(
                root,
                Path(work) / "index.sqlite",
                max_line_bytes=self.max_bytes,
                max_depth=int(self.fmap.settings["limits"]["max_json_depth"]),
            )
            for number, item in enumerate(items, start=1):
                if isinstance(item, PatientGroup):
                    text = canonical_json(item.bundle).encode("utf-8")
                    origin = f"{item.file}:{item.line}" if item.file else item.patient_ref
                    digest = hashlib.sha256(text).hexdigest()
                    yield self.from_bundle(
                        number, item.line or number, item.bundle, 0, origin, digest, text, item.entry_origins
                    )
                else:
                    where = f"{item.file}:{item.line}"
                    problem = KBError("fhir.line", f"{where}: {item.message}", file=item.file, line=item.line)
                    raw = where.encode()
                    yield Record(number, item.line, raw=raw, problem=problem, origin=where, conversion=None)


def located(item: dict[str, Any], entry_origins: tuple[str, ...]) -> dict[str, Any]:
    """A set-aside entry of a Bundle put together from other input (a Bulk Data export, a CDS Hooks
    prefetch) names where the resource is in that input (`origin`: FILE:LINE, a JSON pointer into
    the request), not an entry of the Bundle made from it (a pointer into nothing the user has);
    `entry_origins` gives it per Bundle entry ("" where there is none to give)."""
    if not entry_origins or "entry" not in item:
        return item
    index = int(item["entry"].rsplit("/", 1)[1])
    where = entry_origins[index] if index < len(entry_origins) else ""
    rest = {k: v for k, v in item.items() if k != "entry"}
    return {**rest, "origin": where} if where else rest


_BUNDLE_HINT = "a Bundle of type collection, searchset or transaction holding one Patient and its resources"
