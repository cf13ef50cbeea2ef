"""The metadata benchmark's own check, on a few hundred files: hoard (in-process, and the
daemon when it serves the metadata RPCs) returns the same files as qass for every query.
Needs qass-tools-analyzer (the ``bench`` extra); no figure is asserted."""

from __future__ import annotations

import pytest

pytest.importorskip("qass.tools.analyzer.buffer_metadata_cache")

from tests.benchmarks import bench_metadata as bench


def test_every_side_returns_qass_s_files_for_every_query(tmp_path) -> None:
    cfg = bench.Settings(files=300, repeats=1, daemon=True)
    rows, notes = bench.run(cfg, str(tmp_path), lambda message: None)
    queries = rows[2:]
    assert [r.scenario.split(":")[0] for r in queries] == [q.name for q in bench.QUERIES]
    for row in queries:
        assert row.same.startswith("yes"), (row, notes)
    # every side synced and answered (the daemon's columns may be "-" on an older daemon)
    assert all(r.engine != "-" and r.peer != "-" for r in rows)
