"""What a `claude -p` child costs when agent-dispatch is registered at user scope.

    .venv/bin/python -m benchmarks.child_cost [--rounds 7] [--source DIR ...]

`agent-dispatch init` registers `serve` at user scope, so every `claude -p`
child a dispatch starts also starts `serve` and connects to it. This runs the
real claude CLI (the e2e tier's pinned one, or $AGENT_DISPATCH_TEST_CLAUDE)
against the e2e tier's fake Anthropic API on 127.0.0.1, one run at a time,
in these setups, each in its own HOME registered with
`claude mcp add-json agent-dispatch ... --scope user`:

- `none`: no MCP server registered (the CLI's own fixed cost);
- `front`: this checkout's `serve`, the thin front, relaying to the setup's
  per-user service. The service is started by the untimed warm-up run and
  stays up, so the timed rounds measure the warm case users have;
- `standalone`: this checkout's `serve --standalone` (the in-process server);
- `floor`: `benchmarks/replay_server.py` under `python -S -I`, answering every
  request at once from the front's recorded session (its probe, below): what any
  stdio server written in Python costs a child when answering costs nothing, the
  bound under which no front can go;
- `serve from DIR`: the `agent_dispatch` package of another tree (`--source`,
  e.g. `git archive aead31b agent_dispatch | tar -x -C DIR`).
  `--env KEY=VALUE` adds to every registered setup's environment.

Every registered setup has its own config, jobs directory, XDG_RUNTIME_DIR and
XDG_CACHE_HOME inside the benchmark's temporary directory, so its own service
(socket, lock, log); every service the run started is stopped at the end, on
an error or Ctrl-C too (`agent-dispatch service stop`, then SIGTERM to anything
left that carries the run's marker), so the benchmark leaves no process behind.

The children get no PYTHONDONTWRITEBYTECODE: with it a front recompiles its modules
on every start (~10 ms more), which users, whose installs hold the .pyc files, never pay.

Rounds alternate the order of the setups, so drift on a shared machine hits
all alike; the table shows the median and the range of wall seconds per run.
A probe run per registered setup (not timed) records the wire through `tee`:
the method the CLI sends first, and what `serve` answered before the CLI let go.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import trio

from agent_dispatch import rendezvous
from tests.e2e.conftest import INSTALLED_CLI, OVERRIDE_VAR
from tests.e2e.fake_anthropic import FakeAnthropic

REPO = Path(__file__).resolve().parents[1]
RUN_LIMIT_S = 60.0
STOP_LIMIT_S = 30.0
PROMPT = "Say OK."
MARKER = "CHILD_COST_RUN"  # in every registered env: what the last-resort sweep looks for
SCRIPT = Path(sys.executable).with_name("agent-dispatch")


@dataclass
class Setup:
    """One way of registering (or not) agent-dispatch with the CLI."""

    name: str
    command: list[str] | None  # how the CLI starts `serve`; None: nothing registered
    home: Path
    env: dict[str, str] = field(default_factory=dict)  # the registration's "env"
    front: bool = False  # its `serve` relays to a service the run must stop
    replays: Setup | None = None  # a floor: answers from this setup's recorded session
    walls: list[float] = field(default_factory=list)
    first_method: str = "-"
    answered: str = "-"
    service_pids: list[int] = field(default_factory=list)  # seen before and after the rounds

    def entry(self, command: list[str] | None = None) -> str:
        """The `claude mcp add-json` JSON, optionally with another command line."""
        argv = command or self.command or []
        return json.dumps({"type": "stdio", "command": argv[0], "args": argv[1:], "env": self.env})

    def service_env(self) -> dict[str, str]:
        """What names the setup's service: the env `agent-dispatch service ...` needs."""
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home)} | {
            k: v for k, v in self.env.items() if k != "AGENT_DISPATCH_LOG_LEVEL"
        }


def serve_setup(
    name: str,
    root: Path,
    argv: list[str],
    env: dict[str, str],
    run_id: str,
    *,
    front: bool,
    source: Path | None = None,
) -> Setup:
    """`serve` as `agent-dispatch init` registers it (the console script), with its own
    HOME, config, jobs dir, runtime dir and cache dir under `root`; with `source`, the
    package imported from another tree."""
    root.mkdir(mode=0o700)
    config = root / "agents.yaml"
    config.write_text("agents: {}\n")
    config.chmod(0o600)
    (root / "run").mkdir(mode=0o700)  # must exist, or the socket goes to /tmp/agent-dispatch-UID
    base = {
        "AGENT_DISPATCH_CONFIG": str(config),
        "AGENT_DISPATCH_JOBS_DIR": str(root / "jobs"),
        "XDG_RUNTIME_DIR": str(root / "run"),
        "XDG_CACHE_HOME": str(root / "cache"),
        MARKER: run_id,
    }
    if source is not None:
        base["PYTHONPATH"] = str(source.resolve())  # ahead of the editable install's entry
    return Setup(name, argv, root / "home", base | env, front=front)


def make_setups(root: Path, args: argparse.Namespace, run_id: str) -> list[Setup]:
    env = dict(pair.split("=", 1) for pair in args.env)
    serve = [str(SCRIPT), "serve"]
    setups = [
        Setup("none (no MCP server registered)", None, root / "none" / "home"),
        serve_setup(
            "front (this checkout's serve)", root / "front", serve, env, run_id, front=True
        ),
        serve_setup(
            "standalone (serve --standalone)",
            root / "standalone",
            [*serve, "--standalone"],
            env,
            run_id,
            front=False,
        ),
    ]
    front = setups[1]
    floor = root / "floor"
    wire = (str(floor / "home" / "wire-in.jsonl"), str(floor / "home" / "wire-out.jsonl"))
    replay = [sys.executable, "-S", "-I", str(REPO / "benchmarks" / "replay_server.py"), *wire]
    setups.insert(2, Setup("floor (canned answers, python -S -I)", replay, floor / "home"))
    setups[2].replays = front
    for n, dir_ in enumerate(args.source):
        setups.append(
            serve_setup(
                f"serve from {dir_}",
                root / f"source{n}",
                serve,
                env,
                run_id,
                front=True,
                source=dir_,
            )
        )
    return setups


def claude_env(home: Path, base_url: str) -> dict[str, str]:
    """The e2e tier's isolated, offline environment (tests/e2e/conftest.py::claude_env)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLAUDE", "ANTHROPIC_"))
        and k not in ("IS_SANDBOX", "PYTHONDONTWRITEBYTECODE")
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


# -- the setups' services -------------------------------------------------------------


def service_cli(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    """`agent-dispatch service ARGS` in the setup's environment."""
    return subprocess.run(
        [str(SCRIPT), "service", *args],
        env=setup.service_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=STOP_LIMIT_S,
    )


def service_pid(setup: Setup) -> int | None:
    """The pid of the setup's running service (`service status --json`), None if none."""
    done = service_cli(setup, "status", "--json")
    try:
        status = json.loads(done.stdout)
    except ValueError:
        return None
    return status.get("pid") if status.get("running") else None


def check_service(setup: Setup) -> None:
    """The front setup's service runs, on a socket inside the run's temporary directory."""
    sock = rendezvous.socket_path(setup.service_env())
    if not sock.is_relative_to(setup.env["XDG_RUNTIME_DIR"]):
        raise SystemExit(f"{setup.name}: the service socket {sock} is outside the sandbox")
    pid = service_pid(setup)
    if pid is None:
        raise SystemExit(f"{setup.name}: no service answers on {sock} after the warm-up")
    setup.service_pids.append(pid)


def marked_pids(run_id: str) -> list[int]:
    """Live processes whose environment carries this run's marker (services, fronts)."""
    marker = f"{MARKER}={run_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    found.append(int(entry))
    return found


def stop_services(setups: list[Setup], run_id: str) -> None:
    """Stop every service the run started (`service stop`), then SIGTERM (and after 5 s
    SIGKILL) whatever still carries the run's marker. Reports to stderr."""
    for setup in setups:
        if setup.front:
            done = service_cli(setup, "stop")
            print(f"{setup.name}: {(done.stdout or done.stderr).strip()}", file=sys.stderr)
    leftover = marked_pids(run_id)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not leftover:
            return
        print(f"left running: pids {leftover}: {sig.name}", file=sys.stderr)
        for pid in leftover:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while (leftover := marked_pids(run_id)) and time.monotonic() < deadline:
            time.sleep(0.05)


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """Ctrl-C held off while the services are stopped (a second one must not skip it)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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


async def measure(claude: Path, setups: list[Setup], rounds: int) -> None:
    async with trio.open_nursery() as nursery:
        fake = FakeAnthropic()
        base_url = await nursery.start(fake.serve)
        for setup in setups:
            await prepare(claude, setup, base_url)
            if setup.replays is None:  # warm-up: page cache, first-run files, .pyc, service
                await child(claude, setup, base_url)
        for setup in setups:
            if setup.command is not None and setup.replays is None:
                await probe(claude, setup, base_url)
            if setup.front:
                await trio.to_thread.run_sync(check_service, setup)
        for setup in setups:
            if setup.replays is not None:  # the front's session, recorded, is its script
                for name in ("wire-in.jsonl", "wire-out.jsonl"):
                    (setup.home / name).write_bytes((setup.replays.home / name).read_bytes())
                await child(claude, setup, base_url)
                setup.first_method = setup.replays.first_method
                setup.answered = f"as {setup.replays.name.split(' ')[0]} did, from the recording"
        for round_ in range(rounds):
            order = setups if round_ % 2 == 0 else setups[::-1]
            for setup in order:
                setup.walls.append(await child(claude, setup, base_url))
                print(
                    f"round {round_ + 1}: {setup.name}: {setup.walls[-1]:.2f} s",
                    file=sys.stderr,
                )
        for setup in setups:
            if setup.front:
                await trio.to_thread.run_sync(check_service, setup)
        nursery.cancel_scope.cancel()


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
    for setup in setups:
        if setup.front:
            pids = sorted(set(setup.service_pids))
            same = "the same service throughout" if len(pids) == 1 else "the service changed"
            lines.append(f"\n{setup.name}: service pid(s) {pids} ({same})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--source", type=Path, action="append", default=[], metavar="DIR")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    claude = locate_claude()
    run_id = uuid.uuid4().hex
    load = os.getloadavg()
    print(f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="child-cost-") as tmp:
        setups = make_setups(Path(tmp), args, run_id)
        try:
            trio.run(measure, claude, setups, args.rounds)
        finally:
            with no_interrupts():
                stop_services(setups, run_id)
    print(report(setups, args.rounds, cli_version(claude)))


if __name__ == "__main__":
    main()
