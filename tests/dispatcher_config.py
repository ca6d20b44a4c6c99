"""The config the Dispatcher tests share: agents backend (2 s timeout) and web, group team."""

from __future__ import annotations

from pathlib import Path

from agent_dispatch.models import Config
from agent_dispatch.storage.config import parse_config


def make_config(tmp: Path, *, settings: str = "", agents: str = "") -> Config:
    for name in ("backend", "web"):
        (tmp / name).mkdir(exist_ok=True)
    text = f"""
agents:
  backend: {{directory: {tmp / "backend"}, timeout: 2}}
  web: {{directory: {tmp / "web"}}}
{agents}
groups:
  team:
    description: The product team
    shared_context: We ship on Fridays.
    members: [{{agent: backend, use_for: APIs}}, {{agent: web}}]
settings:
  max_concurrency: 2
{settings}
"""
    return parse_config(text.encode())
