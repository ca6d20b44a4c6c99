"""What an agent's directory looks like: health, CLAUDE.md, MCP servers, stacks, DBs.

Pure, bounded file reads. An agent directory is not trusted: nothing here
raises on a missing or unreadable directory, reads more than `MAX_READ` bytes
of a file, opens anything but a regular file (a FIFO would block, /dev/zero
never ends), or reads through a symlink that leads outside the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from agent_dispatch.storage.files import FileTooLarge, read_regular

__all__ = ["ProjectFacts", "auto_description", "detect", "preview"]

MAX_READ = 64 * 1024
MAX_DESCRIPTION = 300
_MAX_LISTED = 5000  # entries looked at for suffix markers (*.csproj, *.tf)

# name in the directory -> label. Directories end with "/".
_STACK_MARKERS: tuple[tuple[str, str], ...] = (
    ("Dockerfile", "docker"),
    ("docker-compose.yml", "docker"),
    ("docker-compose.yaml", "docker"),
    ("compose.yml", "docker"),
    ("compose.yaml", "docker"),
    ("Cargo.toml", "rust"),
    ("go.mod", "go"),
    ("pyproject.toml", "python"),
    ("setup.py", "python"),
    ("setup.cfg", "python"),
    ("requirements.txt", "python"),
    ("Pipfile", "python"),
    ("package.json", "node"),
    ("deno.json", "deno"),
    ("deno.jsonc", "deno"),
    ("tsconfig.json", "typescript"),
    ("Gemfile", "ruby"),
    ("pom.xml", "java"),
    ("build.gradle", "java"),
    ("build.gradle.kts", "kotlin"),
    ("composer.json", "php"),
    ("mix.exs", "elixir"),
    ("Package.swift", "swift"),
    ("pubspec.yaml", "dart"),
    ("CMakeLists.txt", "cmake"),
    ("build.zig", "zig"),
    ("stack.yaml", "haskell"),
    ("flake.nix", "nix"),
)
_STACK_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".csproj", "dotnet"),
    (".fsproj", "dotnet"),
    (".sln", "dotnet"),
    (".cabal", "haskell"),
    (".tf", "terraform"),
)
_DB_MARKERS: tuple[tuple[str, str], ...] = (
    ("prisma/", "prisma"),
    ("schema.prisma", "prisma"),
    ("alembic.ini", "alembic"),
    ("alembic/", "alembic"),
    ("migrations/", "migrations"),
    ("db/migrate/", "migrations"),
    ("drizzle.config.ts", "drizzle"),
    ("drizzle.config.js", "drizzle"),
    ("knexfile.js", "knex"),
    ("knexfile.ts", "knex"),
    ("ormconfig.json", "typeorm"),
    ("diesel.toml", "diesel"),
    ("flyway.conf", "flyway"),
    ("liquibase.properties", "liquibase"),
    ("sqlc.yaml", "sqlc"),
    ("sqlc.yml", "sqlc"),
    ("supabase/", "supabase"),
)
_CLAUDE_MD = ("CLAUDE.md", ".claude/CLAUDE.md")


class ProjectFacts(msgspec.Struct, kw_only=True):
    """What `detect` found. `error` says why a directory is unhealthy or unreadable."""

    healthy: bool | Literal["UNREADABLE"]
    has_claude_md: bool = False
    has_mcp_config: bool = False
    mcp_servers: list[str] = msgspec.field(default_factory=list)
    stacks: list[str] = msgspec.field(default_factory=list)
    dbs: list[str] = msgspec.field(default_factory=list)
    error: str | None = None
    mcp_error: str | None = None  # .mcp.json exists but cannot be read or parsed


def detect(directory: Path) -> ProjectFacts:
    """Health and markers of a project directory. Never raises."""
    try:
        st = os.stat(directory)
    except (FileNotFoundError, NotADirectoryError):
        return ProjectFacts(healthy=False, error=f"directory {directory} does not exist")
    except ValueError as exc:  # a NUL byte in the path
        return ProjectFacts(healthy=False, error=f"invalid directory {directory!r}: {exc}")
    except OSError as exc:
        return ProjectFacts(healthy="UNREADABLE", error=f"cannot access {directory}: {_why(exc)}")
    if not stat.S_ISDIR(st.st_mode):
        return ProjectFacts(healthy=False, error=f"{directory} is not a directory")
    try:
        listed = _list(directory)
    except (OSError, ValueError) as exc:
        return ProjectFacts(healthy="UNREADABLE", error=f"cannot list {directory}: {_why(exc)}")
    facts = ProjectFacts(
        healthy=True,
        has_claude_md=any(_is_file(directory / name) for name in _CLAUDE_MD),
        has_mcp_config=_is_file(directory / ".mcp.json"),
        stacks=_markers(directory, listed, _STACK_MARKERS, _STACK_SUFFIXES),
        dbs=_markers(directory, listed, _DB_MARKERS, ()),
    )
    if facts.has_mcp_config:
        facts.mcp_servers, facts.mcp_error = _mcp_servers(directory)
    return facts


def auto_description(directory: Path) -> str:
    """A one-line description of a project, from its own files. Never raises.

    CLAUDE.md's first meaningful paragraph, else README.md's first substantial
    line, else the pyproject.toml or package.json description, else a fallback
    naming the directory and its stacks.
    """
    for name in _CLAUDE_MD:
        text = _read_text(directory, name)
        if text and (found := _first_paragraph(text)):
            return found
    text = _read_text(directory, "README.md")
    if text and (found := _first_substantial_line(text)):
        return found
    for source in (_pyproject_description, _package_json_description):
        if found := source(directory):
            return found
    stacks = detect(directory).stacks
    return f"Project at {directory}" + (f" ({', '.join(stacks)})" if stacks else "")


def preview(directory: Path, filename: str, max_lines: int) -> str | None:
    """The first `max_lines` lines of a file in `directory`; None if absent or unreadable."""
    text = _read_text(directory, filename)
    if text is None:
        return None
    return "".join(text.splitlines(keepends=True)[: max(max_lines, 0)])


# -- reading ------------------------------------------------------------------


def _why(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def _list(directory: Path) -> list[str]:
    """Up to _MAX_LISTED entry names. Raises when the directory cannot be listed."""
    with os.scandir(directory) as it:
        return [entry.name for entry, _ in zip(it, range(_MAX_LISTED), strict=False)]


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _markers(
    directory: Path,
    listed: list[str],
    names: tuple[tuple[str, str], ...],
    suffixes: tuple[tuple[str, str], ...],
) -> list[str]:
    found: set[str] = set()
    for name, label in names:
        if name.endswith("/"):
            if _is_dir(directory / name.rstrip("/")):
                found.add(label)
        elif os.path.lexists(directory / name):
            found.add(label)
    for entry in listed:
        found.update(label for suffix, label in suffixes if entry.endswith(suffix))
    return sorted(found)


def _read_text(directory: Path, filename: str) -> str | None:
    data = _read_bytes(directory, filename)
    return None if data is None else data.decode("utf-8", errors="replace")


def _confined(directory: Path, filename: str) -> str | None:
    """The real path of `filename` in `directory`, None when it leads out of it."""
    root = os.path.realpath(directory)
    real = os.path.realpath(os.path.join(root, filename))
    if os.path.commonpath([root, real]) != root or real == root:
        return None  # a symlink (or `..`) leading out of the project
    return real


def _read_bytes(directory: Path, filename: str) -> bytes | None:
    """At most MAX_READ bytes of a regular file inside `directory`, else None."""
    try:
        real = _confined(directory, filename)
        # read_regular opens O_NOFOLLOW: the checked path must still be the file we open.
        return None if real is None else read_regular(real, MAX_READ, head=True)[0]
    except (OSError, ValueError):
        return None


def _mcp_servers(directory: Path) -> tuple[list[str], str | None]:
    try:
        real = _confined(directory, ".mcp.json")
        if real is None:
            return [], ".mcp.json: cannot be read"
        data = read_regular(real, MAX_READ)[0]
    except FileTooLarge:
        return [], f".mcp.json: larger than {MAX_READ} bytes, not read"
    except (OSError, ValueError):
        return [], ".mcp.json: cannot be read"
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return [], ".mcp.json: not valid UTF-8"
    except (ValueError, RecursionError) as exc:
        return [], f".mcp.json: invalid JSON ({exc})"
    servers = doc.get("mcpServers", {}) if isinstance(doc, dict) else None
    if not isinstance(servers, dict):
        return [], '.mcp.json: "mcpServers" is not an object'
    return list(servers), None


# -- descriptions -------------------------------------------------------------

_BOILERPLATE = re.compile(r"provides guidance to claude code", re.IGNORECASE)
_BADGE = re.compile(r"^(\[?!\[[^\]]*\]\([^)]*\)\]?(\([^)]*\))?\s*)+$")
_LIST = re.compile(r"^([-*+]|\d+[.)])\s")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_SKIP_LINE = re.compile(r"^(#|<|\||-{3,}$|\*{3,}$|_{3,}$|={3,}$|>\s*\[!)")


def _content_lines(text: str) -> list[str]:
    """Lines with front matter, HTML comments and fenced code blanked out."""
    lines = text.splitlines()
    out: list[str] = []
    in_fence = in_comment = False
    start = 0
    if lines and lines[0].strip() == "---":  # YAML front matter
        for i in range(1, len(lines)):
            if lines[i].strip() in ("---", "..."):
                start = i + 1
                break
    for raw in lines[start:]:
        line = raw.strip()
        if in_comment:
            if "-->" in line:
                in_comment = False
            out.append("")
            continue
        if line.startswith(("```", "~~~")):
            in_fence = not in_fence
            out.append("")
            continue
        if in_fence:
            out.append("")
            continue
        if line.startswith("<!--"):
            in_comment = "-->" not in line
            out.append("")
            continue
        skip = _SKIP_LINE.match(line) or _BADGE.match(line)
        out.append("" if skip else line)
    return out


def _clean(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    if len(text) > MAX_DESCRIPTION:
        cut = text[: MAX_DESCRIPTION - 3]
        if " " in cut[MAX_DESCRIPTION // 2 :]:
            cut = cut.rsplit(" ", 1)[0]
        text = cut.rstrip(" ,;:") + "..."
    return text


def _first_paragraph(text: str) -> str | None:
    paragraph: list[str] = []
    for line in [*_content_lines(text), ""]:
        if line:
            paragraph.append(line)
            continue
        if paragraph:
            found = _clean(" ".join(paragraph))
            paragraph = []
            if _has_words(found) and not _BOILERPLATE.search(found) and not _LIST.match(found):
                return found
    return None


def _first_substantial_line(text: str) -> str | None:
    for line in _content_lines(text):
        found = _clean(line)
        if len(found) >= 12 and _has_words(found):
            return found
    return None


def _has_words(text: str) -> bool:
    return sum(ch.isalpha() for ch in text) >= 3


def _pyproject_description(directory: Path) -> str | None:
    text = _read_text(directory, "pyproject.toml")
    if text is None:
        return None
    try:
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return None
    project = doc.get("project")
    poetry = doc.get("tool", {}).get("poetry") if isinstance(doc.get("tool"), dict) else None
    for table in (project, poetry):
        if isinstance(table, dict) and (found := _description_field(table)):
            return found
    return None


def _package_json_description(directory: Path) -> str | None:
    text = _read_text(directory, "package.json")
    if text is None:
        return None
    with contextlib.suppress(ValueError, RecursionError):
        doc = json.loads(text)
        if isinstance(doc, dict):
            return _description_field(doc)
    return None


def _description_field(table: dict[str, Any]) -> str | None:
    value = table.get("description")
    if isinstance(value, str) and (found := _clean(value)):
        return found
    return None
