"""Remedies as data: what to change, to which value, to fix a failed or odd dispatch.

The Claude CLI adapter (claude/classify.py) and the service say what would help as
an `Advice`: prose and `Remedy` values in reading order. They never spell a remedy
in any face's words. Each face renders it: the MCP server as tool calls
(server/remedies.py), the CLI as shell commands (cli/remedies.py), the library as
Python (service/remedies.py). A DispatchResult carries its advice in `advice`; its
`hint` is the text rendered for whoever receives it.

The model lives beside models.py because DispatchResult holds it, and the model
layer imports nothing above it.
"""

from __future__ import annotations

from typing import Literal

import msgspec

AgentField = Literal[
    "timeout", "max_budget_usd", "allowed_tools", "directory", "instructions", "permission_mode"
]


class _Remedy(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    pass


class UpdateAgent(_Remedy, frozen=True, tag="update_agent"):
    """Store a new value for one of the agent's fields. `value=None`: the user picks it."""

    agent: str
    field: AgentField
    value: str | int | float | None = None


class RemoveAgent(_Remedy, frozen=True, tag="remove_agent"):
    """Remove the agent from the configuration."""

    agent: str


class ResumeSession(_Remedy, frozen=True, tag="resume_session"):
    """Continue the run's session, which holds the work done so far."""

    agent: str
    session_id: str


class NewSession(_Remedy, frozen=True, tag="new_session"):
    """Start a fresh session (the one asked for is gone)."""

    agent: str


class CallTimeout(_Remedy, frozen=True, tag="call_timeout"):
    """Dispatch again with a per-call deadline; `seconds=0` uses the agent's own timeout."""

    agent: str
    seconds: int


class CheckInstall(_Remedy, frozen=True, tag="check_install"):
    """Check the claude executable and the setup (the doctor command)."""


Remedy = UpdateAgent | RemoveAgent | ResumeSession | NewSession | CallTimeout | CheckInstall
REMEDY_TYPES: tuple[type[Remedy], ...] = (
    UpdateAgent,
    RemoveAgent,
    ResumeSession,
    NewSession,
    CallTimeout,
    CheckInstall,
)


class Choice(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="choice"):
    """Alternatives, any one of which helps ("A, B or C"). A face may offer one remedy in
    more than one form here (the MCP face names both the tool call and the command)."""

    options: tuple[Remedy, ...]


Part = (
    str
    | UpdateAgent
    | RemoveAgent
    | ResumeSession
    | NewSession
    | CallTimeout
    | CheckInstall
    | Choice
)


class Advice(msgspec.Struct, frozen=True):
    """A hint as data: prose and remedies in reading order, rendered by each face."""

    parts: tuple[Part, ...]

    def __add__(self, other: Advice) -> Advice:
        """Two hints, one after the other (a space between)."""
        return Advice((*self.parts, " ", *other.parts))

    def remedies(self) -> list[Remedy]:
        """Every remedy named, alternatives included, in reading order."""
        found: list[Remedy] = []
        for part in self.parts:
            if isinstance(part, Choice):
                found.extend(part.options)
            elif not isinstance(part, str):
                found.append(part)
        return found


def advice(*parts: Part) -> Advice:
    """An Advice from its parts; empty strings are dropped."""
    return Advice(tuple(p for p in parts if p != ""))
