"""What the calling model may change in agents.yaml over MCP (SECURITY.md, "Permissions").

The model is semi-trusted: it may have read hostile text. The CLI, run by a
person, keeps full power; over MCP, `add_agent`, `update_agent` and
`remove_agent` run every change through `check_edit` inside the config lock,
so the rule holds against the config as it is written, not as it was read.

The rules:
- `settings.mcp_agent_edits: false` turns agent edits over MCP off entirely.
- No change over MCP may leave an agent running with `bypassPermissions`,
  whether the change sets the mode, clears it to inherit a bypass default, adds
  an agent that inherits it, or touches an agent that already runs with it (a
  new directory, tools or instructions would widen a person's grant).
  Lowering such an agent's mode, or removing it, stays allowed.
"""

from __future__ import annotations

import shlex

from agent_dispatch.errors import NotAllowed
from agent_dispatch.models import AgentConfig, Config, permission_mode_of

BYPASS = "bypassPermissions"


def command(*words: str) -> str:
    """A command line that is safe to paste."""
    return shlex.join(words)


def _verb(before: AgentConfig | None, after: AgentConfig | None) -> str:
    return "add" if before is None else "remove" if after is None else "update"


def _cli(name: str, before: AgentConfig | None, after: AgentConfig | None, *flags: str) -> str:
    verb = _verb(before, after)
    words = ["agent-dispatch", verb, name]
    if verb == "add":
        words.append(after.directory if after is not None else "DIR")
    return command(*words, *flags)


def check_edits_allowed(cfg: Config, name: str, verb: str) -> None:
    """NotAllowed when the settings turn agent edits over MCP off."""
    if cfg.settings.mcp_agent_edits:
        return
    words = ["agent-dispatch", verb, name] + (["DIR"] if verb == "add" else [])
    raise NotAllowed(
        f"{verb}_agent: agent edits over MCP are turned off (settings.mcp_agent_edits: false)",
        f"A person makes this change from a shell: `{command(*words)}` (see --help).",
    )


def check_edit(
    cfg: Config, name: str, before: AgentConfig | None, after: AgentConfig | None
) -> None:
    """Raise NotAllowed when an MCP caller may not turn `before` into `after`.

    `before` is None for an added agent, `after` None for a removed one; `cfg` is
    the config the change applies to (read inside the lock).
    """
    check_edits_allowed(cfg, name, _verb(before, after))
    if after is None or permission_mode_of(after, cfg.settings) != BYPASS:
        return
    if after.permission_mode == BYPASS and (before is None or before.permission_mode != BYPASS):
        raise NotAllowed(
            f"permission_mode: {BYPASS} is not granted over MCP",
            "Bypassing every permission prompt is a person's choice, made from a shell: "
            f"`{_cli(name, before, after, '--permission-mode', BYPASS)}`.",
        )
    if before is not None and permission_mode_of(before, cfg.settings) == BYPASS:
        raise NotAllowed(
            f"agent {name!r} runs with {BYPASS}: it is changed only from the CLI",
            f"A person makes this change from a shell: `{_cli(name, before, after)} ...` "
            "(see `agent-dispatch update --help`).",
        )
    raise NotAllowed(
        f"agent {name!r} would inherit {BYPASS} from settings.default_permission_mode",
        "Pass another permission_mode (e.g. default or acceptEdits), or have a person make "
        f"the change from a shell: `{_cli(name, before, after)}`.",
    )
