"""`agent-dispatch stats`: what each agent costs and takes, from the usage journal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from cyclopts import Parameter

from agent_dispatch.cli.common import JsonFlag, config_store, emit, emit_json, money, table
from agent_dispatch.errors import InvalidArgument, StorageError
from agent_dispatch.service import usage as figures
from agent_dispatch.storage import usage

Days = Annotated[float | None, Parameter(help="Only dispatches that ended in the last N days.")]


def stats(*, agent: str | None = None, days: Days = None, json: JsonFlag = False) -> int:
    """Per agent: runs, success rate, outcomes, p50/p90 duration and cost, last used.

    Read from the usage journal (usage.jsonl beside the config file, one line per
    finished dispatch, rotated files included). Lines that are not records are
    skipped and counted.

    Parameters
    ----------
    agent
        Only this agent.
    """
    since = None
    if days is not None:
        if not days > 0 or days > 36500:
            raise InvalidArgument(f"--days: {days:g} is not in 0 < N <= 36500", "Give a day count.")
        since = datetime.now(UTC) - timedelta(days=days)
    path = usage.journal_path(config_store().path)
    try:
        scan = usage.read_records(path)
    except OSError as exc:
        raise StorageError(
            f"cannot read the usage journal {path}: {exc.strerror or exc}",
            "Check its permissions (it should be yours, mode 0600).",
        ) from None
    records = [
        r
        for r in scan.records
        if (agent is None or r.agent == agent)
        and (since is None or ((when := usage.ended_at(r)) is not None and when >= since))
    ]
    per_agent = figures.figures(records)
    totals = msgspec.to_builtins(figures.agent_figures("", records))
    del totals["agent"]
    report: dict[str, Any] = {
        "journal": str(path),
        "since": since.isoformat(timespec="seconds") if since else None,
        "agent": agent,
        "records": len(records),
        "skipped_lines": scan.skipped,
        "agents": msgspec.to_builtins(list(per_agent.values())),
        "totals": totals,
    }
    if json:
        emit_json(report)
        return 0
    _print(report)
    return 0


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _print(report: dict[str, Any]) -> None:
    where = f" for {report['agent']}" if report["agent"] else ""
    since = f" since {report['since']}" if report["since"] else ""
    if not report["agents"]:
        emit(f"no dispatches in {report['journal']}{where}{since}")
    else:
        rows = [
            [
                a["agent"],
                str(a["runs"]),
                f"{a['success_rate']:.0%}",
                ", ".join(f"{k} {v}" for k, v in sorted(a["outcomes"].items())) or "-",
                _seconds(a["p50_duration_s"]),
                _seconds(a["p90_duration_s"]),
                money(a["p50_cost_usd"]),
                money(a["p90_cost_usd"]),
                money(a["total_cost_usd"]),
                (a["last_used"] or "-")[:19].replace("T", " "),
            ]
            for a in report["agents"]
        ]
        headers = ["AGENT", "RUNS", "OK", "OUTCOMES", "P50", "P90", "COST P50"]
        headers += ["COST P90", "TOTAL", "LAST USED (UTC)"]
        for line in table(headers, rows):
            emit(line)
        t = report["totals"]
        emit(
            f"{t['runs']} dispatch(es){where}{since}: {t['success_rate']:.0%} succeeded, "
            f"{t['cache_hits']} from the cache, {money(t['total_cost_usd'])} in all"
        )
    if report["skipped_lines"]:
        emit(
            f"skipped {report['skipped_lines']} line(s) of {report['journal']} that are not records"
        )
