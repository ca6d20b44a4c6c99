"""Results out: the machine, the table (stdout and README), latest.json."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import Row
from benchmarks.servers import ORIGINAL_VERSION, ROOT

README_START = "<!-- bench:table:start -->"
README_END = "<!-- bench:table:end -->"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    version = re.search(
        r'__version__\s*=\s*"([^"]+)"', (ROOT / "agent_dispatch" / "__init__.py").read_text()
    )
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "ours_version": version.group(1) if version else "?",
        "ours_commit": commit,
        "original_version": ORIGINAL_VERSION,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("children", "processes"):
        return f"{value:.0f}"
    if unit == "items/s":
        return f"{value:.1f}/s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if value >= 100:
        return f"{value:.0f} {unit}"
    return f"{value:.1f} {unit}"


def verdict(row: Row) -> str:
    if row.passed is None:
        return "info" if row.ours is not None else "-"
    word = "PASS" if row.passed else "MISS"
    if "x floor" in row.target and row.floor and row.ours is not None:
        return f"{word} ({row.ours / row.floor:.2f} x floor)"
    if "x original" in row.target and row.ratio is not None:
        return f"{word} ({row.ratio:.2f} x original)"
    return word


def table(rows: list[Row]) -> str:
    lines = [
        "| case | ours | original | floor | ours/original | target | result |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        label = row.label + (f" ({row.note})" if row.note else "")
        lines.append(
            f"| {label} | {_num(row.ours, row.unit)} | {_num(row.original, row.unit)} "
            f"| {_num(row.floor, row.unit)} | {ratio} | {row.target or '-'} | {verdict(row)} |"
        )
    return "\n".join(lines)


def machine_line(meta: dict[str, Any]) -> str:
    commit = meta["ours_commit"] or "no commit"
    return (
        f"{meta['date']}; {meta['nproc']} cores, {meta['cpu']}; Python {meta['python']}; "
        f"Linux {meta['kernel']}; ours {meta['ours_version']} ({commit}) "
        f"vs agent-dispatch {meta['original_version']}; mode: {meta['mode']}; "
        f"took {meta['seconds']:.0f} s; load average {meta['load_before']} before, "
        f"{meta['loadavg']} after"
    )


def write_json(path: Path, rows: list[Row], meta: dict[str, Any]) -> None:
    data = {"machine": meta, "rows": [dataclasses.asdict(r) | {"ratio": r.ratio} for r in rows]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def update_readme(readme: Path, rows: list[Row], meta: dict[str, Any]) -> bool:
    """Replace the table between the markers; False when the markers are missing."""
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    block = f"{README_START}\nLast run: {machine_line(meta)}\n\n{table(rows)}\n"
    readme.write_text(text[:start] + block + text[end:])
    return True
