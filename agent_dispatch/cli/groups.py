"""`group add|list|inspect|update|remove`: named sets of agents with shared context."""

from __future__ import annotations

import msgspec
from cyclopts import App

from agent_dispatch.cli.common import JsonFlag, command, config_store, cut, emit, emit_json, table
from agent_dispatch.errors import InvalidArgument
from agent_dispatch.service import registry

group_app = App(name="group", help="Manage agent groups (add, list, inspect, update, remove).")

# -- groups ------------------------------------------------------------------------


def _print_group(info: registry.GroupInfo) -> None:
    emit(info.name)
    emit(f"  description     {info.description or '-'}")
    if info.shared_context:
        emit(f"  shared_context  {info.shared_context}")
    if not info.members:
        emit("  members         (none)")
    for member in info.members:
        flag = "  (UNKNOWN agent)" if member.unknown is True else ""
        use = f": {member.use_for}" if member.use_for else ""
        emit(f"  member          {member.agent}{use}{flag}")


@group_app.command(name="add")
def group_add(
    name: str,
    /,
    *,
    members: str | None = None,
    description: str | None = None,
    shared_context: str | None = None,
) -> int:
    """Create a group of agents.

    Parameters
    ----------
    name
        The group's name.
    members
        Comma list of `agent` or `agent:what to use it for`.
    description
        What the group is for.
    shared_context
        Context every member gets when dispatched as part of the group.
    """
    info = registry.save_group(
        config_store(),
        name,
        create=True,
        description=description,
        shared_context=shared_context,
        members=members,
    )
    emit(f"added group {name}")
    _print_group(info)
    return 0


@group_app.command(name="update")
def group_update(
    name: str,
    /,
    *,
    members: str | None = None,
    description: str | None = None,
    shared_context: str | None = None,
) -> int:
    """Change a group; --members replaces the member list; `none` clears a text field.

    Parameters
    ----------
    name
        The group to change.
    members
        Comma list of `agent` or `agent:what to use it for` (replaces the list).
    description
        What the group is for.
    shared_context
        Context every member gets when dispatched as part of the group.
    """
    if members is None and description is None and shared_context is None:
        raise InvalidArgument(
            "group update: nothing to change",
            "Pass --members, --description or --shared-context.",
        )
    info = registry.save_group(
        config_store(),
        name,
        create=False,
        description=description,
        shared_context=shared_context,
        members=members,
    )
    emit(f"updated group {name}")
    _print_group(info)
    return 0


@group_app.command(name="list")
def group_list(*, json: JsonFlag = False) -> int:
    """List the groups and their members (unknown members are flagged)."""
    groups = registry.list_groups(config_store().load())
    if json:
        emit_json({"groups": msgspec.to_builtins(groups)})
        return 0
    if not groups:
        emit("no groups")
        emit(f"  add one: {command('agent-dispatch', 'group', 'add', 'NAME', '--members', 'a,b')}")
        return 0
    rows = []
    for g in groups:
        names = [m.agent + ("(UNKNOWN)" if m.unknown is True else "") for m in g.members]
        rows.append([g.name, ",".join(names) or "-", cut(g.description, 60)])
    for line in table(["NAME", "MEMBERS", "DESCRIPTION"], rows):
        emit(line)
    return 0


@group_app.command(name="inspect")
def group_inspect(name: str, /, *, json: JsonFlag = False) -> int:
    """Show one group: description, shared context and members.

    Parameters
    ----------
    name
        The group to show.
    """
    info = registry.inspect_group(config_store().load(), name)
    if json:
        emit_json(msgspec.to_builtins(info))
    else:
        _print_group(info)
    return 0


@group_app.command(name="remove")
def group_remove(name: str, /) -> int:
    """Remove a group (its agents stay).

    Parameters
    ----------
    name
        The group to remove.
    """
    registry.remove_group(config_store(), name)
    emit(f"removed group {name}")
    return 0
