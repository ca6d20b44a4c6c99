"""The benchmark harness: `python -m benchmarks.run [--quick] [--only ours] [--case NAME]...`.

scripts/bench installs the original package and runs this with the project's
.venv python. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from benchmarks import cases_library, cases_load, cases_service, cases_speed
from benchmarks.common import Ctx, Row
from benchmarks.report import machine, table, update_readme, write_json
from benchmarks.servers import BENCH_DIR, System, original, ours

CaseFn = Callable[[Ctx], Awaitable[list[Row]]]

CASES: dict[str, CaseFn] = {
    "startup": cases_speed.case_startup,
    "overhead": cases_speed.case_overhead,
    "parallel": cases_speed.case_parallel,
    "async_wait": cases_speed.case_async_wait,
    "async_many": cases_speed.case_async_many,
    "cancel": cases_load.case_cancel,
    "stdin": cases_load.case_stdin,
    "peak": cases_load.case_peak,
    "jobs": cases_load.case_jobs,
    "queue": cases_load.case_queue,
    "fanout": cases_speed.case_fanout,
    "library": cases_library.case_library,
    "service": cases_service.case_service,
}
RESULTS = BENCH_DIR / "results"
TOOLS_PYTHON = BENCH_DIR / ".venv-tools" / "bin" / "python"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller fan-out")
    parser.add_argument("--only", choices=("ours", "original", "both"), default="both")
    parser.add_argument("--case", action="append", choices=list(CASES), help="repeatable")
    parser.add_argument("--rounds", type=int, help="override every case's round count")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--no-readme", action="store_true", help="leave benchmarks/README.md")
    parser.add_argument("--no-plot", action="store_true", help="skip results/fanout.png")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the sandboxes (logs)")
    return parser.parse_args(argv)


async def run_cases(ctx: Ctx, names: list[str]) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        log(f"==> {name}")
        start = time.monotonic()
        try:
            rows += await CASES[name](ctx)
        except Exception as exc:  # a broken case must not hide the others' numbers
            log(traceback.format_exc())
            rows.append(Row(name, f"{name}: ERROR", "", None, passed=False, note=str(exc)[:200]))
        log(f"    {name} took {time.monotonic() - start:.1f} s")
    return rows


def plot(json_path: Path) -> str:
    """Draw results/fanout.png with matplotlib from the tools venv, when it is there."""
    if not TOOLS_PYTHON.exists():
        return "no plot: benchmarks/.venv-tools (matplotlib) is missing"
    png = json_path.parent / "fanout.png"
    proc = subprocess.run(
        [str(TOOLS_PYTHON), str(BENCH_DIR / "plot.py"), str(json_path), str(png)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return f"no plot: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}"
    return f"plot: {png}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.case or list(CASES)
    systems: list[System] = []
    if args.only in ("ours", "both"):
        systems.append(ours())
    if args.only in ("original", "both"):
        systems.append(original())
    tmp = Path(tempfile.mkdtemp(prefix="agent-dispatch-bench-"))
    ctx = Ctx(
        systems=systems,
        tmp=tmp,
        run_id=uuid.uuid4().hex,
        quick=args.quick,
        rounds_override=args.rounds,
        log=log,
    )
    for system in systems:
        log(f"{system.name}: {' '.join(system.argv)[:100]}")
    log(f"sandboxes in {tmp}")
    start = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        rows = trio.run(run_cases, ctx, names)
    finally:
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    mode = "quick" if args.quick else "full"
    if args.only != "both":
        mode += f", {args.only} only"
    meta = machine() | {
        "mode": mode,
        "load_before": load_before,
        "seconds": time.monotonic() - start,
        "cases": names,
    }
    write_json(args.output, rows, meta)
    print(table(rows))
    log(f"results: {args.output}")
    if "fanout" in names and not args.no_plot:
        log(plot(args.output))
    # Only a run of every case against both servers replaces the README's table.
    if not args.no_readme and args.only == "both" and not args.case:
        if update_readme(BENCH_DIR / "README.md", rows, meta):
            log("table written to benchmarks/README.md")
    if any(r.label.endswith("ERROR") for r in rows):
        return 1
    return 1 if args.strict and any(r.passed is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
