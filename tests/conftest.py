"""Shared fixtures. Module-specific fixtures live next to their tests."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def cli_samples() -> Path:
    """Stdout recorded from the real claude CLI (see tests/fixtures/cli)."""
    return FIXTURES / "cli"
