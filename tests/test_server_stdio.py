"""`agent-dispatch serve` over real stdio: the OS is the subject here (pids, signals, pipes).

The MCP behaviour runs over both `serve_mode`s: the in-process server (`--standalone`)
and the front relaying to the sandbox's service. The tests of the process's own end
(EOF, signals: its children die with it) are the standalone server's; the front's end
(the session ends, the jobs go on) is in test_relay_service.py.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from typing import Any

import mcp
import pytest
import trio

from tests.fake_claude import pid_alive, wait_dead, wait_started
from tests.server_support import (
    ProgressLog,
    RpcError,
    Workspace,
    only,
    pids_of,
    stdio_params,
    stdio_server,
)

pytest_plugins = ("tests.server_fixtures",)  # ws, served, tools

SLOW = "@fake sleep=30"


def structured(result: dict[str, Any]) -> Any:
    """The structured payload of a raw tools/call result, checked against its JSON text."""
    data = result["structuredContent"]
    assert json.loads(result["content"][0]["text"]) == data
    return data


async def test_the_stdio_client_lists_tools_dispatches_and_gets_stream_progress(
    ws: Workspace,
    serve_mode: str,
) -> None:
    progress = ProgressLog()
    with trio.fail_after(20):
        async with mcp.Client(stdio_params(ws, serve_mode)) as client:
            instructions = client.instructions or ""
            listed = {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool("dispatch", {"agent": "alpha", "task": "say hi"})
            streamed = await client.call_tool(
                "dispatch_stream",
                {"agent": "beta", "task": "go\n@fake tool_use=Bash\n@fake reply=fin"},
                progress_callback=progress,
            )
            await progress.wait_for(3)
    for tool in ("dispatch_parallel", "dispatch_session", "dispatch_async", "list_agents"):
        assert tool in instructions  # how a calling model picks a tool
    assert {"dispatch", "dispatch_parallel", "dispatch_stream", "dispatch_wait"} <= listed
    assert len(listed) == 21
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["success"] is True
    assert result.structured_content["result"] == "fake reply to: say hi"
    assert not streamed.is_error
    assert progress.messages == ["Using Bash.", "Using tool: Bash", "fin"]
    first, second = ws.runs()
    assert (first["cwd"], second["cwd"]) == (str(ws.alpha), str(ws.beta))
    assert first["depth"] == "1"


async def test_children_never_read_the_wire_and_stream_progress_arrives_in_order(
    ws: Workspace,
    serve_mode: str,
) -> None:
    task = "stream please\n@fake retry\n@fake tool_use=Bash\n@fake reply=all done"
    with trio.fail_after(20):
        async with stdio_server(ws, serve_mode) as server:
            for tool in ("dispatch", "dispatch_session"):
                out = await server.call(tool, agent="alpha", task=f"read stdin via {tool}")
                assert structured(out)["success"] is True
            job = structured(await server.call("dispatch_async", agent="alpha", task="async"))
            await server.call("dispatch_wait", job_id=job["job_id"], timeout_seconds=10)
            rid = await server.start_call(
                "dispatch_stream", {"agent": "alpha", "task": task}, progress_token=7
            )
            streamed = structured(await server.response(rid))
            await server.close_stdin()
            with trio.fail_after(2):
                assert await server.wait() == 0
    runs = ws.runs()
    assert len(runs) == 4
    assert {r["stdin"] for r in runs} == {"devnull"}
    assert all("stdin_bytes" not in r for r in runs)
    assert server.stderr() == ""  # quiet at the default log level; stdout is the wire only

    assert streamed["success"] is True and streamed["result"] == "all done"
    progress = server.progress(7)
    assert [m for m in progress if "Bash" in m or m == "all done"] == [
        "Using Bash.",
        "Using tool: Bash",
        "all done",
    ]
    assert any("retry" in m.lower() for m in progress[: progress.index("Using Bash.")])
    steps = [
        n["params"]["progress"]
        for n in server.notifications
        if n.get("method") == "notifications/progress"
    ]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)


async def test_a_client_cancelling_a_dispatch_kills_its_child_group_and_frees_the_slot(
    ws: Workspace,
    serve_mode: str,
) -> None:
    ws.write_config(max_concurrency=1)
    with trio.fail_after(20):
        async with mcp.Client(stdio_params(ws, serve_mode)) as client:
            async with trio.open_nursery() as nursery:
                cancel = nursery.cancel_scope

                async def doomed() -> None:
                    task = f"{SLOW}\n@fake grandchild=30"
                    await client.call_tool("dispatch", {"agent": "alpha", "task": task})
                    raise AssertionError("the cancelled call returned")

                nursery.start_soon(doomed)
                run = only(await wait_started(ws.log))
                leader, grandchild = pids_of(run)
                assert pid_alive(leader) and pid_alive(grandchild)
                cancel.cancel()  # the client sends notifications/cancelled
            # max_concurrency is 1: this runs only because the slot came back.
            after = await client.call_tool("dispatch", {"agent": "alpha", "task": "next one"})
            assert not pid_alive(leader)  # dead and reaped before the next answer
            with trio.fail_after(1):  # killed too; init may take a moment to reap it
                await wait_dead(grandchild)
    assert after.structured_content is not None
    assert after.structured_content["result"] == "fake reply to: next one"
    first = ws.runs()[0]
    assert first["end"] is None or first["end"]["signal"] == "SIGTERM"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "stdin EOF", "hang-up", "stdout gone"])
async def test_shutdown_during_a_dispatch_exits_0_quickly_and_leaves_no_orphans(
    ws: Workspace, how: str
) -> None:
    with trio.fail_after(20):
        async with stdio_server(ws, "standalone") as server:
            await server.start_call(
                "dispatch", {"agent": "alpha", "task": f"{SLOW}\n@fake grandchild=30"}
            )
            job = structured(
                await server.call(
                    "dispatch_async", agent="beta", task=f"{SLOW}\n@fake grandchild=30"
                )
            )
            runs = await wait_started(ws.log, 2)
            pids = [p for r in runs for p in pids_of(r)]
            assert len(pids) == 4 and all(pid_alive(p) for p in pids)
            started = time.monotonic()
            if how == "stdin EOF":
                await server.close_stdin()
            elif how == "hang-up":  # the client died: both pipes close
                await server.disconnect()
            elif how == "stdout gone":  # nobody reads the answers: the next write fails
                assert server.proc.stdout is not None
                await server.proc.stdout.aclose()
                await server.start_call("list_agents", {})
            else:
                server.signal(getattr(signal, how))
            with trio.fail_after(2):
                rc = await server.wait()
            elapsed = time.monotonic() - started
    assert rc == 0, server.stderr()
    assert elapsed < 2
    with trio.fail_after(1):  # killed already; init may need a moment to reap the grandchildren
        await wait_dead(*pids)
    assert "Traceback" not in server.stderr()
    record = json.loads((ws.jobs / f"{job['job_id']}.json").read_text())
    assert record["status"] == "cancelled"
    assert record["completed_at"]


async def test_more_signals_during_the_shutdown_do_not_cut_the_cleanup_short(
    ws: Workspace,
) -> None:
    task = f"{SLOW}\n@fake ignore_sigterm\n@fake grandchild=30"
    with trio.fail_after(20):
        async with stdio_server(ws, "standalone") as server:
            await server.start_call("dispatch", {"agent": "alpha", "task": task})
            leader, grandchild = pids_of(only(await wait_started(ws.log)))
            server.signal(signal.SIGTERM)
            # The group got SIGTERM: the grandchild dies, the leader shrugs it off and the
            # server is now in its grace period before SIGKILL. Press Ctrl-C and TERM again.
            await wait_dead(grandchild)
            server.signal(signal.SIGINT)
            server.signal(signal.SIGTERM)
            with trio.fail_after(3):
                rc = await server.wait()
    assert rc == 0, server.stderr()
    assert not pid_alive(leader)
    assert "Traceback" not in server.stderr()


async def test_bad_config_and_non_finite_numbers_get_envelopes_and_the_server_serves_on(
    ws: Workspace,
    serve_mode: str,
) -> None:
    good = ws.config.read_bytes()
    ws.write_raw(b"agents: [unclosed\n")
    with trio.fail_after(20):
        async with stdio_server(ws, serve_mode) as server:
            broken = await server.call("list_agents")
            assert broken["isError"] is True
            assert set(broken["structuredContent"]) == {"error", "hint"}
            ws.write_raw(good)
            fixed = structured(await server.call("list_agents"))
            assert [a["name"] for a in fixed["agents"]] == ["alpha", "beta"]
            # JSON has no NaN or Infinity, yet Python peers send them: they reach our checks.
            for raw in ("NaN", "Infinity", "-Infinity", "1e400"):
                args = f'{{"agent": "beta", "task": "x", "timeout_seconds": {raw}}}'
                bad = await server.call_raw("dispatch", args)
                assert bad["isError"] is True
                assert "timeout_seconds" in bad["structuredContent"]["error"], raw
            budget = f'{{"name": "gamma", "directory": "{ws.beta}", "max_budget_usd": NaN}}'
            assert (await server.call_raw("add_agent", budget))["isError"] is True
            out = structured(await server.call("dispatch", agent="beta", task="hello again"))
            assert out["success"] is True
    assert len(ws.runs()) == 1


async def test_serve_logs_the_method_a_client_opens_with(ws: Workspace) -> None:
    # What a client opens with decides what it waits for (Claude Code 2.1.332 sends
    # server/discover); DEBUG logs show it.
    with trio.fail_after(20):
        async with stdio_server(ws, "standalone", AGENT_DISPATCH_LOG_LEVEL="DEBUG") as server:
            listed = await server.request("tools/list", {})
            assert "dispatch" in {tool["name"] for tool in listed["tools"]}
            out = structured(await server.call("list_agents"))
            assert [a["name"] for a in out["agents"]] == ["alpha", "beta"]
    front = [line for line in server.stderr().splitlines() if "agent_dispatch.server.front" in line]
    assert [line.split(" DEBUG ")[-1] for line in front] == ["the client opened with initialize"]


HOSTILE_LINES = [  # each needs exactly one error reply; none may end the server
    b"[" * 1000,
    b"[" * 100_000 + b"]",
    b"[]",
    b'"str"',
    b"null",
    b"42",
    b'[{"jsonrpc":"2.0","id":"in-batch","method":"ping"}]',
    b'{"jsonrpc":"1.0","id":"v1","method":"ping"}',
    b'{"id":"unversioned","method":"ping"}',
    b'{"jsonrpc":"2.0","id":null,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":true,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}',
    b'{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{"name":"dispatch","arguments":'
    b'{"agent":"alpha","task":' + b"[" * 500 + b"]" * 500 + b"}}}",
]


async def test_no_line_takes_the_server_down_or_goes_unanswered(
    ws: Workspace, serve_mode: str
) -> None:
    with trio.fail_after(20):
        async with stdio_server(ws, serve_mode) as server:
            job = structured(await server.call("dispatch_async", agent="alpha", task="survive"))
            before = len(server.replies)
            await server.send_raw(b"".join(line + b"\n" for line in HOSTILE_LINES))
            while len(server.replies) < before + len(HOSTILE_LINES):
                await server.changed()
            answers = server.replies[before:]
            waited = structured(await server.call("dispatch_wait", job_id=job["job_id"]))
            listed = structured(await server.call("list_agents"))
    assert all("error" in a for a in answers), answers
    assert [a["id"] for a in answers if a["id"] is not None] == [
        "in-batch",
        "v1",
        "unversioned",
        "deep",
    ]
    assert waited["status"] == "done" and waited["result"]["success"] is True
    assert [a["name"] for a in listed["agents"]] == ["alpha", "beta"]


async def test_a_line_over_the_limit_is_answered_and_dropped_unread(
    ws: Workspace, serve_mode: str
) -> None:
    ws.write_config(max_message_mib=1)
    task = "x" * (3 * 1024 * 1024)
    with trio.fail_after(20):
        async with stdio_server(ws, serve_mode) as server:
            rid = await server.start_call("dispatch", {"agent": "alpha", "task": task})
            with pytest.raises(RpcError, match="exceeds the limit of 1048576 bytes"):
                await server.response(rid)
            out = structured(await server.call("dispatch", agent="alpha", task="small"))
    assert out["success"] is True
    assert len(ws.runs()) == 1  # the oversized call never ran


async def test_signals_right_up_to_the_exit_never_turn_it_into_a_traceback(
    ws: Workspace, serve_mode: str
) -> None:
    """Under load a late Ctrl-C or SIGTERM can land after the cleanup is over."""
    with trio.fail_after(20):
        async with stdio_server(ws, serve_mode) as server:
            await server.call("dispatch", agent="alpha", task="warm up")
            await server.close_stdin()  # the server is on its way out: keep hitting it
            async with trio.open_nursery() as nursery:

                async def storm() -> None:
                    while True:
                        for signum in (signal.SIGINT, signal.SIGTERM):
                            with contextlib.suppress(ProcessLookupError):
                                server.signal(signum)
                        await trio.sleep(0.0005)  # pacing the storm, not waiting on a state

                nursery.start_soon(storm)
                rc = await server.wait()
                nursery.cancel_scope.cancel()
    assert rc == 0, server.stderr()
    assert "Traceback" not in server.stderr()
