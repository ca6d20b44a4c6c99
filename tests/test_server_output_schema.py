"""Typed tool output: each tool's outputSchema is its answer Struct's JSON Schema,
and what the tool answers validates against it."""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped]
import msgspec
import pytest

from agent_dispatch.models import DispatchResult
from agent_dispatch.runtime.scripted import Script, ScriptedRunner
from agent_dispatch.server.toolkit import output_schema
from agent_dispatch.service import registry, views
from agent_dispatch.service.cache import CacheStats
from tests.server_support import Tools, Workspace

pytest_plugins = ("tests.server_fixtures",)  # ws, runner, served, tools

TYPED = {
    "dispatch",
    "dispatch_session",
    "dispatch_stream",
    "dispatch_parallel",
    "dispatch_dialogue",
    "dispatch_async",
    "dispatch_status",
    "dispatch_wait",
    "dispatch_cancel",
    "dispatch_jobs",
    "fetch_result",
    "dispatch_gc",
    "list_agents",
    "inspect_agent",
    "list_groups",
    "inspect_group",
    "add_agent",
    "update_agent",
    "remove_agent",
    "cache_stats",
    "cache_clear",
}


async def _schemas(tools: Tools) -> dict[str, dict[str, Any]]:
    listed = await tools.client.list_tools()
    return {t.name: t.output_schema or {} for t in listed.tools}


async def test_every_typed_tool_publishes_the_shape_of_its_answer(tools: Tools) -> None:
    schemas = await _schemas(tools)
    assert TYPED <= set(schemas)
    for name in TYPED:
        schema = schemas[name]
        assert schema["type"] == "object", name
        assert "properties" in schema or "anyOf" in schema, (name, schema)
        jsonschema.Draft202012Validator.check_schema(schema)


async def test_each_tool_answers_what_its_output_schema_says(
    tools: Tools, runner: ScriptedRunner, ws: Workspace
) -> None:
    runner.on(Script(reply="[RESOLVED] agreed"), prompt="")
    schemas = await _schemas(tools)
    job = (await tools("dispatch_async", agent="alpha", task="bg")).ok
    calls: list[tuple[str, dict[str, Any]]] = [
        ("dispatch", {"agent": "alpha", "task": "t"}),
        ("dispatch", {"agent": "alpha", "task": "t", "return_ref": True}),
        ("dispatch", {"agent": "alpha", "task": "t", "response_format": "json"}),
        ("dispatch_session", {"agent": "alpha", "task": "t"}),
        ("dispatch_stream", {"agent": "alpha", "task": "t"}),
        ("dispatch_parallel", {"dispatches": [{"agent": "alpha", "task": "a"}]}),
        (
            "dispatch_parallel",
            {
                "dispatches": [
                    {"agent": "alpha", "task": "a", "return_ref": True},
                    {"agent": "beta", "task": "b"},
                ],
                "aggregate": "beta",
            },
        ),
        ("dispatch_dialogue", {"requester": "alpha", "responder": "beta", "topic": "x"}),
        ("dispatch_wait", {"job_id": job["job_id"]}),
        ("dispatch_wait", {"job_ids": [job["job_id"]]}),
        ("dispatch_status", {"job_id": job["job_id"]}),
        ("fetch_result", {"ref": job["job_id"], "max_chars": 3}),
        ("dispatch_cancel", {"job_id": job["job_id"]}),
        ("dispatch_jobs", {}),
        ("dispatch_gc", {"dry_run": True}),
        ("dispatch_gc", {"max_age_days": 1}),
        ("list_agents", {}),
        ("inspect_agent", {"name": "alpha"}),
        ("inspect_agent", {"name": "alpha", "preview_lines": 0}),
        ("list_groups", {}),
        ("inspect_group", {"name": "team"}),
        (
            "add_agent",
            {
                "name": "gamma",
                "directory": str(ws.beta),
                "max_budget_usd": 1.5,
                "permission_mode": "plan",
                "allowed_tools": "Read",
                "disallowed_tools": "[]",
                "risky_capabilities": "deploy",
            },
        ),
        ("inspect_agent", {"name": "gamma"}),
        ("list_agents", {}),
        ("update_agent", {"name": "gamma", "timeout": "none"}),
        ("remove_agent", {"name": "gamma"}),
        ("cache_stats", {}),
        ("cache_clear", {}),
    ]
    seen = {"dispatch_async"}
    for name, args in calls:
        answer = (await tools.call(name, args)).ok
        jsonschema.validate(answer, schemas[name])
        seen.add(name)
    assert seen == TYPED


@pytest.mark.parametrize(
    "answer",
    [
        DispatchResult,
        views.RefAnswer,
        views.JobRecord,
        views.JobList,
        views.Cancelled,
        registry.AgentInfo,
        registry.GroupInfo,
        CacheStats,
    ],
)
def test_a_struct_answer_publishes_msgspecs_schema_of_that_struct(answer: type) -> None:
    schema = output_schema(answer)
    own = msgspec.json.schema(answer)["$defs"][answer.__name__]
    assert schema["properties"] == own["properties"]
    assert schema.get("required") == own.get("required")
    assert set(schema["properties"]) == {f.encode_name for f in msgspec.structs.fields(answer)}


def test_a_union_answer_publishes_one_of_its_structs() -> None:
    schema = output_schema(views.Purged | views.WouldPurge)
    purged = msgspec.to_builtins(views.Purged(purged=1, job_ids=["a"]))
    jsonschema.validate(purged, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"purged": "one"}, schema)
