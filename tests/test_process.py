"""process.run_child against real child processes (the fake claude and /bin/sh)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import trio

from agent_dispatch.claude.output import has_result as result_complete
from agent_dispatch.claude.output import parse_output
from agent_dispatch.runtime.process import ChildOutcome, run_child
from tests.fake_claude import CLAUDE_BIN, fake_env, pid_alive, read_run, wait_dead, wait_started

WAIT = 10  # generous bound on every wait; the runs themselves take milliseconds


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


@pytest.fixture
def env(log_dir: Path) -> dict[str, str]:
    return fake_env(log_dir)


def claude(*directives: str, fmt: str = "json", prompt: str = "hello") -> list[str]:
    lines = [prompt, *(f"@fake {d}" for d in directives)]
    verbose = ["--verbose"] if fmt == "stream-json" else []
    return [CLAUDE_BIN, "-p", "--output-format", fmt, *verbose, "--", "\n".join(lines)]


def has_result(stdout: bytes) -> bool:
    return b'"type":"result"' in stdout


def reaped(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_normal_run_returns_the_answer_and_runs_in_its_own_group(
    tmp_path: Path, env: dict[str, str], log_dir: Path
) -> None:
    spawned: list[int] = []
    with trio.fail_after(WAIT):
        outcome = await run_child(claude(), cwd=tmp_path, env=env, on_spawn=spawned.append)
    assert outcome.returncode == 0
    assert not outcome.timed_out
    assert not outcome.stopped_after_result
    assert not outcome.stdout_truncated
    assert not outcome.stderr_truncated
    assert outcome.stderr == b""
    assert json.loads(outcome.stdout)["result"] == "fake reply to: hello"
    assert spawned == [outcome.pid]
    run = read_run(log_dir, outcome.pid)
    assert run["pgid"] == run["sid"] == outcome.pid
    assert run["cwd"] == str(tmp_path)
    assert run["end"]["rc"] == 0
    assert reaped(outcome.pid)


async def test_exit_status_and_stderr_are_reported(tmp_path: Path, env: dict[str, str]) -> None:
    with trio.fail_after(WAIT):
        outcome = await run_child(claude("exit=3", "stderr=something broke"), cwd=tmp_path, env=env)
    assert outcome.returncode == 3
    assert outcome.stderr == b"something broke\n"
    assert has_result(outcome.stdout)


async def test_child_stdin_is_devnull_even_when_ours_is_an_open_pipe(
    tmp_path: Path, env: dict[str, str], log_dir: Path
) -> None:
    # Like an MCP stdio server: our fd 0 is a pipe whose writer stays open. A child
    # that inherited it would wait 3 s on it (as the real CLI does) and say "pipe".
    read_end, write_end = os.pipe()
    saved = os.dup(0)
    os.dup2(read_end, 0)
    try:
        start = trio.current_time()
        with trio.fail_after(WAIT):
            outcome = await run_child(claude(), cwd=tmp_path, env=env)
        elapsed = trio.current_time() - start
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)
    assert read_run(log_dir, outcome.pid)["stdin"] == "devnull"
    assert elapsed < 2


async def test_child_gets_exactly_the_given_environment(
    tmp_path: Path, env: dict[str, str]
) -> None:
    env = {**env, "AGENT_DISPATCH_DEPTH": "2"}
    with trio.fail_after(WAIT):
        outcome = await run_child(
            ["/bin/sh", "-c", 'echo "$AGENT_DISPATCH_DEPTH ${HOME-unset}"'],
            cwd=tmp_path,
            env={k: v for k, v in env.items() if k != "HOME"},
        )
    assert outcome.stdout == b"2 unset\n"


async def test_megabyte_of_stderr_before_the_answer_does_not_deadlock(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with trio.fail_after(WAIT):
        full = await run_child(claude("stderr_flood=1048576"), cwd=tmp_path, env=env)
        capped = await run_child(
            claude("stderr_flood=1048576"), cwd=tmp_path, env=env, stderr_cap=1000
        )
    assert len(full.stderr) == 2**20
    assert not full.stderr_truncated
    assert has_result(full.stdout)
    assert capped.stderr == b"e" * 1000
    assert capped.stderr_truncated
    assert capped.returncode == 0
    assert json.loads(capped.stdout.splitlines()[-1])["result"] == "fake reply to: hello"


async def test_stdout_beyond_the_cap_is_drained_and_dropped_but_the_answer_is_kept(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with trio.fail_after(WAIT):
        outcome = await run_child(
            claude("stdout_flood=3000000\n@fake reply=THE ANSWER"),
            cwd=tmp_path,
            env=env,
            stdout_cap=4096,
        )
    assert outcome.returncode == 0
    assert outcome.stdout_truncated
    head, _, tail = outcome.stdout.partition(b"\n")
    assert head == b"x" * 4096  # the 3 MB line itself is dropped, not kept as a last line
    parsed = parse_output(outcome.stdout)
    assert parsed is not None and parsed.result == "THE ANSWER"
    assert len(tail) < 4096


async def test_a_leader_that_hangs_after_its_result_is_stopped_and_the_result_stands(
    tmp_path: Path, env: dict[str, str], log_dir: Path
) -> None:
    start = trio.current_time()
    with trio.fail_after(WAIT):
        outcome = await run_child(
            claude("hang_after_result"),
            cwd=tmp_path,
            env=env,
            timeout=60,
            is_complete=result_complete,  # what the dispatcher passes
            result_grace=0.2,
        )
    assert trio.current_time() - start < 5  # not the 60 s deadline
    assert not outcome.timed_out
    assert outcome.stopped_after_result
    assert has_result(outcome.stdout)
    assert not pid_alive(outcome.pid)


async def test_stdin_data_is_written_and_closed(tmp_path: Path, env: dict[str, str]) -> None:
    prompt = "@fake reply=read it\n" + "y" * 300_000  # over the 128 KiB one-argument limit
    argv = [CLAUDE_BIN, "-p", "--output-format", "json"]  # no prompt argument
    start = trio.current_time()
    with trio.fail_after(WAIT):
        outcome = await run_child(argv, cwd=tmp_path, env=env, stdin_data=prompt.encode())
    assert trio.current_time() - start < 2.5  # EOF at once: no 3 s wait for more input
    parsed = parse_output(outcome.stdout)
    assert parsed is not None and parsed.result == "read it"


async def test_grandchild_holding_stdout_does_not_hold_the_call(
    tmp_path: Path, env: dict[str, str], log_dir: Path
) -> None:
    start = trio.current_time()
    with trio.fail_after(WAIT):
        outcome = await run_child(claude("grandchild_hold_stdout=30"), cwd=tmp_path, env=env)
    assert trio.current_time() - start < 1.5
    assert outcome.returncode == 0
    assert not outcome.timed_out
    assert has_result(outcome.stdout)
    (grandchild,) = read_run(log_dir, outcome.pid)["grandchildren"]
    with trio.fail_after(WAIT):
        await wait_dead(grandchild)


async def test_grandchild_holding_only_stderr_does_not_hold_the_call(
    tmp_path: Path, env: dict[str, str], log_dir: Path
) -> None:
    with trio.fail_after(WAIT):
        outcome = await run_child(
            claude("grandchild_hold_stderr=30"), cwd=tmp_path, env=env, eof_wait=30
        )
        # stdout hit EOF when the leader exited: the group was killed, so stderr closed too
        (grandchild,) = read_run(log_dir, outcome.pid)["grandchildren"]
        await wait_dead(grandchild)
    assert has_result(outcome.stdout)


async def test_is_complete_lets_a_result_win_while_stdout_stays_open(
    tmp_path: Path, env: dict[str, str], log_dir: Path
) -> None:
    # eof_wait=30: without is_complete this would wait for the 30 s grandchild
    seen: list[bytes] = []

    def complete(stdout: bytes) -> bool:
        seen.append(stdout)
        return has_result(stdout)

    with trio.fail_after(WAIT):
        outcome = await run_child(
            claude("grandchild_hold_stdout=30"),
            cwd=tmp_path,
            env=env,
            is_complete=complete,
            eof_wait=30,
        )
        (grandchild,) = read_run(log_dir, outcome.pid)["grandchildren"]
        await wait_dead(grandchild)
    assert outcome.returncode == 0
    assert not outcome.timed_out
    assert json.loads(outcome.stdout)["result"] == "fake reply to: hello"
    assert seen and has_result(seen[-1])


async def test_a_result_without_exit_is_not_completion(tmp_path: Path, env: dict[str, str]) -> None:
    with trio.fail_after(WAIT):
        outcome = await run_child(
            claude("hang_after_result"),
            cwd=tmp_path,
            env=env,
            is_complete=has_result,
            timeout=2,  # the fake prints its result in ~0.1 s: ample margin under load
            grace=0.5,
            result_grace=60,  # the deadline, not the result grace, stops it
        )
    assert outcome.timed_out
    assert outcome.stopped_after_result  # the result was complete before the deadline
    assert outcome.returncode in (143, -signal.SIGTERM)
    assert has_result(outcome.stdout)


async def test_a_deadline_before_any_result_is_not_a_stop_after_the_result(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with trio.fail_after(WAIT):
        outcome = await run_child(
            claude("sleep=30", fmt="stream-json"),
            cwd=tmp_path,
            env=env,
            is_complete=result_complete,
            timeout=0.3,
            grace=0.5,
        )
    assert outcome.timed_out
    assert not outcome.stopped_after_result


async def test_a_process_that_leaves_the_group_cannot_hold_the_call(
    tmp_path: Path, env: dict[str, str], log_dir: Path
) -> None:
    with trio.fail_after(WAIT):
        outcome = await run_child(claude("escapee=30"), cwd=tmp_path, env=env)
    (escapee,) = read_run(log_dir, outcome.pid)["grandchildren"]
    try:
        assert outcome.returncode == 0
        assert has_result(outcome.stdout)
    finally:
        os.kill(escapee, signal.SIGKILL)  # it left the group on purpose: out of our reach


async def test_deadline_kills_leader_and_grandchild(
    tmp_path: Path, env: dict[str, str], log_dir: Path
) -> None:
    start = trio.current_time()
    with trio.fail_after(WAIT):
        outcome = await run_child(
            claude("grandchild=30", "sleep=30", fmt="stream-json"),
            cwd=tmp_path,
            env=env,
            timeout=0.5,
        )
    assert trio.current_time() - start < 3
    assert outcome.timed_out
    # 143: the fake's SIGTERM handler ran; -15: SIGTERM came before it was installed
    assert outcome.returncode in (143, -signal.SIGTERM)
    assert reaped(outcome.pid)
    run = read_run(log_dir, outcome.pid)
    (grandchild,) = run["grandchildren"]
    with trio.fail_after(WAIT):
        await wait_dead(grandchild)
    # whatever was printed before the deadline is returned: the init line
    assert json.loads(outcome.stdout.splitlines()[0])["subtype"] == "init"


async def test_deadline_argument_is_absolute(tmp_path: Path) -> None:
    with trio.fail_after(WAIT):
        outcome = await run_child(
            ["/bin/sh", "-c", "exec sleep 30"],
            cwd=tmp_path,
            env={"PATH": os.defpath},
            deadline=trio.current_time() + 0.2,
            timeout=60,
        )
    assert outcome.timed_out
    assert outcome.returncode == -signal.SIGTERM


async def test_cancel_kills_the_group_within_the_grace_and_reraises(
    tmp_path: Path, env: dict[str, str], log_dir: Path
) -> None:
    raised: list[BaseException] = []

    async def run() -> None:
        try:
            await run_child(claude("grandchild=30", "sleep=30"), cwd=tmp_path, env=env)
        except BaseException as exc:
            raised.append(exc)
            raise

    with trio.fail_after(WAIT):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                (run_record,) = await wait_started(log_dir)
                cancelled_at = trio.current_time()
                scope.cancel()
        elapsed = trio.current_time() - cancelled_at
    assert scope.cancelled_caught
    assert len(raised) == 1 and isinstance(raised[0], trio.Cancelled)
    assert elapsed < 1.5
    pid = run_record["pid"]
    assert reaped(pid)
    assert read_run(log_dir, pid)["end"]["signal"] == "SIGTERM"
    (grandchild,) = run_record["grandchildren"]
    with trio.fail_after(WAIT):
        await wait_dead(grandchild)


async def test_child_ignoring_sigterm_is_killed_after_the_grace(
    tmp_path: Path, env: dict[str, str], log_dir: Path
) -> None:
    grace = 0.3
    with trio.fail_after(WAIT):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda: run_child(
                        claude("ignore_sigterm", "sleep=30"), cwd=tmp_path, env=env, grace=grace
                    )
                )
                (run_record,) = await wait_started(log_dir)
                cancelled_at = trio.current_time()
                scope.cancel()
        elapsed = trio.current_time() - cancelled_at
    assert grace <= elapsed < grace + 1
    pid = run_record["pid"]
    assert reaped(pid)
    assert read_run(log_dir, pid)["end"] is None  # SIGKILL: no chance to record an end


async def test_deadline_with_a_child_ignoring_sigterm_returns_sigkill_status(
    tmp_path: Path,
) -> None:
    script = "trap '' TERM; echo ready; while :; do sleep 0.05; done"
    with trio.fail_after(WAIT):
        outcome = await run_child(
            ["/bin/sh", "-c", script],
            cwd=tmp_path,
            env={"PATH": os.defpath},
            timeout=0.3,
            grace=0.2,
        )
    assert outcome.timed_out
    assert outcome.returncode == -signal.SIGKILL
    assert outcome.stdout == b"ready\n"


async def test_on_stdout_line_gets_every_line_in_order(tmp_path: Path, env: dict[str, str]) -> None:
    lines: list[bytes] = []
    with trio.fail_after(WAIT):
        outcome = await run_child(
            claude("tool_use=Bash", "retry=1", fmt="stream-json"),
            cwd=tmp_path,
            env=env,
            on_stdout_line=lines.append,
        )
    assert lines == outcome.stdout.splitlines()
    kinds = [json.loads(line)["type"] for line in lines]
    assert kinds == ["system", "system", "assistant", "assistant", "user", "assistant", "result"]


async def test_on_stdout_line_joins_chunks_and_drops_overlong_lines(tmp_path: Path) -> None:
    script = "head -c 200000 /dev/zero | tr '\\0' a; echo; printf 'end'"
    for cap, expected_first in ((2**20, 200000), (1000, None)):
        lines: list[bytes] = []
        with trio.fail_after(WAIT):
            outcome = await run_child(
                ["/bin/sh", "-c", script],
                cwd=tmp_path,
                env={"PATH": os.defpath},
                stdout_cap=cap,
                on_stdout_line=lines.append,
            )
        assert outcome.stdout_truncated == (cap == 1000)
        if expected_first is None:
            assert lines == [b"end"]  # the final unterminated line is passed at EOF
        else:
            assert [len(line) for line in lines] == [expected_first, 3]


@pytest.mark.parametrize(
    ("argv", "cwd_name", "error"),
    [
        (["/nonexistent/claude"], None, FileNotFoundError),
        ([CLAUDE_BIN, "-p"], "missing-dir", FileNotFoundError),
        (["__not_executable__"], None, PermissionError),
    ],
)
async def test_spawn_failure_raises_oserror_and_leaks_nothing(
    tmp_path: Path, argv: list[str], cwd_name: str | None, error: type[OSError]
) -> None:
    plain = tmp_path / "plain-file"
    plain.write_text("not a program")
    argv = [str(plain) if a == "__not_executable__" else a for a in argv]
    cwd = tmp_path / cwd_name if cwd_name else tmp_path
    before = fd_count()
    spawned: list[int] = []
    with trio.fail_after(WAIT), pytest.raises(error):
        await run_child(argv, cwd=cwd, env=fake_env(), on_spawn=spawned.append)
    assert spawned == []
    assert fd_count() == before


async def test_no_fd_leaks_across_many_runs(tmp_path: Path) -> None:
    env = {"PATH": os.defpath}
    scripts = [
        ('echo \'{"type":"result"}\'', None),  # plain
        ("echo out; echo err >&2; exit 4", None),  # both pipes, non-zero status
        ("sleep 30 & echo held", None),  # grandchild holding the pipes
        ("exec sleep 30", 0.02),  # deadline
    ]
    before = fd_count()
    outcomes: list[ChildOutcome] = []
    with trio.fail_after(WAIT * 3):
        for i in range(100):
            script, timeout = scripts[i % len(scripts)]
            outcomes.append(
                await run_child(
                    ["/bin/sh", "-c", script],
                    cwd=tmp_path,
                    env=env,
                    timeout=timeout,
                    eof_wait=0.02,
                    grace=0.2,
                )
            )
    assert fd_count() == before
    assert [o.returncode for o in outcomes[:4]] == [0, 4, 0, -signal.SIGTERM]
    assert all(reaped(o.pid) or not pid_alive(o.pid) for o in outcomes)
