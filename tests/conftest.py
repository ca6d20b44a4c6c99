"""Shared fixtures. Module-specific fixtures live next to their tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

FIXTURES = Path(__file__).parent / "fixtures"

# Property tests explore the same examples on every run (CI must not turn red on a new
# random draw); HYPOTHESIS_PROFILE=explore draws fresh ones, as a long fuzz run does.
settings.register_profile("deterministic", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture
def cli_samples() -> Path:
    """Stdout recorded from the real claude CLI (see tests/fixtures/cli)."""
    return FIXTURES / "cli"


@pytest.fixture(autouse=True)
def _private_umask() -> Iterator[None]:
    """Files the tests write are private whatever the runner's umask: a group-writable
    config (umask 002) is refused, as it should be, and would fail unrelated tests."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def service_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A sandboxed setup for the per-user service (issue #16): its config, jobs, runtime
    dir (short, so socket paths fit in sun_path) and cache, never the real user's."""
    import shutil
    import tempfile

    run = Path(tempfile.mkdtemp(prefix="adt-", dir="/tmp"))
    env = {
        "HOME": str(tmp_path / "home"),
        "PATH": os.environ.get("PATH", ""),
        "XDG_RUNTIME_DIR": str(run),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "AGENT_DISPATCH_CONFIG": str(tmp_path / "agents.yaml"),
        "AGENT_DISPATCH_JOBS_DIR": str(tmp_path / "jobs"),
    }
    try:
        yield env
    finally:
        shutil.rmtree(run, ignore_errors=True)
