"""The auth and TLS benchmark still runs end to end (a smoke run: tiny sizes, one round); its
figures are not judged here, only that every configuration produced each of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks import bench_auth

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.bench
def test_quick_run_measures_every_configuration(tmp_path: Path) -> None:
    markdown = tmp_path / "benchmarks.md"
    markdown.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    args = [
        sys.executable, "-m", "tests.benchmarks.bench_auth", "--objects", "100", "--calls", "20",
        "--rounds", "1", "--work-dir", str(tmp_path / "work"), "--allow-tmpfs",
        "--markdown", str(markdown),
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "client"), str(ROOT / "server")]),
    }
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = markdown.read_text()
    assert "## Other\n\nkept" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0] == "| scenario | " + " | ".join(s.name for s in bench_auth.SETUPS) + " |"
    for label in bench_auth.SCENARIOS.values():
        (row,) = [line for line in table if line.startswith(f"| {label} |")]
        cells = row.strip("| ").split(" | ")[1:]
        assert len(cells) == len(bench_auth.SETUPS) and all(cells), row
        assert all("x)" in cell for cell in cells[1:]), row  # a ratio to plain
    assert not (tmp_path / "work").exists(), "the run's files were not removed"
