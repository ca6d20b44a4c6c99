"""describe.py: health, markers, MCP servers, descriptions and previews of a project dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from agent_dispatch.storage.describe import (
    MAX_READ,
    ProjectFacts,
    auto_description,
    detect,
    preview,
)

REPO = Path(__file__).resolve().parent.parent


def make(root: Path, files: dict[str, str | bytes]) -> Path:
    """Create files (a trailing "/" makes a directory) under root."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


# -- detect ---------------------------------------------------------------------


def test_missing_directory_is_unhealthy(tmp_path: Path) -> None:
    facts = detect(tmp_path / "gone")
    assert facts.healthy is False
    assert facts.error is not None and "does not exist" in facts.error
    assert (facts.stacks, facts.dbs, facts.mcp_servers) == ([], [], [])


def test_a_file_is_not_a_project_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert detect(tmp_path / "f") == ProjectFacts(
        healthy=False, error=f"{tmp_path / 'f'} is not a directory"
    )
    # A path through a regular file: the OS says ENOTDIR.
    assert detect(tmp_path / "f" / "sub").healthy is False


def test_a_nul_byte_in_the_path_is_unhealthy_not_a_crash(tmp_path: Path) -> None:
    assert detect(tmp_path / "a\0b").healthy is False
    assert auto_description(tmp_path / "a\0b").startswith("Project at")
    assert preview(tmp_path / "a\0b", "README.md", 5) is None


def test_empty_directory_is_healthy_with_nothing_detected(tmp_path: Path) -> None:
    assert detect(tmp_path) == ProjectFacts(healthy=True)


@pytest.mark.parametrize(
    ("marker", "stack"),
    [
        ("Dockerfile", "docker"),
        ("docker-compose.yml", "docker"),
        ("compose.yaml", "docker"),
        ("Cargo.toml", "rust"),
        ("go.mod", "go"),
        ("pyproject.toml", "python"),
        ("setup.py", "python"),
        ("requirements.txt", "python"),
        ("Pipfile", "python"),
        ("package.json", "node"),
        ("tsconfig.json", "typescript"),
        ("deno.json", "deno"),
        ("Gemfile", "ruby"),
        ("pom.xml", "java"),
        ("build.gradle", "java"),
        ("build.gradle.kts", "kotlin"),
        ("composer.json", "php"),
        ("mix.exs", "elixir"),
        ("Package.swift", "swift"),
        ("pubspec.yaml", "dart"),
        ("CMakeLists.txt", "cmake"),
        ("App.csproj", "dotnet"),
        ("main.tf", "terraform"),
    ],
)
def test_stack_markers(tmp_path: Path, marker: str, stack: str) -> None:
    make(tmp_path, {marker: ""})
    assert detect(tmp_path).stacks == [stack]


@pytest.mark.parametrize(
    ("marker", "db"),
    [
        ("prisma/", "prisma"),
        ("schema.prisma", "prisma"),
        ("alembic.ini", "alembic"),
        ("alembic/", "alembic"),
        ("migrations/", "migrations"),
        ("db/migrate/", "migrations"),
        ("drizzle.config.ts", "drizzle"),
        ("knexfile.js", "knex"),
        ("ormconfig.json", "typeorm"),
        ("diesel.toml", "diesel"),
        ("flyway.conf", "flyway"),
        ("supabase/", "supabase"),
    ],
)
def test_db_markers(tmp_path: Path, marker: str, db: str) -> None:
    make(tmp_path, {marker: ""})
    assert detect(tmp_path).dbs == [db]


def test_directory_markers_must_be_directories(tmp_path: Path) -> None:
    make(tmp_path, {"migrations": "a file", "prisma": "a file"})
    assert detect(tmp_path).dbs == []


def test_stacks_and_dbs_are_sorted_and_unique(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "setup.py": "",
            "pyproject.toml": "",
            "requirements.txt": "",
            "go.mod": "",
            "Dockerfile": "",
            "alembic.ini": "",
            "alembic/": "",
            "migrations/": "",
        },
    )
    facts = detect(tmp_path)
    assert facts.stacks == ["docker", "go", "python"]
    assert facts.dbs == ["alembic", "migrations"]


@pytest.mark.parametrize("name", ["CLAUDE.md", ".claude/CLAUDE.md"])
def test_claude_md_is_detected(tmp_path: Path, name: str) -> None:
    make(tmp_path, {name: "# hi\n"})
    assert detect(tmp_path).has_claude_md is True


def test_claude_md_must_be_a_readable_file(tmp_path: Path) -> None:
    (tmp_path / "CLAUDE.md").symlink_to(tmp_path / "nowhere")
    assert detect(tmp_path).has_claude_md is False
    (tmp_path / "CLAUDE.md").unlink()
    (tmp_path / "CLAUDE.md").mkdir()
    assert detect(tmp_path).has_claude_md is False


def test_mcp_servers_are_listed_in_file_order(tmp_path: Path) -> None:
    servers = {"zeta": {"command": "z"}, "alpha": {"command": "a"}}
    make(tmp_path, {".mcp.json": json.dumps({"mcpServers": servers})})
    facts = detect(tmp_path)
    assert (facts.has_mcp_config, facts.mcp_servers, facts.mcp_error) == (
        True,
        ["zeta", "alpha"],
        None,
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"mcpServers": {"a": ', ".mcp.json: invalid JSON"),
        (b"\xff\xfe{}", ".mcp.json: not valid UTF-8"),
        (b'{"mcpServers": ["a"]}', '.mcp.json: "mcpServers" is not an object'),
        (b"[1]", '.mcp.json: "mcpServers" is not an object'),
        (b"[" * 100_000, f".mcp.json: larger than {MAX_READ} bytes"),
    ],
)
def test_a_broken_mcp_json_is_reported_not_raised(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    make(tmp_path, {".mcp.json": content})
    facts = detect(tmp_path)
    assert facts.healthy is True
    assert facts.has_mcp_config is True
    assert facts.mcp_servers == []
    assert facts.mcp_error is not None and facts.mcp_error.startswith(problem)


def test_mcp_json_without_servers_has_none(tmp_path: Path) -> None:
    make(tmp_path, {".mcp.json": "{}"})
    assert detect(tmp_path).mcp_servers == []
    assert detect(tmp_path).mcp_error is None


def test_facts_encode_as_json(tmp_path: Path) -> None:
    make(tmp_path, {"go.mod": "", "CLAUDE.md": "x"})
    data = msgspec.json.decode(msgspec.json.encode(detect(tmp_path)))
    assert data["healthy"] is True
    assert data["stacks"] == ["go"]


# -- unreadable directories and files (the OS says no) ---------------------------

_PROBE = """
import os, sys
from pathlib import Path
import msgspec.json
from agent_dispatch.storage.describe import auto_description, detect, preview

if os.geteuid() == 0:  # root reads everything: become nobody, after the imports
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
directory = Path(sys.argv[1])
out = {
    "facts": detect(directory),
    "description": auto_description(directory),
    "preview": preview(directory, "CLAUDE.md", 5),
}
sys.stdout.buffer.write(msgspec.json.encode(out))
"""


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temp dir another user can traverse (pytest's tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="describe-test-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        for dirpath, dirnames, filenames in os.walk(path):  # top-down: fix before descending
            for name in dirnames + filenames:
                if not os.path.islink(os.path.join(dirpath, name)):
                    os.chmod(os.path.join(dirpath, name), 0o700)
        shutil.rmtree(path)


def probe_as_other_user(directory: Path) -> dict[str, object]:
    """Run detect/auto_description/preview in a child that the OS can refuse."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(directory)],
        capture_output=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_directory_that_cannot_be_listed_is_unreadable(shared_tmp: Path) -> None:
    project = make(shared_tmp / "locked", {"CLAUDE.md": "Secret project notes.\n"})
    project.chmod(0o000)
    out = probe_as_other_user(project)
    facts = out["facts"]
    assert isinstance(facts, dict)
    assert facts["healthy"] == "UNREADABLE"
    assert "Permission denied" in facts["error"]
    assert out["description"] == f"Project at {project}"
    assert out["preview"] is None


def test_an_unreadable_claude_md_falls_back_to_the_readme(shared_tmp: Path) -> None:
    project = make(
        shared_tmp / "p",
        {"CLAUDE.md": "Hidden.\n", "README.md": "# P\n\nA readable project readme line.\n"},
    )
    project.chmod(0o755)
    (project / "CLAUDE.md").chmod(0o000)
    (project / "README.md").chmod(0o644)
    out = probe_as_other_user(project)
    facts = out["facts"]
    assert isinstance(facts, dict)
    assert facts["healthy"] is True
    assert facts["has_claude_md"] is True
    assert out["description"] == "A readable project readme line."
    assert out["preview"] is None


def test_a_fifo_is_never_opened_for_reading(tmp_path: Path) -> None:
    # Opening a FIFO without a writer would block forever.
    os.mkfifo(tmp_path / "CLAUDE.md")
    make(tmp_path, {"README.md": "The fallback description line.\n"})
    assert detect(tmp_path).has_claude_md is False
    assert auto_description(tmp_path) == "The fallback description line."
    assert preview(tmp_path, "CLAUDE.md", 10) is None


def test_devices_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "README.md").symlink_to("/dev/zero")
    assert preview(tmp_path, "README.md", 10) is None
    assert auto_description(tmp_path) == f"Project at {tmp_path}"


def test_symlinks_out_of_the_project_are_not_read(tmp_path: Path) -> None:
    secret = make(tmp_path / "home", {"credentials": "aws_secret_access_key = hunter2hunter2\n"})
    project = make(tmp_path / "repo", {})
    (project / "README.md").symlink_to(secret / "credentials")
    (project / "CLAUDE.md").symlink_to("../home/credentials")
    assert preview(project, "README.md", 10) is None
    assert preview(project, "CLAUDE.md", 10) is None
    assert preview(project, "../home/credentials", 10) is None
    assert "hunter2" not in auto_description(project)


def test_symlinks_inside_the_project_are_read(tmp_path: Path) -> None:
    project = make(tmp_path, {"AGENTS.md": "Shared agent notes for this repository.\n"})
    (project / "CLAUDE.md").symlink_to("AGENTS.md")
    assert detect(project).has_claude_md is True
    assert auto_description(project) == "Shared agent notes for this repository."


# -- auto_description -----------------------------------------------------------


def test_claude_md_first_meaningful_paragraph(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "CLAUDE.md": (
                "---\ntitle: front matter\n---\n"
                "# CLAUDE.md\n\n"
                "This file provides guidance to Claude Code (claude.ai/code) when working"
                " with code in this repository.\n\n"
                "[![CI](https://x/badge.svg)](https://x) ![cov](https://y.svg)\n"
                "<!-- a comment\nspanning lines -->\n"
                '<p align="center"><img src="logo.png"></p>\n\n'
                "```bash\nmake test\n```\n\n"
                "## Overview\n\n"
                "- a list is not a description\n\n"
                "Billing service: invoices and\n"
                "[payment](https://stripe.com) webhooks.\n\n"
                "Second paragraph.\n"
            ),
            "README.md": "This README line loses to CLAUDE.md.\n",
        },
    )
    assert auto_description(tmp_path) == "Billing service: invoices and payment webhooks."


def test_readme_first_substantial_line_when_no_claude_md(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "README.md": (
                "# Title\n\n[![build](https://b/x.svg)](https://b)\n\nShort.\n\n"
                "A tool that converts invoices into ledgers.\nMore text here.\n"
            ),
            "pyproject.toml": '[project]\ndescription = "loses to the README"\n',
        },
    )
    assert auto_description(tmp_path) == "A tool that converts invoices into ledgers."


def test_claude_md_without_a_paragraph_falls_back_to_readme(tmp_path: Path) -> None:
    make(
        tmp_path,
        {"CLAUDE.md": "# Only headings\n\n## Here\n", "README.md": "Readme wins here, then.\n"},
    )
    assert auto_description(tmp_path) == "Readme wins here, then."


def test_pyproject_description(tmp_path: Path) -> None:
    make(tmp_path, {"pyproject.toml": '[project]\nname = "x"\ndescription = "Parses logs."\n'})
    assert auto_description(tmp_path) == "Parses logs."


def test_poetry_description(tmp_path: Path) -> None:
    make(tmp_path, {"pyproject.toml": '[tool.poetry]\ndescription = "Poetry project."\n'})
    assert auto_description(tmp_path) == "Poetry project."


def test_empty_descriptions_are_ignored(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "pyproject.toml": '[project]\ndescription = "   "\n',
            "package.json": json.dumps({"description": "Node thing."}),
        },
    )
    assert auto_description(tmp_path) == "Node thing."
    (tmp_path / "package.json").write_text(json.dumps({"description": ""}))
    assert auto_description(tmp_path) == f"Project at {tmp_path} (node, python)"


def test_broken_manifests_are_ignored(tmp_path: Path) -> None:
    make(tmp_path, {"pyproject.toml": "[project\n", "package.json": "{nope", "go.mod": ""})
    assert auto_description(tmp_path) == f"Project at {tmp_path} (go, node, python)"


def test_fallback_names_the_directory(tmp_path: Path) -> None:
    assert auto_description(tmp_path) == f"Project at {tmp_path}"
    assert auto_description(tmp_path / "missing") == f"Project at {tmp_path / 'missing'}"


def test_long_paragraphs_are_capped(tmp_path: Path) -> None:
    make(tmp_path, {"CLAUDE.md": "word " * 500})
    description = auto_description(tmp_path)
    assert len(description) <= 300
    assert description.endswith("word...")


def test_non_utf8_files_do_not_raise(tmp_path: Path) -> None:
    make(tmp_path, {"CLAUDE.md": b"Caf\xe9 ordering service \xff\xfe for the shop.\n"})
    assert auto_description(tmp_path) == "Caf\ufffd ordering service \ufffd\ufffd for the shop."
    assert preview(tmp_path, "CLAUDE.md", 1) == (
        "Caf\ufffd ordering service \ufffd\ufffd for the shop.\n"
    )


def test_control_characters_are_removed_from_descriptions(tmp_path: Path) -> None:
    make(tmp_path, {"CLAUDE.md": "Evil\x1b[31m red\x07 text\r\nhere.\n"})
    assert auto_description(tmp_path) == "Evil [31m red text here."


# -- preview --------------------------------------------------------------------


def test_preview_returns_the_first_lines(tmp_path: Path) -> None:
    make(tmp_path, {"README.md": "".join(f"line {i}\n" for i in range(100))})
    assert preview(tmp_path, "README.md", 3) == "line 0\nline 1\nline 2\n"
    assert preview(tmp_path, "README.md", 0) == ""
    assert preview(tmp_path, "README.md", 1000) == (tmp_path / "README.md").read_text()


def test_preview_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert preview(tmp_path, "README.md", 5) is None
    assert preview(tmp_path / "missing", "README.md", 5) is None


def test_preview_reads_a_bounded_amount(tmp_path: Path) -> None:
    make(tmp_path, {"README.md": "x" * (4 * MAX_READ)})
    text = preview(tmp_path, "README.md", 5)
    assert text is not None and len(text) == MAX_READ
