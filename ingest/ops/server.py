"""Serving the app on uvloop until SIGINT or SIGTERM (or until the supervisor goes away)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import urllib.request

from aiohttp import web

from ingest.config import Settings
from ingest.http.app import create_app
from ingest.ops.gc_tuning import collect_less_often
from ingest.ops.supervisor import when_orphaned


async def serve(settings: Settings, *, reuse_port: bool = False) -> None:
    """``reuse_port`` lets several worker processes share the port (SO_REUSEPORT): the kernel
    spreads connections over them."""
    # aiohttp logs every request by default, which halves the scan path's throughput
    access_log = logging.getLogger("aiohttp.access") if settings.access_log else None
    runner = web.AppRunner(create_app(settings), access_log=access_log)
    await runner.setup()
    collect_less_often()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if reuse_port:  # a worker of a supervisor
            when_orphaned(lambda: loop.call_soon_threadsafe(stop.set))
        await stop.wait()
    finally:
        await runner.cleanup()


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
