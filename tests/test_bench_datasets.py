"""The datasets benchmark still runs end to end against the daemon and the SDK (a smoke run:
tiny sizes, no HSDS); its figures are not judged here, only that every scenario produced one
and that every read-back it checks came back as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tvb.storage", reason="tvb-storage is a peer (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.bench
def test_quick_run_measures_every_scenario(tmp_path: Path) -> None:
    args = [
        sys.executable, "-m", "tests.benchmarks.bench_datasets", "--quick", "--no-hsds",
        "--samples", "300", "--processes", "2", "--bulk-mib", "4", "--slices", "20",
        "--follows", "20", "--work-dir", str(tmp_path / "work"), "--allow-tmpfs",
        "--markdown", str(tmp_path / "benchmarks.md"),
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "client"), str(ROOT / "server")]),
    }
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (tmp_path / "benchmarks.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    measured = {row.split(" | ")[0][2:] for row in rows if row.split(" | ")[1] not in ("-", "")}
    for scenario in (
        "1. 300 appends of one sample, SDK appender (median of 3)",
        "1. 300 appends of one sample, hoard.tvb facade (median of 3)",
        "2. 2 processes x 300 one-sample appends, SDK appender",
        "2. 2 processes x 300 one-sample appends, hoard.tvb facade",
        "3. full read back",
        "4. 10 x 10 slice read, p50",
        "5. acknowledged -> a follower has it, p50 / p99",
    ):
        # labels may carry how a figure is taken, e.g. "(median of 3)"
        assert any(m.startswith(scenario) for m in measured), (
            f"{scenario!r} has no hoard figure:\n{table}"
        )
    assert not os.path.exists(tmp_path / "work"), "the run's files were not removed"
