"""A smoke run of the benchmark harness: one tiny case against our server only.

The benchmarks themselves are not part of the test suite (scripts/bench runs
them); this only proves the harness, the minimal fake and our server still fit
together. It needs neither the original package nor matplotlib.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_harness_measures_a_dispatch_against_our_server(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--only=ours",
            "--case=overhead",
            "--rounds=2",
            "--no-readme",
            "--no-plot",
            f"--output={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [row["case"] for row in rows] == ["overhead"]
    assert isinstance(rows[0]["ours"], float)
    assert 0 < rows[0]["ours"] < 5000  # milliseconds for one dispatch at latency 0
    assert rows[0]["original"] is None
    assert "one dispatch at latency 0" in proc.stdout


def test_bench_service_case_runs_quick_fronts_against_one_service_and_stops_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--only=ours",
            "--case=service",
            "--quick",
            "--rounds=2",
            "--no-readme",
            "--no-plot",
            f"--output={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {row["case"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["service_procs"]["ours"] == 1
    assert rows["service_peak"]["ours"] <= 5
    assert rows["service_front_rss"]["ours"] > 0
    assert len(rows["service_front_start"]["samples"]["ours"]) == 2
    assert "service stopped (pid" in proc.stderr  # the case stopped the service it started
    assert "leftover" not in proc.stderr  # and nothing else had to be killed
