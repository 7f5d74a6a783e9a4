"""Regenerate the FHIR examples from the project's own patients: `python examples/fhir/make_examples.py`.

- examples/fhir/<name>.bundle.json: one FHIR R4 collection Bundle per example patient (examples/*.json);
- examples/fhir/bundles.ndjson: the same Bundles, one per line (for `batch --input-format fhir-bundles`);
- examples/fhir/bulk/: a Bulk Data export of 300 generated patients (tests/generate.py, seed 14), each
  resource type split over two NDJSON files, lines shuffled, not grouped by patient.

Every date is laid out backwards from AS_OF, so evaluate them with `--as-of 2025-01-15`. The output is
deterministic: running the script again gives the same bytes.
"""

from __future__ import annotations

import json
import shutil
import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from generate import iter_cohort  # noqa: E402

from fsgs_kb.engine.fhir import default_map_path, load_map, record_to_bundle  # noqa: E402
from fsgs_kb.engine.fhir.bulkwrite import write_bulk_export  # noqa: E402

AS_OF = date(2025, 1, 15)
BULK_PATIENTS = 300
SEED = 14


def main() -> None:
    fmap = load_map(default_map_path())
    lines = []
    for path in sorted((ROOT / "examples").glob("*.json")):
        bundle = record_to_bundle(json.loads(path.read_text(encoding="utf-8")), fmap, as_of=AS_OF)
        (HERE / f"{path.stem}.bundle.json").write_text(json.dumps(bundle, indent=2) + "\n", encoding="utf-8")
        lines.append(json.dumps(bundle, separators=(",", ":")))
    (HERE / "bundles.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    bulk = HERE / "bulk"
    shutil.rmtree(bulk, ignore_errors=True)
    count, names = write_bulk_export(iter_cohort(BULK_PATIENTS, seed=SEED), bulk, fmap, AS_OF, seed=SEED)
    print(f"wrote {len(lines)} Bundles and a Bulk Data export of {count} patients ({', '.join(names)})")


if __name__ == "__main__":
    main()
