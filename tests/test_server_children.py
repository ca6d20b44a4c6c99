"""The MCP server down to real child processes: ClaudeRunner and the fake claude.

One test per dispatch path (dispatch, session, stream, parallel with aggregate,
dialogue, async jobs) runs in memory over `real_tools`, so the wiring from a tool
to a child (its cwd, argv, stdin, stream decoding, process group) stays covered
while the other server tests run on the ScriptedRunner. The job tools also run
over real stdio here: a server process with real children.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import mcp
import trio

from agent_dispatch.runtime.orphans import process_start
from agent_dispatch.storage.jobs import Job, JobStore
from tests.fake_claude import pid_alive, wait_dead, wait_started
from tests.server_support import (
    ProgressLog,
    Tools,
    Workspace,
    blocked,
    dead_pid,
    job_record,
    only,
    pids_of,
    start_job,
    status,
    stdio_params,
    stdio_server,
)

pytest_plugins = ("tests.server_fixtures",)  # ws, real_tools

# Finishing a job and answering the wait is a handful of syscalls and channel hops;
# a poll-driven wait would sit out its interval. Generous for a loaded CI box.
PROMPT_WAKE_SECONDS = 0.5


async def record_of_running(ws: Workspace, job_id: str) -> Job:
    """The job's record once it says `running`: a worker thread writes it just after the
    server saw the child start. Callers bound it with trio.fail_after."""
    while (record := JobStore(ws.jobs).require(job_id)).status == "pending":
        await trio.sleep(0.01)  # another thread's write: nothing to wait on
    return record


async def running_status(tools: Tools, job_id: str) -> dict[str, Any]:
    """The job's status once the server has seen its child start. The child can be
    running (and have written its start record) a moment before: trio spawns in a
    worker thread and hands the pid back to the job's task after exec. Callers bound
    it with trio.fail_after."""
    while (out := await status(tools, job_id))["status"] == "pending":
        await trio.sleep(0.01)  # the hand-back has no event a client could wait on
    return out


# -- one test per dispatch path, in memory ------------------------------------------------


async def test_dispatch_runs_claude_in_the_agent_directory(
    real_tools: Tools, ws: Workspace
) -> None:
    progress = ProgressLog()
    res = (
        await real_tools.call("dispatch", {"agent": "alpha", "task": "count the tests"}, progress)
    ).ok
    assert res["agent"] == "alpha"
    assert res["success"] is True
    assert res["result"] == "fake reply to: count the tests"
    assert res["session_id"]
    run = only(ws.runs())
    assert run["cwd"] == str(ws.alpha)
    assert run["session_id"] == res["session_id"]
    assert run["stdin"] == "devnull"
    with trio.fail_after(5):
        await progress.wait_for(1)
    assert progress.messages[0] == "dispatch to alpha: started"  # the idle-timer heartbeat
    assert progress.messages[:1] == ["dispatch to alpha: started"]  # the idle-timer heartbeat


async def test_dispatch_to_a_vanished_directory_is_a_not_found_result(
    real_tools: Tools, ws: Workspace
) -> None:
    shutil.rmtree(ws.beta)
    reply = await real_tools("dispatch", agent="beta", task="anyone home?")
    res = reply.ok  # a failed dispatch is a DispatchResult, not an envelope
    assert res["success"] is False
    assert res["error_type"] == "not_found"
    assert str(ws.beta) in res["error"]
    assert "update_agent" in res["hint"]
    assert ws.runs() == []


async def test_dispatch_session_starts_and_resumes_a_session(
    real_tools: Tools, ws: Workspace
) -> None:
    tools = real_tools
    first = (await tools("dispatch_session", agent="alpha", task="remember 7")).ok
    sid = first["session_id"]
    again = (await tools("dispatch_session", agent="alpha", task="remember 7")).ok
    assert "cached" not in again  # sessions are never cached
    resumed = (
        await tools("dispatch_session", agent="alpha", task="what was it?", session_id=sid)
    ).ok
    assert resumed["session_id"] == sid
    runs = ws.runs()
    assert len(runs) == 3
    assert runs[2]["resume"] == sid
    assert "--session-id" not in runs[2]["argv"]
    bad = await tools("dispatch_session", agent="alpha", task="x", session_id="--oops")
    assert bad.envelope["error"] == "session_id: must not start with '-' (got '--oops')"
    assert "leave it empty for a new one" in bad.envelope["hint"]
    assert (await tools("dispatch_session", agent="nobody", task="x")).envelope


async def test_dispatch_stream_reports_text_and_tool_calls_in_order(
    real_tools: Tools, ws: Workspace
) -> None:
    tools = real_tools
    progress = ProgressLog()
    task = "look around\n@fake tool_use=Bash\n@fake tool_use=Read\n@fake reply=seen it"
    res = (await tools.call("dispatch_stream", {"agent": "alpha", "task": task}, progress)).ok
    assert res["success"] is True and res["result"] == "seen it"
    with trio.fail_after(5):
        await progress.wait_for(5)
    assert progress.messages == [
        "Using Bash.",
        "Using tool: Bash",
        "Using Read.",
        "Using tool: Read",
        "seen it",
    ]
    assert len({p for p, _, _ in progress.seen}) == 5  # one step each
    assert only(ws.runs())["output_format"] == "stream-json"
    assert (await tools("dispatch_stream", agent="alpha", task="x", timeout_seconds=-3)).envelope


async def test_dispatch_parallel_with_aggregate_merges_the_results(
    real_tools: Tools, ws: Workspace
) -> None:
    tools = real_tools
    items = [{"agent": "alpha", "task": "part A"}, {"agent": "beta", "task": "part B"}]
    out = (await tools("dispatch_parallel", dispatches=items, aggregate="beta")).ok
    assert [r["result"] for r in out["individual_results"]] == [
        "fake reply to: part A",
        "fake reply to: part B",
    ]
    assert out["aggregated"]["agent"] == "beta"
    assert out["aggregated"]["success"] is True
    merge = ws.runs()[-1]
    assert merge["cwd"] == str(ws.beta)
    assert "fake reply to: part A" in merge["prompt"] and "part B" in merge["prompt"]


async def test_dispatch_dialogue_ends_when_a_side_resolves(
    real_tools: Tools, ws: Workspace
) -> None:
    tools = real_tools
    topic = "agree on a port\n@fake reply=8080 it is [RESOLVED]"
    out = (await tools("dispatch_dialogue", requester="alpha", responder="beta", topic=topic)).ok
    assert out["resolved"] is True
    assert out["rounds"] == 1
    assert out["final_answer"] == "8080 it is"
    assert [t["agent"] for t in out["conversation"]] == ["alpha", "beta"]
    assert [r["cwd"] for r in ws.runs()] == [str(ws.alpha), str(ws.beta)]


# -- async jobs: the child, its process group -------------------------------------------


async def test_wait_wakes_as_soon_as_the_job_finishes(real_tools: Tools, ws: Workspace) -> None:
    tools = real_tools
    task, release = blocked(ws, "A", "@fake reply=finished")
    job_id = await start_job(tools, "alpha", task)
    answer: dict[str, Any] = {}

    async def waiter() -> None:
        answer.update((await tools("dispatch_wait", job_id=job_id, timeout_seconds=60)).ok)
        answer["returned_at"] = time.time()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            run = only(await wait_started(ws.log))
            running = await running_status(tools, job_id)
            assert running["status"] == "running" and running["started_at"]
            assert answer == {}
            # For `cancel` and the next start, should this server be killed outright.
            record = await record_of_running(ws, job_id)
            assert record.child_pgid == run["pgid"] == run["pid"]
            assert record.child_started == process_start(run["pid"])
            release.touch()
    end = only(ws.runs())["end"]
    assert end is not None and end["rc"] == 0
    assert answer["returned_at"] - end["time"] < PROMPT_WAKE_SECONDS
    assert answer["status"] == "done"
    assert answer["timed_out_waiting"] is False
    assert answer["result"]["result"] == "finished"
    assert answer["id"] == job_id and answer["completed_at"]
    assert run["output_format"] == "stream-json"  # jobs stream, for their progress tail


async def test_cancel_a_running_job_kills_its_process_group(
    real_tools: Tools, ws: Workspace
) -> None:
    tools = real_tools
    job_id = await start_job(tools, "alpha", "forever\n@fake grandchild=30\n@fake sleep=30")
    with trio.fail_after(10):
        run = only(await wait_started(ws.log))
        leader, grandchild = pids_of(run)
        assert pid_alive(leader) and pid_alive(grandchild)
        await running_status(tools, job_id)  # the server has seen the child start
        out = (await tools("dispatch_cancel", job_id=job_id)).ok
        assert out == {"job_id": job_id, "outcome": "cancelled_running", "status": "cancelled"}
        assert not pid_alive(leader)  # reaped before the answer
        await wait_dead(grandchild)
    record = await status(tools, job_id)
    assert record["status"] == "cancelled"
    assert "dispatch_cancel" in record["error"]
    again = (await tools("dispatch_cancel", job_id=job_id)).ok
    assert again == {"job_id": job_id, "outcome": "already_terminal", "status": "cancelled"}
    fetched = (await tools("fetch_result", ref=job_id)).ok
    assert fetched["success"] is False and fetched["status"] == "cancelled"


# -- over real stdio ------------------------------------------------------------------------


async def test_a_starting_server_fails_jobs_stranded_by_a_dead_server(
    ws: Workspace, serve_mode: str
) -> None:
    ws.write_config(job_retention_days=5)
    store = JobStore(ws.jobs)
    dead = job_record("alpha", days_ago=0, status="running", progress=["step 1"])
    dead.owner_pid = await dead_pid()
    alive = job_record("alpha", days_ago=0, status="running")  # owned by this test process
    fresh_pending = job_record("beta", days_ago=0.5, status="pending")
    stale_pending = job_record("beta", days_ago=2, status="pending")
    expired = job_record("beta", days_ago=6)
    kept = job_record("beta", days_ago=4)
    for job in (dead, alive, fresh_pending, stale_pending, expired, kept):
        store.save(job)

    with trio.fail_after(20):
        async with stdio_server(ws, serve_mode) as server:

            async def job_status(job_id: str) -> dict[str, Any]:
                out = await server.call("dispatch_status", job_id=job_id)
                assert not out.get("isError"), out
                data: dict[str, Any] = out["structuredContent"]
                return data

            recovered = await job_status(dead.id)
            assert recovered["status"] == "failed"
            assert "server stopped" in recovered["error"]
            assert recovered["completed_at"]
            assert recovered["progress"] == ["step 1"]
            assert (await job_status(alive.id))["status"] == "running"
            assert (await job_status(fresh_pending.id))["status"] == "pending"
            assert (await job_status(stale_pending.id))["status"] == "failed"
            out = (await server.call("dispatch_cancel", job_id=alive.id))["structuredContent"]
            assert out["outcome"] == "running"  # another live process owns it
            gone = await server.call("dispatch_status", job_id=expired.id)
            assert gone["isError"] is True  # purged by job_retention_days
            assert (await job_status(kept.id))["status"] == "done"
    assert store.require(alive.id).status == "running"


async def test_job_tools_over_stdio(ws: Workspace, serve_mode: str) -> None:
    task, release = blocked(ws, "A", "@fake reply=over the wire")
    with trio.fail_after(20):
        async with mcp.Client(stdio_params(ws, serve_mode)) as client:

            async def call(tool: str, **args: Any) -> Any:
                result = await client.call_tool(tool, args)
                assert not result.is_error, result.content
                return result.structured_content

            job_id = (await call("dispatch_async", agent="alpha", task=task))["job_id"]
            await wait_started(ws.log)
            assert (await call("dispatch_status", job_id=job_id))["status"] == "running"
            release.touch()
            done = await call("dispatch_wait", job_id=job_id, timeout_seconds=30)
            assert done["status"] == "done" and done["timed_out_waiting"] is False
            fetched = await call("fetch_result", ref=job_id, max_chars=4)
            assert fetched["result"] == "over" and fetched["truncated"] is True
            listed = await call("dispatch_jobs")
            assert [j["id"] for j in listed["jobs"]] == [job_id]
            slow = (await call("dispatch_async", agent="beta", task="@fake sleep=30\nslow"))[
                "job_id"
            ]
            run = (await wait_started(ws.log, 2))[-1]
            cancelled = await call("dispatch_cancel", job_id=slow)
            assert cancelled["outcome"] == "cancelled_running"
            assert not pid_alive(run["pid"])
            assert (await call("dispatch_gc", dry_run=True))["would_purge"] == 0
