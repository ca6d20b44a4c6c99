"""docs/library.md's code blocks are whole programs: each runs, as a user would run it.

Each ```python block is a subprocess (a fresh interpreter, its own trio.run) in a
temporary directory that holds its config and jobs, so no block touches the user's.
The blocks assert what the page says of them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "library.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.S | re.M)


def test_the_page_has_its_programs() -> None:
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_each_program_on_the_library_page_runs(index: int, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_DISPATCH_")}
    env["AGENT_DISPATCH_CONFIG"] = str(tmp_path / "agents.yaml")
    env["AGENT_DISPATCH_JOBS_DIR"] = str(tmp_path / "jobs")
    done = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"block {index}:\n{BLOCKS[index]}\n{done.stderr[-3000:]}"
    assert done.stdout.strip(), "every program prints what it shows"
