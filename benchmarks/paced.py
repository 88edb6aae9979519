"""Open-loop pacing for load generators: item ``i`` is launched at ``t0 + i / per_s`` on a task
of its own, whatever the server does, so a slow answer delays no later request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def launch_paced(
    per_s: float,
    launch: Callable[[int], Awaitable[None]],
    stopped: Callable[[], bool],
    tick_s: float = 0.002,
) -> None:
    """Launches ``launch(0)``, ``launch(1)``, ... on schedule until ``stopped()``, then waits
    for those still running."""
    tasks: set[asyncio.Task[None]] = set()
    started, sent = time.monotonic(), 0
    while not stopped():
        due = int((time.monotonic() - started) * per_s) + 1
        while sent < due:
            task = asyncio.ensure_future(launch(sent))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(tick_s)
    if tasks:
        await asyncio.wait(tasks)
