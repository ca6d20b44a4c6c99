"""The library's public face: every name from `agent_dispatch`, typed for a user's mypy."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import agent_dispatch

USER_SCRIPT = """
import trio
from agent_dispatch import (
    CancelResult, DispatchFailed, Dispatcher, DispatchRequest, DispatchResult,
    Outcome, ProgressEvent, Run, ScriptedRunner, Config, WaitMode,
)

async def main() -> None:
    async with Dispatcher.open(Config(), runner=ScriptedRunner(), max_concurrency=2) as d:
        result: DispatchResult = await d.dispatch(DispatchRequest(agent="a", task="t"))
        outcome_of: Outcome | None = result.outcome
        try:
            result.raise_for_error()
        except DispatchFailed as exc:
            print(exc.result.error_type)
        async with d.stream(DispatchRequest(agent="a", task="t")) as run:
            async for event in run:
                kind: str = event.kind
        done: Run = run
        async for index, item in d.as_completed([DispatchRequest(agent="a", task="t")]):
            print(index + 1, item.success)
        job = await d.submit(DispatchRequest(agent="a", task="t"))
        await d.wait([job.id], mode=WaitMode.ANY)
        outcome = await d.cancel(job.id)
        assert outcome.outcome in (CancelResult.CANCELLED, CancelResult.ALREADY_TERMINAL)
        print(done.dropped, ProgressEvent("text", "x").at)

trio.run(main)
"""


def test_every_exported_name_is_there() -> None:
    missing = [name for name in agent_dispatch.__all__ if not hasattr(agent_dispatch, name)]
    assert missing == []


def test_a_users_script_passes_mypy_strict_against_the_installed_package(tmp_path: Path) -> None:
    """py.typed: mypy reads our annotations from the installed package (outside the repo)."""
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
        cwd=tmp_path,  # not the repository: the package comes from site-packages
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "import-untyped" not in done.stdout
