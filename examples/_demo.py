"""The setup the examples share: two sample projects answered by the bundled demo agent.

`agent-dispatch demo --simulated` stands in for `claude` with
agent_dispatch/cli/demo_agent.py: a script that takes the flags a dispatch passes,
reads CLAUDE.md in its project directory and answers with the sentence of it that
best matches the task, after 0.15 s per step (streamed runs get three steps: text,
a `Read` tool call, text). The examples use the same agent the same way: a
throw-away directory with two projects, a `claude` wrapper that runs the demo agent
with this Python, and a `Config` whose `settings.claude_path` names the wrapper.
Real child processes, in their own process groups, with no network and no claude
CLI. For real agents, open the Dispatcher with `load_config()` instead.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from agent_dispatch import AgentConfig, Config, Dispatcher, JobStore, Settings

PROJECTS = {
    "billing-api": (
        "Billing API: a small Python service that creates invoices and records payments. "
        "POST /invoices creates an invoice and returns its id. "
        "POST /invoices/{id}/pay records a card payment and marks the invoice paid. "
        "Payments are stored in the payments table, one row per successful charge."
    ),
    "web-app": (
        "Web app: the React front end of the billing product. "
        "The Invoices page lists a customer's invoices with their status. "
        "The checkout form calls POST /invoices/{id}/pay and shows the receipt."
    ),
}


@dataclass(frozen=True)
class Demo:
    """A config of the sample agents, the environment their children get, a jobs dir."""

    config: Config
    env: dict[str, str]
    jobs: JobStore

    def open(
        self, *, max_concurrency: int | None = None
    ) -> AbstractAsyncContextManager[Dispatcher]:
        """`Dispatcher.open` on the demo setup (its jobs stay in the throw-away directory)."""
        return Dispatcher.open(
            self.config, max_concurrency=max_concurrency, env=self.env, jobs=self.jobs
        )


def _demo_agent() -> str:
    spec = importlib.util.find_spec("agent_dispatch.cli.demo_agent")
    if spec is None or spec.origin is None:
        raise RuntimeError("agent_dispatch.cli.demo_agent is missing from this install")
    return spec.origin


def _build(root: Path) -> Demo:
    """Blocking file work, run in a worker thread."""
    agents = {}
    for name, brief in PROJECTS.items():
        project = root / "projects" / name
        project.mkdir(parents=True)
        (project / "CLAUDE.md").write_text(f"# {name}\n\n{brief}\n", encoding="utf-8")
        agents[name] = AgentConfig(directory=str(project), description=brief.split(":")[0])
    claude = root / "bin" / "claude"
    claude.parent.mkdir()
    claude.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -S {shlex.quote(_demo_agent())} "$@"\n',
        encoding="utf-8",
    )
    claude.chmod(0o700)
    env = dict(os.environ)
    env.pop("AGENT_DISPATCH_CLAUDE", None)  # it would win over settings.claude_path
    env.pop("AGENT_DISPATCH_DEPTH", None)  # a fresh start, not a nested dispatch
    config = Config(agents=agents, settings=Settings(claude_path=str(claude)))
    return Demo(config=config, env=env, jobs=JobStore(root / "jobs"))


@asynccontextmanager
async def demo_agents() -> AsyncIterator[Demo]:
    """The demo setup in a temporary directory, removed when the block is left."""
    root = await trio.to_thread.run_sync(
        functools.partial(tempfile.mkdtemp, prefix="agent-dispatch-example-")
    )
    try:
        yield await trio.to_thread.run_sync(_build, Path(root))
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(functools.partial(shutil.rmtree, root, True))
