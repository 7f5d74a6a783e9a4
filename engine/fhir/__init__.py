"""FHIR R4 in and out of the fsgs-kb patient record, driven by rules/fhir-map.yaml.

Public API: load_map, convert_bundle (record, provenance and the resources set aside),
bundle_to_record (record and provenance), record_to_bundle, group_bulk_export; for the evaluation
pipeline FhirReader (Bundle bytes, a parsed Bundle, NDJSON of Bundles or a Bulk Data export ->
Records that KnowledgeBase.evaluate_record turns into results with sources and decision.fhir) and
patient_record (a converted record made valid for the patient schema). Depends only on the
standard library, PyYAML and jsonschema; no FHIR model library sits in the conversion path.
"""

from __future__ import annotations

import importlib
from typing import Any

# Each name is imported from its module when first used (PEP 562): a command that reads no FHIR
# (`fsgs-kb explain patient.json`) does not pay ~40 ms at start for the converter, the bulk reader
# and the map's schema check.
PUBLIC = {
    "BulkItem": "fsgs_kb.engine.fhir.bulk",
    "Conversion": "fsgs_kb.engine.fhir.convert",
    "FhirInputError": "fsgs_kb.engine.fhir.errors",
    "FhirMap": "fsgs_kb.engine.fhir.fhirmap",
    "FhirMapError": "fsgs_kb.engine.fhir.errors",
    "FhirReader": "fsgs_kb.engine.fhir.records",
    "LineError": "fsgs_kb.engine.fhir.ndjson",
    "PatientGroup": "fsgs_kb.engine.fhir.bulk",
    "Problem": "fsgs_kb.engine.fhir.errors",
    "REASONS": "fsgs_kb.engine.fhir.outcome",
    "SetAside": "fsgs_kb.engine.fhir.setaside",
    "bundle_to_record": "fsgs_kb.engine.fhir.convert",
    "convert_bundle": "fsgs_kb.engine.fhir.convert",
    "default_map_path": "fsgs_kb.engine.fhir.fhirmap",
    "default_schema_path": "fsgs_kb.engine.fhir.fhirmap",
    "group_bulk_export": "fsgs_kb.engine.fhir.bulk",
    "load_map": "fsgs_kb.engine.fhir.fhirmap",
    "patient_record": "fsgs_kb.engine.fhir.records",
    "record_to_bundle": "fsgs_kb.engine.fhir.inverse",
}


def __getattr__(name: str) -> Any:
    module = PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "REASONS",
    "BulkItem",
    "Conversion",
    "FhirInputError",
    "FhirMap",
    "FhirMapError",
    "FhirReader",
    "LineError",
    "PatientGroup",
    "Problem",
    "SetAside",
    "bundle_to_record",
    "convert_bundle",
    "default_map_path",
    "default_schema_path",
    "group_bulk_export",
    "load_map",
    "patient_record",
    "record_to_bundle",
]
