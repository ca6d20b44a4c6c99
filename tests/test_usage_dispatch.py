"""Every finished dispatch is journalled; list_agents, the timeout hint and `stats` read it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import trio

from agent_dispatch.models import DispatchRequest
from agent_dispatch.runtime.scripted import Script, ScriptedRunner
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.service.usage import now_iso
from agent_dispatch.storage import usage
from agent_dispatch.storage.config import ConfigStore
from agent_dispatch.storage.jobs import JobStore
from tests.dispatcher_config import make_config
from tests.server_support import Tools, Workspace
from tests.test_cli import Cli

pytest_plugins = ("tests.server_fixtures",)


def write_config(tmp: Path) -> Path:
    make_config(tmp)  # makes the agents' directories
    config = tmp / "cfg" / "agents.yaml"
    config.parent.mkdir()
    config.write_text(
        f"agents:\n  backend: {{directory: {tmp / 'backend'}}}\n"
        f"  web: {{directory: {tmp / 'web'}}}\n"
    )
    return config


@pytest.fixture
async def journalled(tmp_path: Path) -> AsyncIterator[tuple[Dispatcher, ScriptedRunner, Path]]:
    """A Dispatcher on a config file (so it journals), runs scripted; the journal's path."""
    config = write_config(tmp_path)
    runner = ScriptedRunner()
    async with Dispatcher.open(
        ConfigStore(config), runner=runner, jobs=JobStore(tmp_path / "jobs"), cache=True
    ) as d:
        yield d, runner, config.parent / "usage.jsonl"


def records(path: Path) -> list[usage.UsageRecord]:
    scan = usage.read_records(path)
    assert scan.skipped == 0
    return scan.records


async def test_every_dispatch_path_appends_one_record_naming_its_way_in(
    journalled: tuple[Dispatcher, ScriptedRunner, Path],
) -> None:
    d, _, path = journalled
    ask = DispatchRequest(agent="backend", task="one", caller="the planner")
    await d.dispatch(ask)
    await d.dispatch_session(DispatchRequest(agent="backend", task="two"))
    async with d.stream(DispatchRequest(agent="web", task="three")) as run:
        async for _ in run:
            pass
    async for _ in d.as_completed([DispatchRequest(agent="web", task="four")]):
        pass
    job = await d.submit(DispatchRequest(agent="web", task="five"))
    with trio.fail_after(10):
        await d.wait([job.id])
    seen = records(path)
    assert [r.tool for r in seen] == [
        "dispatch",
        "dispatch_session",
        "stream",
        "as_completed",
        "dispatch_async",
    ]
    first = seen[0]
    assert (first.agent, first.success, first.caller, first.cached) == (
        "backend",
        True,
        "the planner",
        False,
    )
    assert first.cost_usd == 0.00014 and first.session_id
    assert first.started_at <= first.ended_at and first.duration_s >= 0
    assert seen[-1].job_id == job.id


async def test_a_cache_hit_is_marked_and_bills_nothing(
    journalled: tuple[Dispatcher, ScriptedRunner, Path],
) -> None:
    d, runner, path = journalled
    ask = DispatchRequest(agent="backend", task="same question")
    first, second = await d.dispatch(ask), await d.dispatch(ask)
    assert second.cached and len(runner.calls) == 1
    ran, hit = records(path)
    assert (ran.cached, ran.cost_usd) == (False, first.cost_usd)
    assert (hit.cached, hit.cost_usd, hit.turns) == (True, None, None)


async def test_each_record_carries_the_agents_outcome(
    journalled: tuple[Dispatcher, ScriptedRunner, Path],
) -> None:
    d, runner, path = journalled
    runner.on(Script(reply="Half.\nSTATUS: partial more to do"), prompt="half")
    runner.on(Script(reply="All.\nSTATUS: done"), prompt="all")
    await d.dispatch(DispatchRequest(agent="backend", task="half"))
    await d.dispatch(DispatchRequest(agent="backend", task="all"))
    await d.dispatch(DispatchRequest(agent="backend", task="plain"))
    assert [r.outcome for r in records(path)] == ["partial", "done", "unknown"]


async def test_a_failed_dispatch_is_journalled_with_its_error_type(
    journalled: tuple[Dispatcher, ScriptedRunner, Path],
) -> None:
    d, runner, path = journalled
    runner.on(Script(delay=5), agent="web")
    result = await d.dispatch(DispatchRequest(agent="web", task="slow", timeout_seconds=0.05))
    assert result.error_type == "timeout"
    [record] = records(path)
    assert (record.success, record.error_type) == (False, "timeout")


async def test_a_dispatcher_on_a_fixed_config_writes_no_journal(tmp_path: Path) -> None:
    async with Dispatcher.open(
        make_config(tmp_path), runner=ScriptedRunner(), jobs=JobStore(tmp_path / "jobs")
    ) as d:
        assert d.usage is None
        await d.dispatch(DispatchRequest(agent="backend", task="x"))
    assert not list(tmp_path.rglob("usage.jsonl"))


async def test_a_timeout_hint_suggests_the_agents_usual_time_rounded_up(
    journalled: tuple[Dispatcher, ScriptedRunner, Path],
) -> None:
    d, runner, path = journalled
    assert d.usage is not None
    for seconds in (200.0, 230.0, 250.0):  # what web's runs have taken
        usage.append(path, _run("web", seconds))
    await trio.to_thread.run_sync(d.usage.refresh)
    runner.on(Script(delay=5), agent="web")
    result = await d.dispatch(DispatchRequest(agent="web", task="slow", timeout_seconds=0.05))
    assert result.error_type == "timeout"
    assert "timeout_seconds=300" in (result.hint or ""), result.hint  # p90 250 s -> 300


def _run(agent: str, seconds: float) -> usage.UsageRecord:
    return usage.UsageRecord(
        agent=agent,
        tool="dispatch",
        success=True,
        started_at="2026-12-05T09:00:00+00:00",
        ended_at="2026-12-05T09:04:00+00:00",
        duration_s=seconds,
        cost_usd=0.02,
    )


# -- the MCP tools ----------------------------------------------------------------------


async def test_list_agents_and_inspect_agent_show_typical_figures_once_an_agent_ran(
    tools: Tools, ws: Workspace
) -> None:
    before = (await tools("list_agents")).ok["agents"]
    assert all("usage" not in a for a in before)
    assert (await tools("dispatch", agent="alpha", task="hello")).ok["success"]
    usage.append(ws.config.parent / "usage.jsonl", _run("beta", 42.0))  # another process
    agents = {a["name"]: a for a in (await tools("list_agents")).ok["agents"]}
    alpha = agents["alpha"]["usage"]
    assert alpha["runs"] == 1 and alpha["success_rate"] == 1.0
    assert alpha["p50_duration_s"] is not None and alpha["last_used"]
    assert agents["beta"]["usage"]["p90_duration_s"] == 42.0
    info = (await tools("inspect_agent", name="beta")).ok
    assert info["usage"]["runs"] == 1 and info["usage"]["p50_cost_usd"] == 0.02


# -- agent-dispatch stats -----------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path, monkeypatch, capsys)


def test_stats_on_no_journal_is_valid_json_with_nothing_in_it(cli: Cli) -> None:
    out = cli("stats", "--json")
    assert out.rc == 0, out.err
    report = json.loads(out.out)
    assert report["agents"] == [] and report["records"] == 0
    assert report["totals"]["runs"] == 0 and report["skipped_lines"] == 0
    assert "no dispatches" in cli("stats").out


def test_stats_on_a_damaged_journal_counts_what_it_skipped(cli: Cli) -> None:
    path = cli.config.parent / "usage.jsonl"
    path.parent.mkdir(parents=True)
    usage.append(path, _run("web", 10.0))
    with open(path, "ab") as f:
        f.write(b"\x00\x01 not json\n{\n")
    usage.append(path, _run("backend", 20.0))
    report = json.loads(cli("stats", "--json").out)
    assert report["skipped_lines"] == 2
    assert [a["agent"] for a in report["agents"]] == ["backend", "web"]
    assert report["totals"]["runs"] == 2 and report["totals"]["total_cost_usd"] == 0.04
    text = cli("stats").out
    assert "backend" in text and "skipped 2 line(s)" in text


def test_stats_filters_by_agent_and_by_days(cli: Cli) -> None:
    path = cli.config.parent / "usage.jsonl"
    path.parent.mkdir(parents=True)
    old = _run("web", 10.0)
    usage.append(path, old)  # 2026-12-05
    recent = msgspec.structs.replace(old, ended_at=now_iso(), agent="backend")
    usage.append(path, recent)
    only_web = json.loads(cli("stats", "--json", "--agent", "web").out)
    assert [a["agent"] for a in only_web["agents"]] == ["web"]
    last_day = json.loads(cli("stats", "--json", "--days", "0.5").out)
    assert [a["agent"] for a in last_day["agents"]] == ["backend"]
    bad = cli("stats", "--days", "0")
    assert bad.rc == 1 and "--days" in bad.err


def test_list_and_describe_show_an_agents_figures_once_it_ran(cli: Cli) -> None:
    cli.agent("web")
    cli.agent("backend")
    usage.append(cli.config.parent / "usage.jsonl", _run("web", 12.0))
    agents = {a["name"]: a for a in json.loads(cli("list", "--json").out)["agents"]}
    assert agents["web"]["usage"]["runs"] == 1 and "usage" not in agents["backend"]
    shown = cli("describe", "web").out
    assert "1 recent run, 100% succeeded, p50/p90 12.0s/12.0s" in shown
    assert json.loads(cli("describe", "web", "--json").out)["usage"]["p90_duration_s"] == 12.0
