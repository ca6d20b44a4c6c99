"""What a `claude -p` child costs when agent-dispatch is registered at user scope.

    .venv/bin/python -m benchmarks.child_cost [--rounds 7] [--source DIR ...]

`agent-dispatch init` registers `serve` at user scope, so every `claude -p`
child a dispatch starts also starts `serve` and connects to it. This runs the
real claude CLI (the e2e tier's pinned one, or $AGENT_DISPATCH_TEST_CLAUDE)
against the e2e tier's fake Anthropic API on 127.0.0.1, one run at a time,
in these setups, each in its own HOME registered with
`claude mcp add-json agent-dispatch ... --scope user`:

- `none`: no MCP server registered (the CLI's own fixed cost);
- `serve`: this checkout's `serve`;
- `serve from DIR`: the `agent_dispatch` package of another tree (`--source`,
  e.g. `git archive aead31b agent_dispatch | tar -x -C DIR`, the tree that still
  had the early handshake; there `--env AGENT_DISPATCH_EARLY=0` turned it off).
  `--env KEY=VALUE` adds to every `serve` setup's registered environment.

Rounds alternate the order of the setups, so drift on a shared machine hits
all alike; the table shows the median and the range of wall seconds per run.
A probe run per registered setup (not timed) records the wire through `tee`:
the method the CLI sends first, and what `serve` answered before the CLI let go.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from tests.e2e.conftest import INSTALLED_CLI, OVERRIDE_VAR
from tests.e2e.fake_anthropic import FakeAnthropic

REPO = Path(__file__).resolve().parents[1]
RUN_LIMIT_S = 60.0
PROMPT = "Say OK."


@dataclass
class Setup:
    """One way of registering (or not) agent-dispatch with the CLI."""

    name: str
    command: list[str] | None  # how the CLI starts `serve`; None: nothing registered
    env: dict[str, str] = field(default_factory=dict)  # the registration's "env"
    home: Path = Path()
    walls: list[float] = field(default_factory=list)
    first_method: str = "-"
    answered: str = "-"

    def entry(self, command: list[str] | None = None) -> str:
        """The `claude mcp add-json` JSON, optionally with another command line."""
        argv = command or self.command or []
        return json.dumps({"type": "stdio", "command": argv[0], "args": argv[1:], "env": self.env})


def serve_setup(name: str, root: Path, env: dict[str, str], source: Path | None) -> Setup:
    """`serve` as `agent-dispatch init` registers it (the console script), its own
    config and jobs dir; with `source`, the package imported from another tree."""
    config = root / "agents.yaml"
    config.write_text("agents: {}\n")
    config.chmod(0o600)
    base = {"AGENT_DISPATCH_CONFIG": str(config), "AGENT_DISPATCH_JOBS_DIR": str(root / "jobs")}
    if source is not None:
        base["PYTHONPATH"] = str(source.resolve())  # ahead of the editable install's entry
    script = Path(sys.executable).with_name("agent-dispatch")
    return Setup(name, [str(script), "serve"], base | env)


def claude_env(home: Path, base_url: str) -> dict[str, str]:
    """The e2e tier's isolated, offline environment (tests/e2e/conftest.py::claude_env)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLAUDE", "ANTHROPIC_")) and k != "IS_SANDBOX"
    }
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        TMPDIR=str(tmp),
        ANTHROPIC_BASE_URL=base_url,
        ANTHROPIC_API_KEY="sk-test",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_ERROR_REPORTING="1",
        CLAUDE_CODE_MAX_RETRIES="0",
    )
    return env


async def run_cli(claude: Path, setup: Setup, base_url: str, *args: str) -> tuple[float, str]:
    """One CLI run in the setup's HOME: (wall seconds, stdout)."""
    project = setup.home / "project"
    start = time.monotonic()
    with trio.fail_after(RUN_LIMIT_S):
        done = await trio.run_process(
            [str(claude), *args],
            cwd=project,
            env=claude_env(setup.home, base_url),
            stdin=subprocess.DEVNULL,  # a stdin pipe costs the CLI a 3 s wait
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    wall = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{setup.name}: claude {args[:2]} rc={done.returncode}: {done.stderr!r}")
    return wall, done.stdout.decode()


async def prepare(claude: Path, setup: Setup, base_url: str) -> None:
    (setup.home / "project").mkdir(parents=True)
    if setup.command is not None:
        await register(claude, setup, base_url, setup.entry())


async def register(claude: Path, setup: Setup, base_url: str, entry: str) -> None:
    """`claude mcp add-json agent-dispatch ... --scope user`, as `agent-dispatch init` does."""
    await run_cli(claude, setup, base_url, "mcp", "add-json", "agent-dispatch", entry, "-s", "user")


async def unregister(claude: Path, setup: Setup, base_url: str) -> None:
    await run_cli(claude, setup, base_url, "mcp", "remove", "agent-dispatch", "-s", "user")


async def child(claude: Path, setup: Setup, base_url: str) -> float:
    """One `claude -p` child as a dispatch starts it (stream-json, as ours does)."""
    argv = ("-p", "--output-format", "stream-json", "--verbose", "--", PROMPT)
    wall, stdout = await run_cli(claude, setup, base_url, *argv)
    result = json.loads(stdout.splitlines()[-1])
    if result.get("type") != "result" or result.get("is_error"):
        raise SystemExit(f"{setup.name}: not a successful run: {stdout[-400:]!r}")
    return wall


async def probe(claude: Path, setup: Setup, base_url: str) -> None:
    """One untimed run with the wire copied through `tee`: the CLI's first method, and
    which requests `serve` answered before the run ended."""
    assert setup.command is not None
    wire_in, wire_out = setup.home / "wire-in.jsonl", setup.home / "wire-out.jsonl"
    tee_in, tee_out = (f"tee {shlex.quote(str(path))}" for path in (wire_in, wire_out))
    teed = ["sh", "-c", f"{tee_in} | {shlex.join(setup.command)} | {tee_out}"]
    await unregister(claude, setup, base_url)
    await register(claude, setup, base_url, setup.entry(teed))
    await child(claude, setup, base_url)
    await unregister(claude, setup, base_url)
    await register(claude, setup, base_url, setup.entry())
    sent = [json.loads(line) for line in wire_in.read_text().splitlines() if line.strip()]
    got = [json.loads(line) for line in wire_out.read_text().splitlines() if line.strip()]
    setup.first_method = sent[0].get("method", "-") if sent else "(nothing)"
    methods = {m["id"]: m.get("method") for m in sent if "id" in m}
    answered = [str(methods.get(m.get("id"), m.get("method"))) for m in got]
    setup.answered = ", ".join(answered) or "nothing"


def locate_claude() -> Path:
    override = os.environ.get(OVERRIDE_VAR)
    binary = Path(override) if override else INSTALLED_CLI
    if not binary.exists():
        raise SystemExit(f"no claude CLI at {binary}: run scripts/install-claude-cli")
    return binary


def cli_version(claude: Path) -> str:
    done = subprocess.run(
        [str(claude), "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    return done.stdout.strip()


async def measure(args: argparse.Namespace) -> list[Setup]:
    claude = locate_claude()
    with tempfile.TemporaryDirectory(prefix="child-cost-") as tmp:
        root = Path(tmp)
        env = dict(pair.split("=", 1) for pair in args.env)
        setups = [
            Setup("none (no MCP server registered)", None),
            serve_setup("serve (this checkout)", root, env, None),
        ]
        setups += [serve_setup(f"serve from {dir_}", root, env, dir_) for dir_ in args.source]
        async with trio.open_nursery() as nursery:
            fake = FakeAnthropic()
            base_url = await nursery.start(fake.serve)
            for n, setup in enumerate(setups):
                setup.home = root / f"home{n}"
                await prepare(claude, setup, base_url)
                await child(claude, setup, base_url)  # warm-up: page cache, first-run files
            for setup in setups:
                if setup.command is not None:
                    await probe(claude, setup, base_url)
            for round_ in range(args.rounds):
                order = setups if round_ % 2 == 0 else setups[::-1]
                for setup in order:
                    setup.walls.append(await child(claude, setup, base_url))
                    print(
                        f"round {round_ + 1}: {setup.name}: {setup.walls[-1]:.2f} s",
                        file=sys.stderr,
                    )
            nursery.cancel_scope.cancel()
    return setups


def report(setups: list[Setup], rounds: int, claude: str) -> str:
    load = os.getloadavg()
    lines = [
        f"claude {claude}; {os.cpu_count()} cores; median of {rounds} runs per setup, "
        f"alternating; load average after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "",
        "| setup | median | min-max | vs none | first method | answered by serve |",
        "|---|---:|---:|---:|---|---|",
    ]
    none = statistics.median(setups[0].walls)
    for setup in setups:
        median = statistics.median(setup.walls)
        lines.append(
            f"| {setup.name} | {median:.2f} s | {min(setup.walls):.2f}-{max(setup.walls):.2f} s"
            f" | {median - none:+.2f} s | {setup.first_method} | {setup.answered} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--source", type=Path, action="append", default=[], metavar="DIR")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    setups = trio.run(measure, args)
    print(report(setups, args.rounds, cli_version(locate_claude())))


if __name__ == "__main__":
    main()
