"""The end-to-end tier: the real claude CLI against our fake Anthropic API.

The CLI is ``$AGENT_DISPATCH_TEST_CLAUDE`` when set, else the pinned version
that ``scripts/install-claude-cli`` puts in ``.cache/claude-cli/``. Tests that
need it take the ``claude_bin`` fixture, which skips them with the reason when
it is absent (and fails them when ``CI=true``: CI must always run the tier).
Every test here carries the ``e2e`` marker; the run ends with the tier's total time.

Fixtures: ``fake_api`` (our fake Anthropic API), ``claude_env`` (an isolated,
offline environment), ``project_dir``, ``claude`` (the CLI run directly) and
``server`` (the real ``agent-dispatch serve`` over stdio, running the CLI).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.fake_anthropic import FakeAnthropic
from tests.e2e.server_harness import ServerUnderTest, served

REPO = Path(__file__).resolve().parents[2]
PINNED_VERSION = (REPO / "scripts" / "claude-cli-version").read_text().strip()
INSTALLED_CLI = REPO / ".cache" / "claude-cli" / "claude"
OVERRIDE_VAR = "AGENT_DISPATCH_TEST_CLAUDE"

# A bound on any one CLI run in this tier; a healthy run takes about a second.
RUN_LIMIT_S = 60.0

_CLAUDE = pytest.StashKey[tuple[Path | None, str]]()
_TIER_TIMES = pytest.StashKey[list[float]]()


def _cli_version(binary: Path) -> str | None:
    try:
        done = subprocess.run(
            [str(binary), "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.split()[0] if done.returncode == 0 and done.stdout.strip() else None


def _locate_claude() -> tuple[Path | None, str]:
    """The CLI to test and a description, or None and the reason it is absent."""
    hint = "run scripts/install-claude-cli"
    override = os.environ.get(OVERRIDE_VAR)
    if override:
        binary = Path(override)
        version = _cli_version(binary)
        if version is None:
            return None, f"claude CLI not runnable: ${OVERRIDE_VAR}={override}"
        return binary, f"{binary} {version} (from ${OVERRIDE_VAR})"
    version = _cli_version(INSTALLED_CLI)
    if version is None:
        return None, f"claude CLI not installed: {hint}"
    if version != PINNED_VERSION:
        return None, f"claude CLI {version} installed, {PINNED_VERSION} pinned: {hint}"
    return INSTALLED_CLI, f"{INSTALLED_CLI} {version}"


def _in_tier(item: pytest.Item) -> bool:
    return Path(__file__).parent in item.path.parents


@pytest.hookimpl(tryfirst=True)  # before `-m` selection sees the items
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _in_tier(item):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Time each e2e test, setup and teardown included, for the tier's total."""
    if not _in_tier(item):
        return (yield)
    start = time.monotonic()
    try:
        return (yield)
    finally:
        item.config.stash.setdefault(_TIER_TIMES, []).append(time.monotonic() - start)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    times = config.stash.get(_TIER_TIMES, [])
    if times:
        terminalreporter.write_line(f"e2e tier: {len(times)} tests in {sum(times):.1f} s")


@pytest.fixture(scope="session")
def claude_bin(pytestconfig: pytest.Config) -> Path:
    """The claude executable under test; skips the test when there is none."""
    if _CLAUDE not in pytestconfig.stash:
        pytestconfig.stash[_CLAUDE] = _locate_claude()
    binary, reason = pytestconfig.stash[_CLAUDE]
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the e2e tier must run)")
        pytest.skip(reason)
    return binary


@pytest.fixture
async def fake_api(nursery: trio.Nursery) -> FakeAnthropic:
    """Our fake Anthropic API, serving on 127.0.0.1 until the test ends.

    By default it answers every request with a short text; tests call
    ``fake_api.script(...)`` to decide the replies.
    """
    fake = FakeAnthropic()
    await nursery.start(fake.serve)
    return fake


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """The directory the CLI runs in (its cwd, the agent's project)."""
    path = tmp_path / "project"
    path.mkdir()
    return path


def isolated_env(root: Path, base_url: str) -> dict[str, str]:
    """An isolated environment for the CLI against the fake API at ``base_url``: own
    HOME and TMPDIR (made under ``root``), fully offline."""
    home = root / "home"
    tmpdir = root / "tmp"
    home.mkdir()
    tmpdir.mkdir()
    # Drop the caller's claude settings (CLAUDECODE and CLAUDE_CODE_ENTRYPOINT
    # of a parent session, CLAUDE_CONFIG_DIR, ANTHROPIC_MODEL, ...): only ours count.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLAUDE", "ANTHROPIC_")) and k != "IS_SANDBOX"
    }
    env.update(
        HOME=str(home),
        TMPDIR=str(tmpdir),
        ANTHROPIC_BASE_URL=base_url,
        ANTHROPIC_API_KEY="sk-test",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_ERROR_REPORTING="1",
        CLAUDE_CODE_MAX_RETRIES="0",
    )
    return env


@pytest.fixture
def claude_env(tmp_path: Path, fake_api: FakeAnthropic) -> dict[str, str]:
    """An isolated environment for one CLI run: own HOME and TMPDIR, fully offline."""
    return isolated_env(tmp_path, fake_api.base_url)


@dataclass(frozen=True)
class CliRun:
    """One finished CLI run."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall_s: float

    def lines(self) -> list[dict[str, Any]]:
        """stdout as JSON objects, one per line (json or stream-json format)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def result(self) -> dict[str, Any]:
        """The ``"type": "result"`` object (the last one)."""
        results = [o for o in self.lines() if o.get("type") == "result"]
        assert results, f"no result line; rc={self.returncode} stderr={self.stderr!r}"
        return results[-1]


@dataclass(frozen=True)
class ClaudeRunner:
    """Runs the real CLI in ``project_dir`` with ``claude_env``, stdin from /dev/null."""

    binary: Path
    env: Mapping[str, str]
    cwd: Path

    async def run(self, *args: str, extra_env: Mapping[str, str] | None = None) -> CliRun:
        argv = [str(self.binary), *args]
        env = {**self.env, **(extra_env or {})}
        start = time.monotonic()
        with trio.fail_after(RUN_LIMIT_S):
            done = await trio.run_process(
                argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,  # a stdin pipe costs the CLI a 3 s wait
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        run = CliRun(
            argv=argv,
            returncode=done.returncode,
            stdout=done.stdout.decode(),
            stderr=done.stderr.decode(),
            wall_s=time.monotonic() - start,
        )
        print(f"claude {' '.join(args)!r}: rc={run.returncode} wall={run.wall_s:.2f} s")
        return run


@pytest.fixture
def claude(claude_bin: Path, claude_env: dict[str, str], project_dir: Path) -> ClaudeRunner:
    """The real CLI, ready to run against ``fake_api`` in ``project_dir``."""
    return ClaudeRunner(binary=claude_bin, env=claude_env, cwd=project_dir)


@pytest.fixture
async def server(
    claude_bin: Path, claude_env: dict[str, str], project_dir: Path, tmp_path: Path
) -> AsyncIterator[ServerUnderTest]:
    """The real ``agent-dispatch serve`` over stdio, its agents working in ``project_dir``
    (see ``server_harness.agents_config``) with the real CLI against ``fake_api``."""
    root = tmp_path / "server"
    root.mkdir()
    async with served(root, project_dir, claude_bin, claude_env) as under_test:
        yield under_test
