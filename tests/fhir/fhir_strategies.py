"""Hypothesis strategies for patient records, drawn from the patient schema's own enums and ranges.

Values use the precision real records have (tenths), and combinations the clinical notes call
valid (a dose or months only with status current/stopped), so that a failing round trip is a bug
in the map or the converter, not an impossible record.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def tenths(low: float, high: float) -> st.SearchStrategy[float]:
    return st.integers(int(round(low * 10)), int(round(high * 10))).map(lambda x: x / 10)


def _optional(draw: Any, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    out = {}
    for name, strategy in fields.items():
        if draw(st.booleans()):
            out[name] = draw(strategy)
    return out


def _enum(schema: dict[str, Any], *path: str) -> st.SearchStrategy[str]:
    node = schema
    for part in path:
        node = node["properties"][part]
    return st.sampled_from(node["enum"])


@st.composite
def cyclosporine(draw: Any, schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    status = draw(st.sampled_from([None, "never", "current", "stopped"]))
    if status:
        out["status"] = status
    treated = status in ("current", "stopped")
    fields: dict[str, st.SearchStrategy[Any]] = {}
    if treated:
        unit = _enum(schema, "cyclosporine", "daily_dose", "unit")
        fields.update(
            {
                "daily_dose": st.fixed_dictionaries({"value": tenths(0, 10000), "unit": unit}),
                "months_on_therapy": tenths(0, 600),
                "best_response": _enum(schema, "cyclosporine", "best_response"),
                "trough_ng_ml": tenths(0, 10000),
            }
        )
    if status == "stopped":
        fields["stop_reason"] = _enum(schema, "cyclosporine", "stop_reason")
    out.update(_optional(draw, fields))
    return out


@st.composite
def records(draw: Any, schema: dict[str, Any], extended: bool = False) -> dict[str, Any]:
    """A record valid against the patient schema (plus the §3 fields when extended)."""
    props = schema["properties"]
    record: dict[str, Any] = {
        "id": draw(st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=40))
    }
    record.update(
        _optional(
            draw,
            {
                "age_years": tenths(0, 120),
                "weight_kg": tenths(0.1, 300),
                "gc_toxicity_risk_factors": st.lists(
                    st.sampled_from(props["gc_toxicity_risk_factors"]["items"]["enum"]), unique=True
                ),
                "disease_status": st.sampled_from(props["disease_status"]["enum"]),
                "proteinuria": st.fixed_dictionaries(
                    {"value": tenths(0, 100000), "unit": _enum(schema, "proteinuria", "unit")}
                ),
            },
        )
    )
    fsgs = _optional(
        draw,
        {
            "biopsy_proven": st.booleans(),
            "etiology": _enum(schema, "fsgs", "etiology"),
            "secondary_cause": st.text(min_size=1, max_size=80),
        },
    )
    steroids = _optional(draw, {"response": _enum(schema, "steroids", "response"), "high_dose_weeks": tenths(0, 520)})
    bp = _optional(
        draw,
        {
            "systolic_mmHg": st.integers(20, 300),
            "diastolic_mmHg": st.integers(20, 300),
            "percentile_for_age": tenths(0, 100),
        },
    )
    for name, part in (
        ("fsgs", fsgs),
        ("steroids", steroids),
        ("blood_pressure", bp),
        ("cyclosporine", draw(cyclosporine(schema))),
    ):
        if part:
            record[name] = part
    creat = _optional(draw, {"current": tenths(0.1, 10000), "baseline": tenths(0.1, 10000)})
    if creat:
        record["serum_creatinine"] = {**creat, "unit": draw(_enum(schema, "serum_creatinine", "unit"))}
    if extended:
        record.update(
            _optional(
                draw,
                {
                    "kidney_function": st.one_of(
                        st.fixed_dictionaries({"egfr": tenths(0.1, 200), "unit": st.just("mL/min/1.73m2")}),
                        st.fixed_dictionaries(
                            {
                                "creatinine_clearance": tenths(0.1, 200),
                                "unit": st.sampled_from(["mL/min/1.73m2", "mL/min"]),
                            },
                            optional={"egfr": tenths(0.1, 200)},
                        ),
                    ),
                    "other_immunosuppressants": st.lists(
                        st.fixed_dictionaries(
                            {
                                "drug": st.sampled_from(
                                    [
                                        "tacrolimus",
                                        "voclosporin",
                                        "mycophenolate",
                                        "rituximab",
                                        "cyclophosphamide",
                                        "other",
                                    ]
                                ),
                                "status": st.sampled_from(["current", "past"]),
                            }
                        ),
                        max_size=4,
                        unique_by=lambda d: d["drug"],
                    ),
                },
            )
        )
    return record
