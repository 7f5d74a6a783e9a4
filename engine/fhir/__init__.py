"""FHIR R4 in and out of the fsgs-kb patient record, driven by rules/fhir-map.yaml.

Public API: load_map, bundle_to_record, record_to_bundle, group_bulk_export. Depends only on the
standard library, PyYAML and jsonschema; no FHIR model library sits in the conversion path.
"""

from fsgs_kb.engine.fhir.bulk import BulkItem, PatientGroup, group_bulk_export
from fsgs_kb.engine.fhir.convert import bundle_to_record
from fsgs_kb.engine.fhir.errors import FhirInputError, FhirMapError, Problem
from fsgs_kb.engine.fhir.fhirmap import FhirMap, default_map_path, default_schema_path, load_map
from fsgs_kb.engine.fhir.inverse import record_to_bundle
from fsgs_kb.engine.fhir.ndjson import LineError
from fsgs_kb.engine.fhir.outcome import REASONS

__all__ = [
    "REASONS",
    "BulkItem",
    "FhirInputError",
    "FhirMap",
    "FhirMapError",
    "LineError",
    "PatientGroup",
    "Problem",
    "bundle_to_record",
    "default_map_path",
    "default_schema_path",
    "group_bulk_export",
    "load_map",
    "record_to_bundle",
]
