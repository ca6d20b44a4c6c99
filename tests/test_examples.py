"""Every examples/*.py runs as a user runs it: a real interpreter, a real exit status.

The examples are the subject, so each is a subprocess (they start the bundled demo
agent as real children). `_`-prefixed files are the examples' shared setup, not
examples. Each assertion is a line a user is meant to see; timings and pids vary.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))

# Lines (or parts of lines) each example must print; every example must be listed.
EXPECTED: dict[str, list[str]] = {
    "fan_out_progress.py": [
        "Queued: no free slot (3 in use)",
        "Using tool: Read",
        "[8/8 done, 0 live]",
        "8/8 succeeded in ",
        "at most 3 live at once; 5 waited for a slot",
        "[simulated billing-api] POST /invoices creates an invoice and returns its id.",
        "[simulated web-app] The Invoices page lists a customer's invoices with their status.",
    ],
    "jobs.py": [
        "submitted first: pending",
        "cancel(third): cancelled, status cancelled",
        "wait_up_to(first, 0.05): timed_out=True",
        "wait(any): first is done: [simulated billing-api] POST /invoices/{id}/pay records",
        "wait(second) under move_on_after(0.2): gave up=True",
        "cancel(second): cancelled_running, status cancelled",
        "cancel(first): already_terminal, status done",
        "list_jobs: first done, second cancelled, third cancelled",
    ],
    "stream_one.py": [
        "-> billing-api: Which endpoint creates an invoice?",
        "started  Started (pid ",
        'tool_use Using tool: Read input={"file_path": "CLAUDE.md"}',
        "dropped=0",
        "[simulated billing-api] POST /invoices creates an invoice and returns its id.",
        "<- success=False error_type=timeout",
        "raise_for_error() raised DispatchTimeout: timed out after 0.05s",
    ],
}


def test_every_example_has_its_expected_lines() -> None:
    assert set(EXPECTED) == set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_example_runs_offline_and_prints_what_it_promises(script: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_DISPATCH_")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    missing = [line for line in EXPECTED[script] if line not in done.stdout]
    assert not missing, f"missing {missing} in:\n{done.stdout}"
    assert done.stderr == ""
