"""MCP tasks (SEP-2663 as Claude Code 2.1.332 speaks it): raw JSON-RPC lines through
`run_session`, behind the Front, on a ScriptedRunner; and over a real `serve`."""

from __future__ import annotations

import json
import string
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp.shared.exceptions import MCPError
from mcp_types import ClientCapabilities

from agent_dispatch.models import ProgressEvent
from agent_dispatch.runtime.scripted import Script, ScriptedRunner
from agent_dispatch.server.app import run_session
from agent_dispatch.server.front import Front
from agent_dispatch.server.tasks import (
    TASKS_EXTENSION,
    declares_tasks,
    poll_interval_ms,
    status_line,
    task_id,
)
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.storage.jobs import Job, JobStore
from tests.front_support import initialize
from tests.server_support import StdioServer, Workspace, blocked, in_memory_server, serve_argv

pytest_plugins = ("tests.server_fixtures",)

MODERN = "2026-07-28"
SESSION = "3f2c1b5e-0d4a-4c1e-9b7a-2a6f8e9d0c11"


def envelope(*, tasks: bool = True) -> dict[str, Any]:
    """The per-request `_meta` of a 2026-07-28 client (Claude Code's shape)."""
    caps: dict[str, Any] = {"roots": {"listChanged": True}, "elicitation": {"form": {}}}
    if tasks:
        caps["extensions"] = {TASKS_EXTENSION: {}}
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": caps,
    }


class Client:
    """JSON-RPC lines to the server, answers by id."""

    def __init__(self, send: trio.testing.MemorySendStream, receive: Any) -> None:
        self._send, self._receive = send, receive
        self._buffer = b""
        self._next = 100
        self._answers: dict[int, dict[str, Any]] = {}

    async def _recv(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            data = await self._receive.receive_some()
            assert data, "the server hung up"
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message

    async def start(self, method: str, params: dict[str, Any]) -> int:
        self._next += 1
        message = {"jsonrpc": "2.0", "id": self._next, "method": method, "params": params}
        await self._send.send_all(json.dumps(message).encode() + b"\n")
        return self._next

    async def answer(self, rid: int) -> dict[str, Any]:
        while rid not in self._answers:
            message = await self._recv()
            if "id" in message:
                self._answers[message["id"]] = message
        return self._answers.pop(rid)

    async def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self.answer(await self.start(method, params))

    async def modern(self, method: str, *, tasks: bool = True, **params: Any) -> dict[str, Any]:
        return await self.rpc(method, {**params, "_meta": envelope(tasks=tasks)})

    async def call(self, tool: str, *, tasks: bool = True, **arguments: Any) -> dict[str, Any]:
        answer = await self.modern("tools/call", tasks=tasks, name=tool, arguments=arguments)
        result: dict[str, Any] = answer["result"]
        return result

    async def get(self, task: str, *, tasks: bool = True) -> dict[str, Any]:
        answer = await self.modern("tasks/get", tasks=tasks, taskId=task)
        result: dict[str, Any] = answer["result"]
        return result


@asynccontextmanager
async def session(
    ws: Workspace, runner: ScriptedRunner
) -> AsyncIterator[tuple[Client, Dispatcher]]:
    """One MCP session over in-memory streams, on a Dispatcher whose runs go to `runner`."""
    c2s_send, c2s_receive = trio.testing.memory_stream_one_way_pair()
    s2c_send, s2c_receive = trio.testing.memory_stream_one_way_pair()
    front = Front(c2s_receive, s2c_send, on_broken=lambda: None)
    with trio.fail_after(30):
        async with (
            in_memory_server(ws, runner) as (dispatcher, server),
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(front.pump)
            nursery.start_soon(run_session, server, front.source, front.sink)
            yield Client(c2s_send, s2c_receive), dispatcher
            nursery.cancel_scope.cancel()


def payload(result: dict[str, Any]) -> dict[str, Any]:
    """A tools/call result without the per-message `_meta` stamp."""
    return {key: value for key, value in result.items() if key != "_meta"}


@pytest.fixture
def short_grace(ws: Workspace) -> None:
    ws.write_config(task_grace_seconds=0.05)


async def test_server_discover_advertises_the_tasks_extension(
    ws: Workspace, runner: ScriptedRunner
) -> None:
    async with session(ws, runner) as (client, _):
        found = await client.modern("server/discover")
    assert found["result"]["capabilities"]["extensions"] == {TASKS_EXTENSION: {}}


@pytest.mark.usefixtures("short_grace")
async def test_a_slow_declared_dispatch_becomes_a_task_that_completes_with_the_tools_payload(
    ws: Workspace, runner: ScriptedRunner
) -> None:
    gate = trio.Event()
    runner.on(Script(reply="the slow answer", release=gate), prompt="slow")
    async with session(ws, runner) as (client, dispatcher):
        handle = await client.call(
            "dispatch_session", agent="alpha", task="slow", session_id=SESSION
        )
        assert handle["resultType"] == "task"
        assert handle["status"] == "working"
        note = handle["_meta"]["com.anthropic/agent-task"]["modelImmediateResponse"]
        assert "'alpha'" in note and "notification" in note and "do not dispatch" in note
        job = await dispatcher.job(handle["taskId"])  # the task id is the job id, on disk
        assert job.reply is not None and job.reply.tool == "dispatch_session"
        assert handle["taskId"] in {p.stem for p in ws.job_files()}

        working = await client.get(handle["taskId"])
        assert working["status"] == "working"
        assert working["pollIntervalMs"] == 1000 and "result" not in working
        gate.set()
        await dispatcher.wait(handle["taskId"])
        done = await client.get(handle["taskId"])

        inline = await client.call(
            "dispatch_session", tasks=False, agent="alpha", task="slow", session_id=SESSION
        )
    assert done["status"] == "completed"
    assert done["result"] == payload(inline)
    assert done["result"]["structuredContent"]["result"] == "the slow answer"


@pytest.mark.usefixtures("short_grace")
async def test_a_task_for_dispatch_answers_as_dispatch_with_return_ref(
    ws: Workspace, runner: ScriptedRunner
) -> None:
    gate = trio.Event()
    runner.on(Script(reply="x" * 900, release=gate), prompt="slow")
    async with session(ws, runner) as (client, dispatcher):
        handle = await client.call(
            "dispatch", agent="alpha", task="slow", return_ref=True, summary_chars=10
        )
        gate.set()
        await dispatcher.wait(handle["taskId"])
        done = await client.get(handle["taskId"])
        fetched = await client.call("fetch_result", tasks=False, ref=handle["taskId"])
    answer = done["result"]["structuredContent"]
    assert answer["ref"] == handle["taskId"]
    assert answer["summary_chars"] == 10 and answer["size"] == 900
    assert fetched["structuredContent"]["result"] == "x" * 900


@pytest.mark.usefixtures("short_grace")
async def test_a_slow_dispatch_stream_becomes_a_task_whose_status_is_its_last_line(
    ws: Workspace, runner: ScriptedRunner
) -> None:
    gate = trio.Event()
    events = [ProgressEvent("text", "Reading the routes"), ProgressEvent("tool_use", "Grep")]
    runner.on(Script(reply="streamed answer", events=events, release=gate), prompt="slow")
    async with session(ws, runner) as (client, dispatcher):
        handle = await client.call("dispatch_stream", agent="alpha", task="slow")
        assert handle["resultType"] == "task"
        job = await dispatcher.job(handle["taskId"])
        assert job.reply is not None and job.reply.tool == "dispatch_stream"
        assert not job.reply.cached  # a stream is never answered from the cache
        # the events came as the run started, before the grace window ended
        working = await client.get(handle["taskId"])
        assert working["status"] == "working" and "Grep" in working["statusMessage"]
        gate.set()
        await dispatcher.wait(handle["taskId"])
        done = await client.get(handle["taskId"])
        inline = await client.call("dispatch_stream", tasks=False, agent="alpha", task="slow")
    assert done["status"] == "completed"

    def steady(result: dict[str, Any]) -> dict[str, Any]:  # what differs run to run
        return {
            k: v
            for k, v in result["structuredContent"].items()
            if k not in ("session_id", "duration_ms")
        }

    assert set(done["result"]) == set(payload(inline))
    assert steady(done["result"]) == steady(inline)
    assert done["result"]["structuredContent"]["result"] == "streamed answer"


async def test_a_dispatch_that_ends_inside_the_grace_window_is_an_inline_result(
    ws: Workspace, runner: ScriptedRunner
) -> None:
    async with session(ws, runner) as (client, _):
        first = await client.call("dispatch", agent="alpha", task="quick")
        again = await client.call("dispatch", agent="alpha", task="quick")
    assert first["resultType"] == "complete"
    assert first["structuredContent"]["result"] == "scripted reply to: quick"
    assert again["structuredContent"]["cached"] is True  # a cache hit, as the tool has it
    assert len(runner.calls) == 1


@pytest.mark.usefixtures("short_grace")
async def test_a_call_that_does_not_declare_tasks_stays_inline(
    ws: Workspace, runner: ScriptedRunner
) -> None:
    gate = trio.Event()
    runner.on(Script(reply="late", release=gate), prompt="slow")
    async with session(ws, runner) as (client, _):
        rid = await client.start(
            "tools/call",
            {
                "name": "dispatch",
                "arguments": {"agent": "alpha", "task": "slow"},
                "_meta": envelope(tasks=False),
            },
        )
        await runner.wait_calls(1)
        gate.set()
        answer = await client.answer(rid)
    assert answer["result"]["resultType"] == "complete"
    assert answer["result"]["structuredContent"]["result"] == "late"
    assert ws.job_files() == []  # it never was a job: a task always is one, on disk first


async def test_a_declared_call_with_bad_arguments_gets_the_tools_own_error(
    ws: Workspace, runner: ScriptedRunner
) -> None:
    async with session(ws, runner) as (client, _):
        declared = await client.call("dispatch", agent="nobody", task="x")
        plain = await client.call("dispatch", tasks=False, agent="nobody", task="x")
        unknown = await client.call("dispatch", agent="alpha", task="x", timeout=5)
    assert payload(declared) == payload(plain)
    assert declared["isError"] is True
    assert unknown["isError"] is True and "unknown argument" in unknown["content"][0]["text"]
    assert runner.calls == []


@pytest.mark.usefixtures("short_grace")
async def test_tasks_cancel_acks_at_once_and_stops_the_run(
    ws: Workspace, runner: ScriptedRunner
) -> None:
    runner.on(Script(release=trio.Event()), prompt="forever")
    async with session(ws, runner) as (client, dispatcher):
        handle = await client.call("dispatch", agent="alpha", task="forever")
        (call,) = await runner.wait_calls(1)
        first = await client.modern("tasks/cancel", taskId=handle["taskId"])
        again = await client.modern("tasks/cancel", taskId=handle["taskId"])
        await call.done.wait()
        await dispatcher.wait(handle["taskId"])
        view = await client.get(handle["taskId"])
        after = await client.modern("tasks/cancel", taskId=handle["taskId"])
        assert dispatcher.running_jobs() == 0
        assert dispatcher.limiter.borrowed_tokens == 0
    assert first["result"]["resultType"] == "complete"
    assert "error" not in again and "error" not in after  # idempotent
    assert call.cancelled
    assert view["status"] == "cancelled"
    assert "tasks/cancel" in view["statusMessage"]


async def test_tasks_update_is_accepted(ws: Workspace, runner: ScriptedRunner) -> None:
    ws.write_config(task_grace_seconds=0.05)
    gate = trio.Event()
    runner.on(Script(release=gate), prompt="slow")
    async with session(ws, runner) as (client, _):
        handle = await client.call("dispatch", agent="alpha", task="slow")
        update = await client.modern(
            "tasks/update", taskId=handle["taskId"], inputResponses={"q1": {"action": "cancel"}}
        )
        gate.set()
    assert update["result"]["resultType"] == "complete"


async def test_tasks_methods_refuse_undeclared_unknown_and_non_task_ids(
    ws: Workspace, runner: ScriptedRunner
) -> None:
    async with session(ws, runner) as (client, dispatcher):
        job = await dispatcher.submit(_request())  # a dispatch_async job is not a task
        await dispatcher.wait(job.id)
        undeclared = await client.modern("tasks/get", tasks=False, taskId=job.id)
        unknown = await client.modern("tasks/get", taskId="0" * 32)
        malformed = await client.modern("tasks/cancel", taskId="../etc/passwd")
        not_a_task = await client.modern("tasks/get", taskId=job.id)
        update = await client.modern("tasks/update", taskId="f" * 32)
    assert undeclared["error"]["code"] == -32021
    assert unknown["error"]["code"] == -32602
    assert malformed["error"]["code"] == -32602
    assert not_a_task["error"]["code"] == -32602
    assert update["error"]["code"] == -32602


async def test_tasks_get_on_a_legacy_connection_is_method_not_found(
    ws: Workspace, runner: ScriptedRunner
) -> None:
    async with session(ws, runner) as (client, _):
        await client.rpc("initialize", initialize()["params"])
        found = await client.rpc("tasks/get", {"taskId": "0" * 32})
    assert found["error"]["code"] == -32601


async def test_a_restarted_server_answers_tasks_get_from_the_record(
    ws: Workspace, runner: ScriptedRunner
) -> None:
    ws.write_config(task_grace_seconds=0.05)
    gate = trio.Event()
    runner.on(Script(reply="kept", release=gate), prompt="slow")
    async with session(ws, runner) as (client, dispatcher):
        handle = await client.call("dispatch", agent="alpha", task="slow")
        gate.set()
        await dispatcher.wait(handle["taskId"])
        before = await client.get(handle["taskId"])
    async with session(ws, ScriptedRunner()) as (client, _):
        after = await client.get(handle["taskId"])
    assert after["status"] == "completed"
    assert after["result"] == before["result"]


async def test_a_task_whose_standalone_server_stopped_reads_as_cancelled_with_a_reason(
    ws: Workspace, runner: ScriptedRunner
) -> None:
    ws.write_config(task_grace_seconds=0.05)
    runner.on(Script(release=trio.Event()), prompt="slow")
    async with session(ws, runner) as (client, _):
        handle = await client.call("dispatch", agent="alpha", task="slow")
    async with session(ws, ScriptedRunner()) as (client, _):  # the first one cancelled it
        after = await client.get(handle["taskId"])
    assert after["status"] == "cancelled"
    assert "shut down" in after["statusMessage"]


# -- the pure pieces ---------------------------------------------------------------------


def _request() -> Any:
    from agent_dispatch.models import DispatchRequest

    return DispatchRequest(agent="alpha", task="quick")


@settings(max_examples=200)
@given(st.one_of(st.text(max_size=80), st.integers(), st.none(), st.binary(max_size=40)))
def test_task_id_takes_only_job_ids_and_says_unknown_task_otherwise(raw: object) -> None:
    try:
        taken = task_id(raw)
    except MCPError as exc:
        assert exc.code == -32602
        assert exc.message.startswith("unknown task")
    else:
        assert isinstance(raw, str) and taken == raw
        assert len(taken) == 32 and set(taken) <= set(string.hexdigits.lower())


@settings(max_examples=200)
@given(
    st.sampled_from([MODERN, "2025-11-25", "2025-06-18", ""]),
    st.one_of(
        st.none(),
        st.dictionaries(
            st.one_of(st.text(max_size=40), st.just(TASKS_EXTENSION)),
            st.dictionaries(st.text(max_size=5), st.integers()),
            max_size=4,
        ),
    ),
)
def test_only_a_modern_request_naming_the_extension_declares_tasks(
    version: str, extensions: dict[str, dict[str, Any]] | None
) -> None:
    caps = ClientCapabilities(extensions=extensions)
    expected = version == MODERN and extensions is not None and TASKS_EXTENSION in extensions
    assert declares_tasks(version, caps) is expected
    assert declares_tasks(version, None) is False


def test_poll_interval_grows_with_the_tasks_age() -> None:
    assert poll_interval_ms(0) == 1000
    assert poll_interval_ms(59) == 1000
    assert poll_interval_ms(60) == 3000
    assert poll_interval_ms(3600) == 5000


def test_status_line_is_the_last_progress_line_on_one_short_safe_line() -> None:
    base = Job(id="a" * 32, agent="alpha", task="t", status="running", created_at="", owner_pid=1)
    noisy = Job(**{**_fields(base), "progress": ["old", "new \x1b[31mred\x1b[0m\n\u202enext"]})
    assert status_line(noisy) == "new red next"
    long = Job(**{**_fields(base), "progress": ["y" * 500]})
    assert len(status_line(long)) == 200
    assert status_line(Job(**{**_fields(base), "status": "pending"})) == "waiting for a free slot"


def _fields(job: Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in job.__struct_fields__}


def test_job_records_without_a_reply_still_load(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job = Job(id="b" * 32, agent="alpha", task="t", status="done", created_at="", owner_pid=1)
    store.save(job)
    assert store.require(job.id).reply is None


# -- over a real `serve` (the fake claude behind it) ---------------------------------------


@asynccontextmanager
async def modern_serve(ws: Workspace, serve_mode: str) -> AsyncIterator[StdioServer]:
    """`agent-dispatch serve`, opened the 2026-07-28 way (server/discover), as Claude Code does."""
    stderr_path = ws.root / f"serve-stderr-{len(list(ws.root.glob('serve-stderr-*')))}.log"
    with open(stderr_path, "wb") as stderr:
        proc = await trio.lowlevel.open_process(
            serve_argv(serve_mode),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=ws.env(),
            cwd=ws.root,
        )
    server = StdioServer(proc, stderr_path)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server._read)
            found = await server.request("server/discover", {"_meta": envelope()})
            assert found["capabilities"]["extensions"] == {TASKS_EXTENSION: {}}
            yield server
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    await stream.aclose()


async def test_a_task_over_stdio_goes_working_then_completed(
    ws: Workspace, serve_mode: str
) -> None:
    ws.write_config(task_grace_seconds=0.2)
    task, release = blocked(ws, "T", "@fake reply=over the wire")
    with trio.fail_after(30):
        async with modern_serve(ws, serve_mode) as server:
            quick = await server.request(
                "tools/call",
                {
                    "name": "dispatch",
                    "arguments": {"agent": "beta", "task": "hi"},
                    "_meta": envelope(),
                },
            )
            assert quick["resultType"] == "complete"  # inside the grace window: inline
            handle = await server.request(
                "tools/call",
                {
                    "name": "dispatch",
                    "arguments": {"agent": "alpha", "task": task},
                    "_meta": envelope(),
                },
            )
            assert handle["resultType"] == "task"
            get = {"taskId": handle["taskId"], "_meta": envelope()}
            assert (await server.request("tasks/get", get))["status"] == "working"
            release.touch()
            while (done := await server.request("tasks/get", get))["status"] == "working":
                await trio.sleep(0.05)  # the client's polling, compressed
    assert done["status"] == "completed"
    assert done["result"]["structuredContent"]["result"] == "over the wire"


async def test_a_task_outlives_its_session_in_the_service(ws: Workspace) -> None:
    # Claude Code says a task "keeps running after you exit this session": with the
    # per-user service it does, and `claude --resume` (a new front) reads its outcome.
    ws.write_config(task_grace_seconds=0.2)
    task, release = blocked(ws, "S", "@fake reply=still here")
    with trio.fail_after(30):
        async with modern_serve(ws, "relay") as server:
            handle = await server.request(
                "tools/call",
                {
                    "name": "dispatch",
                    "arguments": {"agent": "alpha", "task": task},
                    "_meta": envelope(),
                },
            )
            await server.close_stdin()  # the session ends (Claude Code exits)
            assert await server.wait() == 0
        release.touch()
        async with modern_serve(ws, "relay") as server:
            get = {"taskId": handle["taskId"], "_meta": envelope()}
            while (done := await server.request("tasks/get", get))["status"] == "working":
                await trio.sleep(0.05)  # the client's polling, compressed
    assert done["status"] == "completed"
    assert done["result"]["structuredContent"]["result"] == "still here"
