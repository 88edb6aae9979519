"""Serving the app on uvloop until SIGINT or SIGTERM (or until the supervisor goes away)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import time
import urllib.request
from collections.abc import AsyncIterator

from aiohttp import web

from ingest.config import Settings
from ingest.http.app import create_app
from ingest.http.transport import ConnectionLimits, GuardedAppRunner
from ingest.ops.gc_tuning import collect_less_often
from ingest.ops.supervisor import when_orphaned

log = logging.getLogger(__name__)

RESERVED_DESCRIPTORS = 64
"""Descriptors a worker keeps for other than clients: its listening socket, Redis connections,
metrics files, logs and the event loop's own."""


async def serve(settings: Settings, *, reuse_port: bool = False) -> None:
    """``reuse_port`` lets several worker processes share the port (SO_REUSEPORT): the kernel
    spreads connections over them."""
    async with serving(settings, reuse_port=reuse_port):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if reuse_port:  # a worker of a supervisor
            when_orphaned(lambda: loop.call_soon_threadsafe(stop.set))
        await stop.wait()


@contextlib.asynccontextmanager
async def serving(settings: Settings, *, reuse_port: bool = False) -> AsyncIterator[web.AppRunner]:
    """The app listening on ``settings.host:port`` until the block ends (tests run it so)."""
    # aiohttp logs every request by default, which halves the scan path's throughput
    access_log = logging.getLogger("aiohttp.access") if settings.access_log else None
    limits = ConnectionLimits(
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        idle_timeout_s=settings.idle_timeout_s,
        max_connections=connection_cap(settings.max_connections),
    )
    runner = GuardedAppRunner(create_app(settings), limits, access_log=access_log)
    await runner.setup()
    collect_less_often()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port)
        await site.start()
        yield runner
    finally:
        await runner.cleanup()


def connection_cap(wanted: int) -> int:
    """``wanted`` connections, or as many as the process's descriptor limit leaves room for
    beside ``RESERVED_DESCRIPTORS``; the soft limit is first raised toward the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + RESERVED_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    cap = max(1, soft - RESERVED_DESCRIPTORS)
    log.warning(
        "at most %d connections per worker, not %d: the descriptor limit is %d (ulimit -n)",
        cap,
        wanted,
        soft,
        extra={"max_connections": cap},
    )
    return cap


def wait_until_serving(api_url: str, timeout_s: float) -> bool:
    """Whether ``api_url`` answered ``/healthz`` within ``timeout_s`` (for supervisors and
    benchmarks that start servers as other processes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(api_url + "/healthz", timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False
