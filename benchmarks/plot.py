"""Draw the fan-out throughput plot: `plot.py results/latest.json results/fanout.png`.

Run with benchmarks/.venv-tools/bin/python (matplotlib lives there, not in the
project's dependencies). One panel per concurrency: items/s against the number
of items for ours, the original and the floor, with the ideal as a dotted line.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict

import matplotlib  # type: ignore[import-not-found, unused-ignore]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

LABEL = re.compile(r"fan-out (\d+) items x concurrency (\d+)")
SERIES = (("ours", "tab:blue", "o"), ("original", "tab:orange", "s"), ("floor", "tab:gray", "^"))


def main(source: str, target: str) -> None:
    with open(source) as f:
        data = json.load(f)
    cells: dict[int, list[tuple[int, dict[str, float | None]]]] = defaultdict(list)
    ideal: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for row in data["rows"]:
        match = LABEL.fullmatch(row["label"])
        if row["case"] != "fanout" or match is None:
            continue
        items, conc = int(match.group(1)), int(match.group(2))
        cells[conc].append((items, {name: row[name] for name, _, _ in SERIES}))
        found = re.search(r"ideal ([\d.]+)", row.get("note", ""))
        if found:
            ideal[conc].append((items, float(found.group(1))))
    if not cells:
        sys.exit("no fan-out rows in " + source)
    concs = sorted(cells)
    fig, axes = plt.subplots(1, len(concs), figsize=(4.2 * len(concs), 4), squeeze=False)
    for ax, conc in zip(axes[0], concs, strict=True):
        points = sorted(cells[conc])
        xs = [items for items, _ in points]
        for name, color, marker in SERIES:
            ys = [values[name] for _, values in points]
            if all(y is not None for y in ys):
                ax.plot(xs, ys, marker=marker, color=color, label=name)
        if ideal[conc]:
            ix, iy = zip(*sorted(ideal[conc]), strict=True)
            ax.plot(ix, iy, linestyle=":", color="black", label="ideal")
        ax.set_title(f"max_concurrency {conc}")
        ax.set_xlabel("items")
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("throughput (items/s, latency 100 ms)")
    axes[0][0].legend()
    machine = data.get("machine", {})
    fig.suptitle(
        f"dispatch_parallel fan-out: ours vs agent-dispatch {machine.get('original_version', '')} "
        f"vs bare trio floor ({machine.get('nproc', '?')} cores, {machine.get('date', '')})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
