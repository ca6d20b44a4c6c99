"""Keep this server's entry in the registry of running servers (runtime/servers.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from agent_dispatch import __version__, exception_groups, offload
from agent_dispatch.runtime import servers
from agent_dispatch.service.dispatcher import Dispatcher

log = logging.getLogger(__name__)


@asynccontextmanager
async def registered(
    dispatcher: Dispatcher,
    kind: servers.Kind,
    config: Path,
    env: Mapping[str, str],
    *,
    version: str = __version__,
) -> AsyncIterator[None]:
    """Publish this server's entry for the block's life: rewritten whenever its jobs
    change, removed on the way out. A registry that cannot be written is logged and
    skipped: it never stops the server."""
    try:
        directory = await offload.run_sync(servers.registry_dir, env)
    except OSError as exc:
        log.warning("not in the server registry: %s", exc)
        yield
        return
    entry = servers.new_entry(kind, version, config, dispatcher.jobs_directory())

    async def publish() -> None:
        while True:
            entry.jobs = dispatcher.live_job_ids()
            try:
                await offload.run_sync(servers.write, directory, entry)
            except OSError as exc:
                log.warning("server registry %s: could not write: %s", directory, exc)
            await dispatcher.wait_jobs_changed()

    try:
        with exception_groups.collapsed():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(publish)
                try:
                    yield
                finally:
                    nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await offload.run_sync(servers.remove, directory, entry.pid)
