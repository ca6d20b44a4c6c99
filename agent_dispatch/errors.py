"""A small, flat error hierarchy, translated at the edges.

Each error carries a `hint`: the next thing a user can do. A library caller
reads `hint`, worded as Python when the class has a `python_hint`; the faces
use `face_hint`, worded as MCP tool calls and shell commands: the MCP server
turns it into the `{"error", "hint"}` envelope, the CLI into one line and exit 1.
An explicit hint is both.
"""

from __future__ import annotations

from typing import Self

MAX_MESSAGE = 2000  # an error quotes what it got: a 100 kB name must not come back whole


class DispatchError(Exception):
    """Base class: a problem the user can act on.

    The subclasses here are bad input, raised by the call that got it (nothing
    ran). A run that happened and failed is a DispatchResult with success=False;
    its `raise_for_error()` raises a `DispatchFailed` (agent_dispatch/results.py),
    also a DispatchError, so `except DispatchError` catches both kinds.
    """

    default_hint = ""  # the faces' wording (tool calls, shell commands)
    python_hint: str | None = None  # a library caller's wording; None: default_hint

    def __init__(self, message: str, hint: str | None = None) -> None:
        message = _bounded(message)
        super().__init__(message)
        self.message = message
        self.face_hint = _bounded(self.default_hint if hint is None else hint)
        python = self.python_hint if self.python_hint is not None else self.default_hint
        self.hint = _bounded(python if hint is None else hint)

    def envelope(self) -> dict[str, str]:
        """The MCP face's `{"error", "hint"}`."""
        return {"error": self.message, "hint": self.face_hint}

    def under(self, path: str) -> Self:
        """This error, raised for a field inside `path` (e.g. `dispatches[2]`).

        Messages start with the field they are about (`session_id: ...`); the
        container's path is put in front once, here, never a field name again.
        """
        moved = type(self)(f"{path}.{self.message}", self.face_hint)
        moved.hint = self.hint
        return moved


class ConfigError(DispatchError):
    """The config file is missing a piece, unreadable, or invalid."""

    default_hint = "Fix agents.yaml (see agents.example.yaml) or run `agent-dispatch doctor`."


class InvalidArgument(DispatchError):
    """A tool or command argument is out of range or malformed."""


class NotAllowed(DispatchError):
    """The caller may not do this here: an MCP edit the config reserves for the CLI."""


class UnknownAgent(DispatchError):
    default_hint = "Call list_agents (or `agent-dispatch list`) to see the configured agents."
    python_hint = "The configured agents are the keys of `dispatcher.config().agents`."


class UnknownGroup(DispatchError):
    default_hint = "Call list_groups (or `agent-dispatch group list`) to see the groups."
    python_hint = "The groups are the keys of `dispatcher.config().groups`."


class JobNotFound(DispatchError):
    default_hint = "Call dispatch_jobs (or `agent-dispatch jobs`) to see the known job ids."
    python_hint = "`await dispatcher.list_jobs()` lists the known jobs and their ids."


class StorageError(DispatchError):
    """Job or config storage cannot be used (permissions, disk, ...)."""


def _bounded(text: str) -> str:
    if len(text) <= MAX_MESSAGE:
        return text
    return f"{text[: MAX_MESSAGE - 40]}... [{len(text) - MAX_MESSAGE + 40} more characters]"
