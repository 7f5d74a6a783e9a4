"""The Dask recipe on a real distributed.LocalCluster with two worker processes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from generate import iter_cohort

db = pytest.importorskip("dask.bag", reason="the dask extra is not installed")
distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")


def test_bag_on_a_local_cluster_equals_single_machine_results(kb: Any) -> None:
    from fsgs_kb.engine.batch.dask_bag import evaluate_bag

    lines = [json.dumps(p) for p in iter_cohort(300, seed=21, invalid_rate=0.02)] + ["not json", ""]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            bag = db.from_sequence(lines, npartitions=6)
            got = evaluate_bag(bag).compute()
    assert len(got) == len(lines)
    for line, result in zip(lines[:-2], got, strict=False):
        assert result == kb.evaluate(json.loads(line))
    assert got[-2]["errors"][0]["code"] == "patient.json"
    assert got[-1]["errors"][0]["code"] == "patient.empty"
