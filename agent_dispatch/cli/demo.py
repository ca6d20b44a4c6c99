"""`agent-dispatch demo`: the real MCP server, driven by a real MCP client, on a throw-away setup.

It builds a temporary config with two sample projects (each with a CLAUDE.md),
starts `python -m agent_dispatch serve --standalone` as a stdio subprocess (the
server in that process: a throw-away setup needs no background service) and calls
list_agents, dispatch, dispatch_parallel (with aggregate), dispatch_async and
dispatch_wait, printing what each returns.

Agents are real when a claude CLI is installed and looks logged in (an API key
or OAuth token in the environment, or Claude Code's stored credentials);
otherwise the bundled `demo_agent.py` simulates them, and every line printed
says `[simulated]`. `--simulated` forces the simulation.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import trio
from cyclopts import Parameter

from agent_dispatch import exception_groups
from agent_dispatch.cli.common import CLAUDE_ENV_VAR, command, cut, emit, find_claude, money
from agent_dispatch.errors import DispatchError
from agent_dispatch.models import AgentPatch
from agent_dispatch.service import registry
from agent_dispatch.storage.config import ENV_VAR as CONFIG_ENV_VAR
from agent_dispatch.storage.config import ConfigStore
from agent_dispatch.storage.jobs import ENV_VAR as JOBS_ENV_VAR

SIMULATED_SECONDS = 60.0
REAL_SECONDS = 900.0
_PROJECTS = {
    "billing-api": (
        "# Billing API\n\n"
        "Billing API: a small Python service that creates invoices, applies discounts and "
        "records payments in PostgreSQL. POST /invoices creates an invoice and returns its id. "
        "POST /invoices/{id}/pay records a card payment and marks the invoice paid. "
        "Payments are recorded in the payments table, one row per successful charge.\n",
        ("pyproject.toml", '[project]\nname = "billing-api"\nversion = "0.1.0"\n'),
    ),
    "web-app": (
        "# Web app\n\n"
        "Web app: the React front end of the billing product. The Invoices page lists a "
        "customer's invoices with their status. Paying by card opens a checkout form that calls "
        "the billing API's POST /invoices/{id}/pay endpoint and shows the receipt.\n",
        ("package.json", '{"name": "web-app", "private": true}\n'),
    ),
}


class _Out:
    """Prints lines, each labelled `[simulated]` when the agents are simulated."""

    def __init__(self, simulated: bool) -> None:
        self.prefix = "[simulated] " if simulated else ""
        self.failures = 0

    def __call__(self, text: str = "", indent: int = 0) -> None:
        for line in text.splitlines() or [""]:
            emit(f"{self.prefix}{' ' * indent}{line}".rstrip())


def _logged_in(env: dict[str, str]) -> bool:
    """A cheap guess that the claude CLI can answer (no API call is made)."""
    if env.get("ANTHROPIC_API_KEY") or env.get("CLAUDE_CODE_OAUTH_TOKEN"):
        return True
    home = Path(env.get("CLAUDE_CONFIG_DIR") or Path(env.get("HOME") or Path.home()) / ".claude")
    if (home / ".credentials.json").is_file():
        return True
    try:  # macOS keeps the token in the keychain; the account shows up here
        with open(Path(env.get("HOME") or Path.home()) / ".claude.json", "rb") as f:
            return b'"oauthAccount"' in f.read(4 * 1024 * 1024)
    except OSError:
        return False


def _make_projects(root: Path) -> dict[str, Path]:
    dirs = {}
    for name, (claude_md, (extra, content)) in _PROJECTS.items():
        project = root / "projects" / name
        project.mkdir(parents=True)
        (project / "CLAUDE.md").write_text(claude_md, encoding="utf-8")
        (project / extra).write_text(content, encoding="utf-8")
        dirs[name] = project
    return dirs


def _simulated_claude(root: Path) -> Path:
    """A `claude` wrapper that runs the bundled demo agent with this Python."""
    agent = Path(__file__).with_name("demo_agent.py")
    wrapper = root / "bin" / "claude"
    wrapper.parent.mkdir()
    wrapper.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -S {shlex.quote(str(agent))} "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(0o700)
    return wrapper


def _setup(root: Path, simulated: bool) -> dict[str, str]:
    """Config, sample agents and the server's environment under `root`."""
    store = ConfigStore(root / "config" / "agents.yaml")
    for name, directory in _make_projects(root).items():
        registry.add_agent(store, name, AgentPatch(directory=str(directory), timeout=180))
    env = dict(os.environ)
    env.pop("AGENT_DISPATCH_DEPTH", None)  # the demo is a fresh start, not a nested dispatch
    env[CONFIG_ENV_VAR] = str(store.path)
    env[JOBS_ENV_VAR] = str(root / "jobs")
    if simulated:
        env[CLAUDE_ENV_VAR] = str(_simulated_claude(root))
    return env


async def _call(client: Any, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    data = result.structured_content
    if result.is_error or not isinstance(data, dict):
        text = " ".join(getattr(block, "text", "") for block in result.content)
        raise DispatchError(f"{tool} failed: {text or 'no structured result'}")
    return data


def _show_result(out: _Out, res: dict[str, Any], label: str = "") -> None:
    head = f"{label}: " if label else ""
    if res.get("success"):
        secs = (res.get("duration_ms") or 0) / 1000
        cached = ", cached" if res.get("cached") else ""
        outcome = f", outcome {res['outcome']}" if res.get("outcome") else ""
        reason = f" ({res['outcome_reason']})" if outcome and res.get("outcome_reason") else ""
        cost = money(res.get("cost_usd"))
        out(f"<- {head}ok in {secs:.1f}s, cost {cost}{cached}{outcome}{reason}", 2)
        out(cut(res.get("result", ""), 400), 5)
        if res.get("outcome") in ("partial", "blocked") and res.get("hint"):
            out(f"hint: {cut(res['hint'], 300)}", 5)
    else:
        out.failures += 1
        out(f"<- {head}FAILED ({res.get('error_type')}): {cut(res.get('error') or '', 300)}", 2)
        if res.get("hint"):
            out(f"hint: {cut(res['hint'], 300)}", 5)


async def _tour(out: _Out, env: dict[str, str]) -> None:
    from mcp import Client, StdioServerParameters  # mcp is slow to import: only here

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "agent_dispatch", "serve", "--standalone"], env=env
    )
    out("starting the MCP server: python -m agent_dispatch serve --standalone (stdio)")
    async with Client(params) as client:
        tools = await client.list_tools()
        out(f"connected; the server offers {len(tools.tools)} tools")

        out("")
        out("== 1/5 list_agents: who can I delegate to? ==")
        agents = (await _call(client, "list_agents", {}))["agents"]
        for a in agents:
            health = "healthy" if a["healthy"] is True else f"UNHEALTHY ({a.get('problem')})"
            stacks = ",".join(a["stacks"]) or "-"
            out(f"{a['name']:<12} {health:<8} {stacks:<7} {cut(a['description'], 70)}", 2)

        out("")
        out("== 2/5 dispatch: one task to one agent ==")
        task = "Which endpoint creates an invoice? Answer in one sentence."
        out(f'-> dispatch(agent="billing-api", task="{task}")', 2)
        _show_result(out, await _call(client, "dispatch", {"agent": "billing-api", "task": task}))

        out("")
        out("== 3/5 dispatch_parallel: two agents at once, merged by an aggregate agent ==")
        items = [
            {"agent": "billing-api", "task": "In one sentence: how is a payment recorded?"},
            {"agent": "web-app", "task": "In one sentence: where does a customer see invoices?"},
        ]
        for item in items:
            out(f'-> {item["agent"]}: "{item["task"]}"', 2)
        out('   aggregate="billing-api"', 2)
        both = await _call(
            client, "dispatch_parallel", {"dispatches": items, "aggregate": "billing-api"}
        )
        for res in both["individual_results"]:
            _show_result(out, res, res["agent"])
        _show_result(out, both["aggregated"], "merged by billing-api")

        out("")
        out("== 4/5 dispatch_async + dispatch_wait: a background job with progress ==")
        task = "In two sentences: how does paying by card flow from the web app to the API?"
        job = await _call(client, "dispatch_async", {"agent": "web-app", "task": task})
        out(f'-> dispatch_async(agent="web-app", task="{task}")', 2)
        out(f"<- job {job['job_id']} is {job['status']}; free to do other work meanwhile", 2)
        out(f'-> dispatch_wait(job_id="{job["job_id"]}", timeout_seconds=600)', 2)
        record = await _call(
            client, "dispatch_wait", {"job_id": job["job_id"], "timeout_seconds": 600}
        )
        out(f"<- job {record['status']}; its progress, as the job recorded it:", 2)
        for line in record["progress"] or ["(no progress lines)"]:
            out(f"| {cut(line, 100)}", 5)
        if record.get("result"):
            _show_result(out, record["result"], "result")

        out("")
        out("== 5/5 list_agents again: what each agent took, from the usage journal ==")
        for a in (await _call(client, "list_agents", {}))["agents"]:
            u = a.get("usage")
            if u is None:
                out(f"{a['name']:<12} no runs yet", 2)
                continue
            out(
                f"{a['name']:<12} {u['runs']} runs, {u['success_rate']:.0%} succeeded, "
                f"p50 {u.get('p50_duration_s', 0):.2f}s, p90 {u.get('p90_duration_s', 0):.2f}s, "
                f"p50 cost {money(u.get('p50_cost_usd'))}",
                2,
            )
        out("(`agent-dispatch stats` shows the same, with totals, for your own setup)", 2)


def _demo_error(prefix: str, exc: Exception) -> DispatchError:
    """The demo's edge: what its server and client raised, as one error line."""
    leaf = exception_groups.leaves(exc)[0]
    if isinstance(leaf, DispatchError):
        return DispatchError(f"{prefix}demo: {leaf.message}", leaf.face_hint)
    return DispatchError(
        f"{prefix}demo: the MCP server or client failed: {type(leaf).__name__}: {leaf}",
        "Run `agent-dispatch doctor`; AGENT_DISPATCH_LOG_LEVEL=DEBUG shows the server's log.",
    )


async def demo(
    *,
    simulated: Annotated[bool, Parameter(negative="")] = False,
    keep: Annotated[bool, Parameter(negative="")] = False,
) -> int:
    """Show the product end to end: the real MCP server and client, two sample agents.

    Uses your claude CLI when it is installed and logged in; otherwise the agents are
    simulated (and every line says so). Nothing outside a temporary directory is touched.

    Parameters
    ----------
    simulated
        Simulate the agents even when a logged-in claude CLI is available.
    keep
        Keep the temporary directory and print how to look at what the tour left
        (its usage journal with `stats`, its jobs, `doctor`).
    """
    env = dict(os.environ)
    claude = find_claude(None, env)
    use_real = not simulated and claude is not None and _logged_in(env)
    out = _Out(simulated=not use_real)
    started = time.monotonic()
    out("agent-dispatch demo: the real MCP server and client, with two sample agents")
    if use_real:
        out(f"agents run your claude CLI ({claude}); each answer costs a little.")
    else:
        why = "forced by --simulated" if simulated else "no logged-in claude CLI found"
        out(f"agents are simulated ({why}) by agent_dispatch/cli/demo_agent.py.")
    limit = REAL_SECONDS if use_real else SIMULATED_SECONDS
    tmp = tempfile.mkdtemp(prefix="agent-dispatch-demo-")
    setup: dict[str, str] = {}
    try:
        out(f"throw-away config, projects and jobs in {tmp}")
        try:
            setup = _setup(Path(tmp), simulated=not use_real)
            with trio.fail_after(limit):
                await _tour(out, setup)
        except trio.TooSlowError:
            raise DispatchError(f"{out.prefix}the demo did not finish within {limit:g}s") from None
        except Exception as exc:  # translate to one user-facing error (groups included)
            raise _demo_error(out.prefix, exc) from None
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if keep and setup:
        names = (CONFIG_ENV_VAR, JOBS_ENV_VAR)
        where = " ".join(f"{name}={shlex.quote(setup[name])}" for name in names)
        out("")
        out(f"kept {tmp}; look at what the tour left (then rm -r it):")
        for look in (["stats"], ["jobs", "--status", "done"], ["doctor"]):
            out(f"{where} {command('agent-dispatch', *look)}", 2)
    if out.failures:
        raise DispatchError(
            f"{out.prefix}demo: {out.failures} of the dispatches failed (see above)",
            "`agent-dispatch test NAME` diagnoses an agent; "
            "`agent-dispatch demo --simulated` shows the flow without claude.",
        )
    out("")
    out(f"done in {time.monotonic() - started:.1f}s. Set it up for your own projects:")
    for argv in (("init",), ("add", "NAME", "DIR"), ("test", "NAME"), ("doctor",)):
        out(command("agent-dispatch", *argv), 2)
    return 0
