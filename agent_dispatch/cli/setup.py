"""`init` (config + Claude Code registration) and `doctor` (every check, each with its fix)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from typing import Annotated, Literal

import msgspec
from cyclopts import Parameter

from agent_dispatch import __version__, handshake
from agent_dispatch.cli import service_cmd
from agent_dispatch.cli.common import (
    INSTALL_CLAUDE,
    SERVER_NAME,
    command,
    config_store,
    cut,
    emit,
    emit_json,
    find_claude,
    fix_line,
    plural,
    registration_argv,
    warn,
)
from agent_dispatch.cli.terminal import terminal_text
from agent_dispatch.errors import ConfigError, DispatchError
from agent_dispatch.models import Config
from agent_dispatch.runtime import servers
from agent_dispatch.storage import describe
from agent_dispatch.storage.config import agent_directory, save_config
from agent_dispatch.storage.config_perms import InsecureConfig
from agent_dispatch.storage.jobs import ENV_VAR as JOBS_ENV_VAR
from agent_dispatch.storage.jobs import jobs_dir

VERSION_TIMEOUT = 15.0
MCP_TIMEOUT = 60.0  # `claude mcp list` starts every registered server to check it

Status = Literal["ok", "warn", "fail", "skip"]


class Check(msgspec.Struct, kw_only=True):
    name: str
    status: Status
    message: str
    fix: str | None = None


def _clean(data: bytes) -> str:
    """Whatever a child printed, as safe printable text (odd bytes and escapes dropped)."""
    return terminal_text(data.decode("utf-8", "replace"))


def _run(argv: list[str], timeout: float) -> tuple[int | None, str]:
    """(exit status, stdout + stderr) of a short command; None when it could not finish."""
    try:
        proc = subprocess.run(  # noqa: S603 - argv list, no shell
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return None, f"no answer within {timeout:.0f}s"
    except OSError as exc:
        return None, exc.strerror or str(exc)
    return proc.returncode, _clean(proc.stdout + b"\n" + proc.stderr).strip()


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


# -- init ----------------------------------------------------------------------------


def init() -> int:
    """Create the config (0600, in a 0700 directory) and register the MCP server with
    Claude Code (`claude mcp add-json agent-dispatch ... --scope user`): `agent-dispatch
    serve`, the front that relays each session to your agent-dispatch service.

    An existing config is left alone. Without the claude CLI, prints the command to run later.
    """
    store = config_store()
    path = store.path
    status = 0
    cfg: Config | None = Config()
    if os.path.lexists(path):
        emit(f"config: {path} exists (left unchanged)")
        try:
            cfg = store.load()
        except ConfigError as exc:
            warn(f"warning: the config is invalid: {exc.message}")
            warn(f"  fix it, then check with: {command('agent-dispatch', 'doctor')}")
            cfg, status = None, 1
    else:
        save_config(path, Config())
        emit(f"config: created {path}")
    later = command(*registration_argv("claude"))
    claude = find_claude(cfg)
    if claude is None:
        emit("claude CLI: not found, so agent-dispatch is not registered with Claude Code yet.")
        emit(f"  install it: {INSTALL_CLAUDE}")
        emit(f"  then run:   {later}")
        _next_steps()
        return status
    rc, output = _run(registration_argv(claude), MCP_TIMEOUT)
    if rc == 0:
        emit("registered with Claude Code (user scope):")
        emit(f"  {later}")
    elif "already exists" in output.lower():
        emit("Claude Code already has an MCP server named agent-dispatch (left unchanged).")
        emit("  to point it at this install:")
        emit(f"  {command('claude', 'mcp', 'remove', SERVER_NAME, '--scope', 'user')}")
        emit(f"  {later}")
    else:
        why = _first_line(output) or f"exit status {rc}"
        raise DispatchError(
            f"registering with Claude Code failed: {why}", f"Run it yourself: {later}"
        )
    _next_steps()
    return status


def _next_steps() -> None:
    emit("next:")
    emit(f"  {command('agent-dispatch', 'add', 'NAME', 'DIR')}")
    emit(f"  {command('agent-dispatch', 'doctor')}")


# -- doctor --------------------------------------------------------------------------


def group_repair_command(cfg: Config, group: str) -> str:
    """The command that drops a group's unknown members (or the group, if none are left)."""
    kept = [m for m in cfg.groups[group].members if m.agent in cfg.agents]
    if not kept:
        return command("agent-dispatch", "group", "remove", group)
    members = ",".join(
        f"{m.agent}:{m.use_for}" if m.use_for and "," not in m.use_for else m.agent for m in kept
    )
    return command("agent-dispatch", "group", "update", group, "--members", members)


def _mode_check(name: str, path: str, want: int) -> Check | None:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if mode & 0o077:
        return Check(
            name=name,
            status="warn",
            message=f"{path} is readable by others (mode {mode:o})",
            fix=command("chmod", f"{want:o}", path),
        )
    return None


def _config_checks() -> tuple[list[Check], Config | None]:
    store = config_store()
    path = str(store.path)
    if not os.path.lexists(path):
        return [
            Check(
                name="config",
                status="warn",
                message=f"no config at {path} yet",
                fix=command("agent-dispatch", "init"),
            )
        ], Config()
    try:
        cfg = store.load()
    except ConfigError as exc:
        return [
            Check(
                name="config",
                status="fail",
                message=exc.message,
                fix=exc.fix
                if isinstance(exc, InsecureConfig)
                else f"edit {command(path)}" + _config_hint(exc),
            )
        ], None
    checks = [
        Check(name="config", status="ok", message=f"{path}: {plural(len(cfg.agents), 'agent')}")
    ]
    for found in (
        _mode_check("config", path, 0o600),
        _mode_check("config", os.path.dirname(path), 0o700),
    ):
        if found is not None:
            checks.append(found)
    if not cfg.agents:
        checks.append(
            Check(
                name="agents",
                status="warn",
                message="no agents configured",
                fix=command("agent-dispatch", "add", "NAME", "DIR"),
            )
        )
    return checks, cfg


def _claude_checks(cfg: Config | None) -> list[Check]:
    exe = find_claude(cfg)
    if exe is None:
        return [
            Check(
                name="claude",
                status="fail",
                message="claude CLI not found (AGENT_DISPATCH_CLAUDE, settings.claude_path, PATH)",
                fix=INSTALL_CLAUDE,
            ),
            Check(name="mcp registration", status="skip", message="needs the claude CLI"),
        ]
    rc, output = _run([exe, "--version"], VERSION_TIMEOUT)
    if rc != 0:
        checks = [
            Check(
                name="claude",
                status="fail",
                message=f"`{exe} --version` failed: {_first_line(output) or f'exit status {rc}'}",
                fix=INSTALL_CLAUDE,
            )
        ]
    else:
        checks = [Check(name="claude", status="ok", message=f"{_first_line(output)} ({exe})")]
    if sys.stderr.isatty():
        warn("checking the MCP registration (claude mcp list)...")
    checks.append(_registration_check(exe))
    return checks


def _registration_check(exe: str) -> Check:
    rc, output = _run([exe, "mcp", "list"], MCP_TIMEOUT)
    reregister = (
        f"{command('claude', 'mcp', 'remove', SERVER_NAME, '--scope', 'user')} && "
        f"{command('agent-dispatch', 'init')}"
    )
    line = next(
        (ln.strip() for ln in output.splitlines() if ln.strip().startswith(f"{SERVER_NAME}:")),
        None,
    )
    if line is None:
        if rc != 0:
            return Check(
                name="mcp registration",
                status="warn",
                message=f"`claude mcp list` failed: {_first_line(output) or f'exit {rc}'}",
                fix=command(*registration_argv("claude")),
            )
        return Check(
            name="mcp registration",
            status="fail",
            message="agent-dispatch is not registered with Claude Code",
            fix=command("agent-dispatch", "init"),
        )
    words = line.split(":", 1)[1].split()
    target = words[0] if words else ""
    if target.startswith("/") and not os.path.exists(target):
        return Check(
            name="mcp registration",
            status="fail",
            message=f"registered command {target} does not exist",
            fix=reregister,
        )
    health = line.rsplit(" - ", 1)[-1] if " - " in line else ""
    if "fail" in health.lower() or "✗" in health:
        return Check(
            name="mcp registration",
            status="warn",
            message=f"registered, but Claude Code could not connect: {line[:300]}",
            fix=reregister,
        )
    return Check(name="mcp registration", status="ok", message=line[:300])


def _agent_checks(cfg: Config) -> list[Check]:
    checks = []
    for name, agent in sorted(cfg.agents.items()):
        directory = str(agent_directory(agent))
        facts = describe.detect(agent_directory(agent))
        label = f"agent {name}"
        if facts.healthy == "UNREADABLE":
            checks.append(
                Check(
                    name=label,
                    status="fail",
                    message=facts.error or f"{directory} is not readable",
                    fix=command("chmod", "u+rx", directory),
                )
            )
        elif not facts.healthy:
            checks.append(
                Check(
                    name=label,
                    status="fail",
                    message=facts.error or f"{directory} is not a directory",
                    fix=f"{command('agent-dispatch', 'update', name, '--directory', 'DIR')}"
                    f"  (or: {command('agent-dispatch', 'remove', name)})",
                )
            )
        elif facts.mcp_error:
            checks.append(
                Check(
                    name=label,
                    status="warn",
                    message=f"{directory}: {facts.mcp_error}",
                    fix=f"edit {command(os.path.join(directory, '.mcp.json'))}",
                )
            )
        elif not facts.has_claude_md:
            checks.append(
                Check(
                    name=label,
                    status="warn",
                    message=f"{directory} has no CLAUDE.md (the agent gets no project briefing)",
                    fix=f"cd {command(directory)} && claude  (then run /init)",
                )
            )
        else:
            checks.append(Check(name=label, status="ok", message=directory))
    for group, spec in sorted(cfg.groups.items()):
        unknown = [m.agent for m in spec.members if m.agent not in cfg.agents]
        if unknown:
            checks.append(
                Check(
                    name=f"group {group}",
                    status="fail",
                    message=f"unknown member(s): {', '.join(unknown)}",
                    fix=group_repair_command(cfg, group),
                )
            )
    return checks


def _jobs_check() -> Check:
    path = jobs_dir()
    if not os.path.lexists(path):
        return Check(name="jobs", status="ok", message=f"{path} (created on first use)")
    if not path.is_dir():
        return Check(
            name="jobs",
            status="fail",
            message=f"{path} exists and is not a directory",
            fix=f"{command('mv', str(path), f'{path}.bak')}  (or set {JOBS_ENV_VAR})",
        )
    if not os.access(path, os.W_OK | os.X_OK):
        return Check(
            name="jobs",
            status="fail",
            message=f"{path} is not writable",
            fix=command("chmod", "700", str(path)),
        )
    return _mode_check("jobs", str(path), 0o700) or Check(
        name="jobs", status="ok", message=str(path)
    )


def run_checks() -> list[Check]:
    checks, cfg = _config_checks()
    checks += _claude_checks(cfg)
    if cfg is not None:
        checks += _agent_checks(cfg)
    checks.append(_jobs_check())
    checks.append(_service_check())
    checks.append(_servers_check())
    return checks


def _servers_check() -> Check:
    """Every running agent-dispatch process of this user: the registry's services,
    standalone servers and fronts, and any `serve` process missing from it (a version
    from before the registry: the original package's too). Older ones are flagged:
    they linger after an upgrade, one per Claude Code session."""
    try:
        found = servers.live_entries(servers.registry_dir())
    except OSError as exc:
        return Check(name="servers", status="warn", message=f"cannot read the registry: {exc}")
    strays = servers.unregistered(found)
    old = [e for e in found if handshake.newer(__version__, e.version)]
    fronts = sum(e.kind == "front" and e not in old for e in found)

    def show(e: servers.ServerEntry) -> str:
        jobs = f", {plural(len(e.jobs), 'job')}" if e.jobs else ""
        return f"pid {e.pid} ({e.kind} {e.version}, since {e.started_at}{jobs})"

    current = [show(e) for e in found if e.kind != "front" and e not in old]
    if fronts:
        current.append(plural(fronts, "front") + " (one per connected Claude Code session)")
    if not old and not strays:
        return Check(name="servers", status="ok", message="; ".join(current) or "none running")
    parts = []
    if old:
        held = sum(len(e.jobs) for e in old)
        parts.append(
            f"{len(old)} run a version older than this install ({__version__}): "
            + "; ".join(map(show, old))
            + (f" (stopping them cancels the {plural(held, 'job')} they run)" if held else "")
        )
    if strays:
        parts.append(
            f"{plural(len(strays), 'serve process')} from a version without the registry: "
            + "; ".join(f"pid {pid} ({cut(argv, 80)})" for pid, argv in strays)
        )
    now = "; ".join(current)
    return Check(
        name="servers",
        status="warn",
        message=(f"running: {now}. " if now else "")
        + ". ".join(parts)
        + ". Each front or standalone server belongs to an open Claude Code session:"
        " restart the session after stopping it",
        fix=command(
            "kill", *(str(pid) for pid in [*(e.pid for e in old), *(p for p, _ in strays)])
        ),
    )


def _service_check() -> Check:
    """The per-user service: running or not (it starts on demand), and not outdated."""
    try:
        found = service_cmd.query_status(timeout=2.0)
    except (DispatchError, OSError) as exc:
        message = exc.message if isinstance(exc, DispatchError) else str(exc)
        return Check(name="service", status="fail", message=message)
    if found is None:
        return Check(name="service", status="ok", message="not running (started on demand)")
    if handshake.newer(__version__, found.version):
        return Check(
            name="service",
            status="warn",
            message=f"{service_cmd.describe(found)}: older than this install ({__version__})",
            fix="agent-dispatch service stop",
        )
    return Check(name="service", status="ok", message=f"running: {service_cmd.describe(found)}")


_LABELS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}


def doctor(
    *,
    json: Annotated[bool, Parameter(name="--json", negative="")] = False,
    strict: Annotated[bool, Parameter(negative="")] = False,
) -> int:
    """Check the setup: claude CLI and version, config, MCP registration, agent
    directories, groups, job storage and the service. Every problem comes with its fix.

    Exits 1 when a check fails (with --strict, also on warnings).

    Parameters
    ----------
    json
        Print the checks as JSON.
    strict
        Treat warnings as problems.
    """
    checks = run_checks()
    problems = sum(c.status == "fail" for c in checks)
    warnings = sum(c.status == "warn" for c in checks)
    healthy = problems == 0 and not (strict and warnings)
    if json:
        emit_json(
            {
                "ok": healthy,
                "strict": strict,
                "problems": problems,
                "warnings": warnings,
                "config": str(config_store().path),
                "checks": msgspec.to_builtins(checks),
            }
        )
        return 0 if healthy else 1
    width = max(len(c.name) for c in checks)
    for c in checks:
        emit(f"{_LABELS[c.status]}  {c.name.ljust(width)}  {c.message}")
        if c.fix and c.status in ("warn", "fail"):
            emit(fix_line(c.fix, " " * (width + 8)))
    summary = f"{plural(problems, 'problem')}, {plural(warnings, 'warning')}"
    emit(summary if not healthy else f"all good ({summary})")
    return 0 if healthy else 1


def _config_hint(exc: ConfigError) -> str:
    """The error's hint, unless it is the generic one that sends you to doctor: we are it."""
    if not exc.face_hint or exc.face_hint == ConfigError.default_hint:
        return " (see agents.example.yaml)"
    return f" ({exc.face_hint})"
