"""What a stack spent on one load: CPU by process, and by stage from the API's stage timers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from benchmarks.api_metrics import mean_batch, scrape, stage_seconds
from benchmarks.process_cpu import cpu_seconds, us_per_event


class LoadCost:
    """What the stack spent during one load: CPU by process and the API's stage timers."""

    def __init__(self, url: str, client: redis.Redis | None, pids: dict[str, int]) -> None:
        self._url, self._client, self._pids = url, client, pids
        self._metrics = [scrape(self._url)]
        self._cpu = [cpu_seconds(pids, self._client)] if self._client else []

    def stop(self) -> None:
        if self._client:
            self._cpu.append(cpu_seconds(self._pids, self._client))
            self._client.close()
        self._metrics.append(scrape(self._url))

    def cpu_us(self, events: int) -> dict[str, float] | None:
        """µs of CPU per event by process (None for a stack the suite did not start)."""
        if not self._cpu:
            return None
        before, after = self._cpu
        return us_per_event(before, after, events)

    def stages_us(self, events: int) -> dict[str, float]:
        """µs per event in each stage the API times; what else its processes spent is HTTP
        and the event loop (aiohttp, uvloop, the garbage collector); then the other
        processes. The timers read the wall clock, so on a crowded machine long regions (a
        bulk upload's) can add up to more than the API's CPU: the excess is then reported as
        ``timed_beyond_cpu`` rather than as negative HTTP time."""
        before, after = (stage_seconds(metrics) for metrics in self._metrics)
        stages = {
            name: round((seconds - before.get(name, 0.0)) / max(1, events) * 1e6, 1)
            for name, seconds in after.items()
        }
        cpu = self.cpu_us(events)
        if cpu is not None:
            rest = round(cpu["api"] - sum(stages.values()), 1)
            stages["http_and_loop"] = max(0.0, rest)
            if rest < 0:  # timers run on the wall clock: preempted regions read high
                stages["timed_beyond_cpu"] = -rest
            stages.update(redis_server=cpu["redis"], sink=cpu["sink"], clickhouse=cpu["clickhouse"])
        return stages

    def mean_batch(self) -> float:
        before, after = self._metrics
        return mean_batch(before, after)


@contextmanager
def costing(url: str, client: redis.Redis | None, pids: dict[str, int]) -> Iterator[LoadCost]:
    """The cost of the load run in the block: the API at ``url`` and, given a client of the
    stack's Redis, the CPU of Redis and of the processes ``pids`` (named api, sink,
    clickhouse)."""
    cost = LoadCost(url, client, pids)
    yield cost
    cost.stop()
