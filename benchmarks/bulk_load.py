"""Bulk NDJSON ingest: ``POST /v1/scans/bulk`` bodies of many scans each, from a few concurrent
clients, for a fixed time; events/s counts the scans answered.

The scans have the mix of ``benchmarks.open_loop`` (first scans, repeats, counterfeits); every
body comes from its own client address, as uploads from many scanners would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from benchmarks import open_loop

CONCURRENCY = 4


def build_bodies(codes: Sequence[str], lines: int, bodies: int, members: int) -> list[bytes]:
    """``bodies`` NDJSON bodies of ``lines`` scans each."""
    scans = open_loop.scan_bodies(codes, lines * bodies, members)
    return [b"\n".join(scans[i : i + lines]) + b"\n" for i in range(0, len(scans), lines)]


def measure(url: str, bodies: Sequence[bytes], duration_s: float) -> dict[str, Any]:
    """Events/s and errors of posting ``bodies`` in turn from ``CONCURRENCY`` clients for
    ``duration_s`` (the request in flight when time is up is finished and counted)."""
    open_loop.loopback_target(url)
    return asyncio.run(_post_for(url, bodies, duration_s))


async def _post_for(url: str, bodies: Sequence[bytes], duration_s: float) -> dict[str, Any]:
    totals = dict.fromkeys(("requests", "events", "line_errors", "non_2xx"), 0)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client(first: int, deadline: float) -> None:
            for number in range(first, 1 << 62, CONCURRENCY):
                if time.monotonic() >= deadline:
                    return
                headers = {
                    "Content-Type": "application/x-ndjson",
                    "X-Forwarded-For": f"198.19.{number // 256 % 256}.{number % 256}",
                }
                body = bodies[number % len(bodies)]
                async with session.post(f"{url}/v1/scans/bulk", data=body, headers=headers) as r:
                    answer = await r.read()
                totals["requests"] += 1
                if r.status != 200:
                    totals["non_2xx"] += 1
                    continue
                totals["events"] += answer.count(b"\n")
                totals["line_errors"] += answer.count(b'"error":')

        started = time.monotonic()
        deadline = started + duration_s
        await asyncio.gather(*(client(first, deadline) for first in range(CONCURRENCY)))
        seconds = time.monotonic() - started
    return {
        **totals,
        "seconds": round(seconds, 3),
        "events_per_s": round(totals["events"] / seconds),
        "lines_per_request": round(totals["events"] / max(1, totals["requests"])),
    }
