"""Shared fixtures: the shipped map, the project's patient schema and examples, an evaluation date.

The draft lives beside the project; once moved into fsgs_kb the same lookups find schema/ and
examples/ in the repository root (the nearest ancestor that has them).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import jsonschema
import pytest
from fhir_helpers import AS_OF, project_file  # noqa: F401 - shared with the test modules

from fsgs_kb.engine.fhir import FhirMap, default_map_path, load_map


@pytest.fixture(scope="session")
def fmap() -> FhirMap:
    return load_map(default_map_path())


@pytest.fixture(scope="session")
def patient_schema() -> dict[str, Any]:
    return json.loads(project_file("schema/patient.schema.json").read_text())


@pytest.fixture(scope="session")
def valid_record(patient_schema: dict[str, Any]):
    validator = jsonschema.Draft202012Validator(patient_schema)
    return lambda record: not any(validator.iter_errors(record))


@pytest.fixture
def as_of() -> date:
    return AS_OF
