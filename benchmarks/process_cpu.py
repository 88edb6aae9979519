"""CPU seconds used by the stack's processes, read from ``/proc`` and Redis's ``INFO cpu``.

CPU time per scan is steadier than rates when other work shares the machine, so the benchmarks
read it around each measured phase.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import redis


def cpu_seconds(pids: Mapping[str, int], client: redis.Redis) -> dict[str, float]:
    """CPU seconds used so far by each process of ``pids`` and its children (the API's
    workers), and by Redis as ``redis``."""
    redis_cpu = cast(dict[str, float], client.info("cpu"))
    used = processes_cpu_seconds(pids)
    return {**used, "redis": redis_cpu["used_cpu_user"] + redis_cpu["used_cpu_sys"]}


def processes_cpu_seconds(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each process of ``pids`` and its children."""
    return {name: sum(map(_process_cpu_seconds, _process_tree(pid))) for name, pid in pids.items()}


def us_per_event(
    before: Mapping[str, float], after: Mapping[str, float], events: int
) -> dict[str, float]:
    """Microseconds of CPU per event, by process, between two ``cpu_seconds`` readings."""
    return {name: round((after[name] - before[name]) / max(1, events) * 1e6, 1) for name in before}


def _process_tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return sorted(tree)


def _process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
