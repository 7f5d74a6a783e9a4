"""FHIR R4 in and out of the fsgs-kb patient record, driven by rules/fhir-map.yaml.

Public API: load_map, convert_bundle (record, provenance and the resources set aside),
bundle_to_record (record and provenance), record_to_bundle, group_bulk_export; for the evaluation
pipeline FhirReader (Bundle bytes, a parsed Bundle, NDJSON of Bundles or a Bulk Data export ->
Records that KnowledgeBase.evaluate_record turns into results with sources and decision.fhir) and
patient_record (a converted record made valid for the patient schema). Depends only on the
standard library, PyYAML and jsonschema; no FHIR model library sits in the conversion path.
"""

from fsgs_kb.engine.fhir.bulk import BulkItem, PatientGroup, group_bulk_export
from fsgs_kb.engine.fhir.convert import Conversion, bundle_to_record, convert_bundle
from fsgs_kb.engine.fhir.errors import FhirInputError, FhirMapError, Problem
from fsgs_kb.engine.fhir.fhirmap import FhirMap, default_map_path, default_schema_path, load_map
from fsgs_kb.engine.fhir.inverse import record_to_bundle
from fsgs_kb.engine.fhir.ndjson import LineError
from fsgs_kb.engine.fhir.outcome import REASONS
from fsgs_kb.engine.fhir.records import FhirReader, patient_record
from fsgs_kb.engine.fhir.setaside import SetAside

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
