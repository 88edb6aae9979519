"""The sink's rows/s into 2 ClickHouse shards against two sinks into one server each (issue 17).

One Redis and one local ClickHouse cluster of 2 shards x 1 replica (no ZooKeeper) serve every
run, so both cases run on the same processes: the single-server case in a plain database
``single`` on each server (``apply_migrations``), the sharded one in the cluster's database
(``clickhouse_cluster.DATABASE``, ``apply_cluster_migrations``). Each run sinks with
``scanward sink`` processes (``python -m ingest.cli sink``, configured by ``SCANWARD_*``
variables) from Redis databases loaded with ``--events`` scan events per sink
(``sink_bench.append_events``, 16 partitions); before it, every table is truncated, the Redis
databases flushed and loaded again, and ClickHouse's merges waited for.

- ``two_single`` (A): two sinks, each with its own Redis database (1 and 2) of N events, into
  server 1's and server 2's ``single``, at the same time: N/t1 + N/t2;
- ``two_sharded`` (B): two sinks sharing Redis database 3 of 2N events (they split the
  partitions by their leases), both into the cluster (each partition's rows to its shard's
  ``scans_local``): 2N/t. ``ratio`` = B/A, goal >= 0.9;
- supplementary: ``one_single`` and ``one_sharded``, one sink of N events into server 1's
  ``single`` and into the cluster (``one_sink_ratio``); and A and B started cold
  (``cold_ratio``).

Warm runs (the goal's measure): the events are loaded into streams of other names; once every
sink has registered, holds its share of the scan streams' leases and has made their (empty)
streams, one MULTI renames the loaded streams (with their consumer group, none of their entries
delivered) and unsunk counts into place, and ``t`` runs from it until the database's unsunk
counts are all 0. So both cases measure sinks at work: a sink that starts alone takes every
stream and gives back its excess only at its next discovery after the other joins
(``DISCOVER_S``), which leaves the second sink of B idle for about 2 s, a start-up cost of the
leases that a run of a few seconds would count as a large share of its time. Cold runs (the
hand-over included): the sinks start on the loaded databases and ``t`` runs from a database's
first sink's registration in ``{sink}:members`` (its score is when the membership expires,
``lease.TTL_MS`` after it joined: interpreter start-up and imports left out); ``balanced_s``
says when its leases were evenly held.

Either way the sinks are sent SIGTERM as soon as they have read the last entry of every stream
(``sink_bench.delivered``), so that their last inserts, which are not full, are written at once
instead of after ``sink_flush_ms``, as ``sink_bench`` does. Pairs are interleaved (A then B in
even pairs, B then A in odd ones, the supplementary runs likewise) so that a drift of the
shared machine's load falls on both cases. Each run reports the rows stored (``count()`` and
``uniqExact`` of the stream identity, which must both equal the events loaded) and the CPU
microseconds per row of the sinks (from ``t``'s start to their exit), each ClickHouse server and
Redis (over ``t``): steadier than rates when others share the machine.

``python -m benchmarks.shard_sink_bench [--events N] [--pairs N] [--batch-rows N] [--flush-ms N]
[--no-supplementary] [--quick] [--keep] [--no-save]`` prints one JSON document and saves it as
``benchmarks/results/shard-sink-<stamp>.json`` (``shard-sink-flush<ms>-<stamp>`` with a
``--flush-ms`` other than the default; not with ``--no-save``). The default run (400,000 events
per sink, 3 pairs) takes about 8 minutes; ``--quick`` (2,000 events, one pair) checks that
everything runs. Every process it starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from benchmarks.crash_bench import redis_version, work_folder
from benchmarks.process_cpu import processes_cpu_seconds
from benchmarks.report import print_or_publish, provenance
from benchmarks.sink_bench import PARTITIONS, append_events, delivered, last_ids
from ingest.config import Settings
from ingest.events.scans import CONSUMER_GROUP
from ingest.ops import local_services
from ingest.ops.clickhouse_cluster import (
    DATABASE,
    ClickHouseClusterServers,
    start_clickhouse_cluster,
)
from ingest.ops.local_services import ServerProcess
from ingest.sink.lease import MEMBERS_KEY, TTL_MS, lease_key
from ingest.sink.streams import STATS_KEY
from ingest.warehouse.client import connect
from ingest.warehouse.cluster_schema import apply_cluster_migrations
from ingest.warehouse.schema import apply_migrations
from ingest.warehouse.topology import Topology, server_address

REPO = Path(__file__).resolve().parents[1]
SINGLE = "single"
"""The plain database of the single-server runs, on each server."""
SHARDS = 2
GOAL = 0.9
POLL_S = 0.005
RUN_LIMIT_S = 300.0
STOP_LIMIT_S = 30.0
MERGES_LIMIT_S = 60.0
QUICK_EVENTS = 2_000
STAGED = ":staged"
"""Appended to the name of a loaded stream or unsunk count until a warm run renames it back."""
COUPLES = (
    ("two_single", "two_sharded"),
    ("one_single", "one_sharded"),
    ("two_single_cold", "two_sharded_cold"),
)
"""The runs of a pair, each couple single-server then sharded (the other way in odd pairs)."""
RATIOS = {"ratio": COUPLES[0], "one_sink_ratio": COUPLES[1], "cold_ratio": COUPLES[2]}


@dataclass(frozen=True, slots=True)
class Sinks:
    """Sink processes sharing one Redis database, one per ClickHouse URL of ``targets``."""

    name: str
    redis_db: int
    targets: tuple[str, ...]
    events: int


@dataclass
class Bench:
    """The servers every run shares."""

    folder: Path
    redis: ServerProcess
    cluster: ClickHouseClusterServers
    batch_rows: int
    flush_ms: int

    def redis_url(self, db: int) -> str:
        return f"{self.redis.url.rsplit('/', 1)[0]}/{db}"

    def single_url(self, shard: int) -> str:
        """Server ``shard``'s (numbered from 1) plain database."""
        return f"{self.cluster.shards[shard - 1][0].url.rsplit('/', 1)[0]}/{SINGLE}"

    def runs(self, events: int) -> dict[str, list[Sinks]]:
        """What each run starts: its Redis databases' sinks."""
        first, second = self.single_url(1), self.single_url(2)
        sharded = self.cluster.url
        two_single = [Sinks("s1", 1, (first,), events), Sinks("s2", 2, (second,), events)]
        two_sharded = [Sinks("sharded", 3, (sharded, sharded), 2 * events)]
        return {
            "two_single": two_single,
            "two_sharded": two_sharded,
            "one_single": [Sinks("s1", 1, (first,), events)],
            "one_sharded": [Sinks("sharded", 3, (sharded,), events)],
            "two_single_cold": two_single,
            "two_sharded_cold": two_sharded,
        }

    def pids(self) -> dict[str, int]:
        servers = {f"clickhouse_s{n}": s.pid for n, s in enumerate(self.cluster.servers(), 1)}
        return {**servers, "redis": self.redis.pid}


@dataclass
class Running:
    """One Redis database's sinks while they run, and what was seen of them."""

    sinks: Sinks
    warm: bool
    client: redis.Redis
    last: dict[str, bytes]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    undelivered: list[str] = field(default_factory=list)
    joined_ms: dict[int, float] = field(default_factory=dict)
    """Each sink's registration (wall clock, ms), by PID."""
    joined_cpu_s: dict[int, float] = field(default_factory=dict)
    """Each sink's CPU seconds when its registration was seen."""
    balanced_ms: float | None = None
    started_ms: float | None = None
    """The start of ``t``: the rename (warm) or the first registration (cold)."""
    started_cpu_s: float = 0.0
    """The sinks' CPU seconds at ``started_ms`` (cold: at their registrations)."""
    stopped_ms: float | None = None
    drained_ms: float | None = None

    def poll(self) -> None:
        """Exits, registrations, lease balance, delivery (then SIGTERM) and the backlog's end."""
        for number, process in enumerate(self.processes):
            if process.poll() is not None and (self.stopped_ms is None or process.returncode):
                raise RuntimeError(
                    f"sink {self.sinks.name}-{number} exited with {process.returncode}: "
                    + _tail(self.logs[number])
                )
        if len(self.joined_ms) < len(self.processes):
            self._registrations()
        if self.balanced_ms is None and self.joined_ms:
            self._balance()
        if self.started_ms is None:
            if self.warm or not self.joined_ms:
                return
            self.started_ms = min(self.joined_ms.values())
        while self.undelivered and delivered(
            self.client, self.undelivered[0], self.last[self.undelivered[0]]
        ):
            self.undelivered.pop(0)
        if not self.undelivered and len(self.joined_ms) == len(self.processes):
            self.stop(wait=False)  # a sink that has registered handles SIGTERM
        if self.stopped_ms is not None and self.drained_ms is None:
            counts = cast(list[bytes | None], self.client.mget(PARTITIONS.unsunk_keys))
            if sum(int(count or 0) for count in counts) == 0:
                self.drained_ms = time.time() * 1000

    def ready(self) -> bool:
        """Whether every sink has registered, holds its share of the leases and has made the
        streams (with their consumer group): a warm run may begin."""
        return self.balanced_ms is not None and self.client.exists(*PARTITIONS.stream_keys) == len(
            PARTITIONS.stream_keys
        )

    def release(self) -> None:
        """The loaded streams and unsunk counts renamed into place at once: ``t`` starts."""
        pipe = self.client.pipeline(transaction=True)
        for key, unsunk in zip(PARTITIONS.stream_keys, PARTITIONS.unsunk_keys, strict=True):
            pipe.rename(key + STAGED, key)
            pipe.rename(unsunk + STAGED, unsunk)
        self.started_cpu_s = sum(_cpu_s(process.pid) for process in self.processes)
        self.started_ms = time.time() * 1000
        pipe.execute()

    def _registrations(self) -> None:
        pids = {process.pid for process in self.processes}
        members = cast(
            list[tuple[bytes, float]], self.client.zrange(MEMBERS_KEY, 0, -1, withscores=True)
        )
        for holder, expires_ms in members:
            pid = int(holder.decode().split(":")[-2])  # host:pid:nonce
            if pid in pids and pid not in self.joined_ms:
                self.joined_ms[pid] = expires_ms - TTL_MS
                self.joined_cpu_s[pid] = _cpu_s(pid)
        if not self.warm and len(self.joined_ms) == len(self.processes):
            self.started_cpu_s = sum(self.joined_cpu_s.values())

    def _balance(self) -> None:
        """Notes when every sink holds its share of the scan streams' leases."""
        share = len(PARTITIONS.stream_keys) // len(self.processes)
        holders = cast(
            list[bytes | None], self.client.mget([lease_key(k) for k in PARTITIONS.stream_keys])
        )
        held: dict[bytes, int] = {}
        for holder in holders:
            if holder is not None:
                held[holder] = held.get(holder, 0) + 1
        if len(held) == len(self.processes) and all(n >= share for n in held.values()):
            self.balanced_ms = time.time() * 1000

    def stop(self, *, wait: bool = True) -> None:
        """SIGTERM to the sinks, once: a second one that arrives while Python shuts down (its
        handlers reset) would kill a sink. With ``wait``, waits for them (SIGKILL after
        ``STOP_LIMIT_S``)."""
        if self.stopped_ms is None:
            self.stopped_ms = time.time() * 1000
            for process in self.processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
        if not wait:
            return
        for process in self.processes:
            try:
                process.wait(STOP_LIMIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def figures(self) -> dict[str, Any]:
        assert self.started_ms is not None
        assert self.stopped_ms is not None
        assert self.drained_ms is not None
        seconds = (self.drained_ms - self.started_ms) / 1000
        joined = sorted(self.joined_ms.values())
        stats = cast(dict[bytes, bytes], self.client.hgetall(STATS_KEY))
        figures: dict[str, Any] = {
            "name": self.sinks.name,
            "redis_db": self.sinks.redis_db,
            "sinks": len(self.processes),
            "events": self.sinks.events,
            "seconds": round(seconds, 3),
            "rows_per_s": round(self.sinks.events / seconds),
            "delivered_s": round((self.stopped_ms - self.started_ms) / 1000, 3),
            "inserts": int(stats.get(b"inserts_total", 0)),
            "exit_codes": [process.returncode for process in self.processes],
        }
        if not self.warm:
            figures["join_spread_s"] = round((joined[-1] - joined[0]) / 1000, 3)
            figures["balanced_s"] = (
                None
                if self.balanced_ms is None
                else round((self.balanced_ms - self.started_ms) / 1000, 3)
            )
        return figures


def _tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _cpu_s(pid: int) -> float:
    return processes_cpu_seconds({"process": pid})["process"]


def _children_cpu_s() -> float:
    """CPU seconds of this process's children that have ended and been waited for: the sinks
    of a run, once stopped (``/proc`` no longer has them)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


# --- the servers ------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_servers(folder: Path, batch_rows: int, flush_ms: int) -> Iterator[Bench]:
    """Redis and the 2-shard cluster, both databases migrated on every server; stopped by PID
    afterwards."""
    server = local_services.start_redis(folder)
    try:
        cluster = start_clickhouse_cluster(folder, shards=SHARDS, replicas=1)
        try:
            bench = Bench(folder, server, cluster, batch_rows, flush_ms)
            _migrate(bench)
            yield bench
        finally:
            cluster.stop()
    finally:
        server.stop()


def _migrate(bench: Bench) -> None:
    for shard in range(1, SHARDS + 1):
        _execute(bench.cluster.shards[shard - 1][0].url, f"CREATE DATABASE IF NOT EXISTS {SINGLE}")
        client = connect(bench.single_url(shard))
        try:
            apply_migrations(client)
        finally:
            client.disconnect()
    failed = [s for s in apply_cluster_migrations(Topology.parse(bench.cluster.url)) if s.error]
    if failed:
        raise RuntimeError(f"cluster migrations failed: {failed}")


def _execute(url: str, statement: str) -> list[Any]:
    client = connect(url)
    try:
        return list(client.execute(statement))
    finally:
        client.disconnect()


def _reset_clickhouse(bench: Bench) -> None:
    """Every MergeTree table of both databases emptied on every server, then no merge left."""
    for server in bench.cluster.servers():
        for database in (SINGLE, DATABASE):
            tables = _execute(
                server.url,
                f"SELECT name FROM system.tables WHERE database = '{database}'"
                " AND engine LIKE '%MergeTree'",
            )
            for (name,) in tables:
                _execute(server.url, f"TRUNCATE TABLE {database}.{name}")
    deadline = time.monotonic() + MERGES_LIMIT_S
    for server in bench.cluster.servers():
        while _execute(server.url, "SELECT count() FROM system.merges") != [(0,)]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"merges still running on {server_address(server.url)}")
            time.sleep(0.1)


def _stored(target: str) -> dict[str, Any]:
    """Rows and distinct events in ``target``'s ``scans`` (through the Distributed table on a
    cluster, with each shard's local rows)."""
    query = (
        "SELECT count(), uniqExact(stream_partition, stream_ms, stream_seq, stream_index)"
        " FROM scans"
    )
    [(rows, distinct)] = _execute(target, query)
    stored: dict[str, Any] = {"rows": int(rows), "distinct": int(distinct)}
    topology = Topology.parse(target)
    if topology.clustered:
        stored["shard_rows"] = [
            int(_execute(shard[0], "SELECT count() FROM scans_local")[0][0])
            for shard in topology.shards
        ]
    return stored


# --- a run ------------------------------------------------------------------------------------


def _load(bench: Bench, sinks: Sinks, *, warm: bool) -> Running:
    """The Redis database of ``sinks`` flushed and loaded with their events; for a warm run,
    under the ``STAGED`` names, with their consumer group."""
    client = redis.Redis.from_url(bench.redis_url(sinks.redis_db))
    client.flushdb()
    append_events(client, sinks.events)
    last = last_ids(client)
    if warm:
        pipe = client.pipeline(transaction=True)
        for key, unsunk in zip(PARTITIONS.stream_keys, PARTITIONS.unsunk_keys, strict=True):
            pipe.rename(key, key + STAGED)
            pipe.rename(unsunk, unsunk + STAGED)
            pipe.xgroup_create(key + STAGED, CONSUMER_GROUP, id="0")
        pipe.execute()
    return Running(sinks, warm, client, last, undelivered=list(last))


def _environment(bench: Bench, redis_url: str, clickhouse_url: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SCANWARD_")}
    return {
        **environment,
        "SCANWARD_DATA_DIR": str(bench.folder),
        "SCANWARD_REDIS_URL": redis_url,
        "SCANWARD_CLICKHOUSE_URL": clickhouse_url,
        "SCANWARD_SINK_BATCH_ROWS": str(bench.batch_rows),
        "SCANWARD_SINK_FLUSH_MS": str(bench.flush_ms),
    }


def _spawn(bench: Bench, running: Running, run_name: str) -> None:
    """A ``scanward sink`` process for each target of the database's sinks."""
    sinks = running.sinks
    for number, target in enumerate(sinks.targets):
        log = bench.folder / f"{run_name}-{sinks.name}-{number}.log"
        running.logs.append(log)
        with log.open("wb") as output:
            running.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "ingest.cli", "sink"],
                    cwd=REPO,
                    env=_environment(bench, bench.redis_url(sinks.redis_db), target),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )


def _wait(
    running: Sequence[Running], until: Callable[[], bool], deadline: float, run_name: str
) -> None:
    """Polls every database's sinks until ``until()``."""
    while not until():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{run_name}: the sinks did not finish in {RUN_LIMIT_S:.0f} s")
        for one in running:
            one.poll()
        time.sleep(POLL_S)


def run_case(bench: Bench, groups: Sequence[Sinks], run_name: str, *, warm: bool) -> Any:
    """One run: every group's sinks at once, until every backlog is empty."""
    _reset_clickhouse(bench)
    running: list[Running] = []
    try:
        for sinks in groups:  # every database loaded before any sink starts
            running.append(_load(bench, sinks, warm=warm))
        children_s = _children_cpu_s()
        for one in running:
            _spawn(bench, one, run_name)
        deadline = time.monotonic() + RUN_LIMIT_S
        if warm:
            _wait(running, lambda: all(one.ready() for one in running), deadline, run_name)
            for one in running:
                one.release()
        else:
            _wait(running, lambda: any(one.started_ms for one in running), deadline, run_name)
        servers_s = processes_cpu_seconds(bench.pids())
        _wait(running, lambda: all(one.drained_ms for one in running), deadline, run_name)
        used_s = {
            name: seconds - servers_s[name]
            for name, seconds in processes_cpu_seconds(bench.pids()).items()
        }
        for one in running:
            one.stop()
        started_s = sum(one.started_cpu_s for one in running)
        used_s["sinks"] = _children_cpu_s() - children_s - started_s
        figures = [one.figures() for one in running]
    finally:
        for one in running:
            one.stop()
            one.client.close()
    for each, sinks in zip(figures, groups, strict=True):
        each["stored"] = stored = _stored(sinks.targets[0])
        each["stored_exactly_once"] = stored["rows"] == stored["distinct"] == sinks.events
    rows = sum(group.events for group in groups)
    return {
        "rows_per_s": sum(each["rows_per_s"] for each in figures),
        "redis_databases": figures,
        "cpu_us_per_row": {
            name: round(seconds / rows * 1e6, 2) for name, seconds in sorted(used_s.items())
        },
        "stored_exactly_once": all(each["stored_exactly_once"] for each in figures),
    }


# --- the report -------------------------------------------------------------------------------


def run(
    events: int,
    pairs: int,
    sink: tuple[int, int],
    *,
    supplementary: bool,
    quick: bool,
    keep: bool,
) -> Any:
    """``pairs`` interleaved pairs of every couple of runs, and their ratios."""
    started = time.monotonic()
    load_before = os.getloadavg()
    couples = COUPLES if supplementary else COUPLES[:1]
    results: list[dict[str, Any]] = []
    with (
        work_folder("scanward-shard-sink-", keep) as folder,
        bench_servers(folder, *sink) as bench,
    ):
        runs = bench.runs(events)
        for pair in range(pairs):
            order = [name for couple in couples for name in couple[:: 1 if pair % 2 == 0 else -1]]
            result: dict[str, Any] = {"pair": pair, "order": order}
            for name in order:
                warm = not name.endswith("_cold")
                result[name] = run_case(bench, runs[name], f"pair{pair}-{name}", warm=warm)
            for ratio, (single, sharded) in RATIOS.items():
                if single in result:
                    result[ratio] = round(
                        result[sharded]["rows_per_s"] / result[single]["rows_per_s"], 3
                    )
            results.append(result)
    report: dict[str, Any] = {
        "benchmark": "shard_sink",
        **provenance(),
        "redis": redis_version(),
        "quick": quick,
        "method": "scanward sink processes, 16 partitions, one Redis and one 2x1 ClickHouse "
        "cluster for every run; warm: t from the loaded streams' rename into place (sinks "
        "registered and leases even) to the unsunk counts all 0; cold: from the first sink's "
        "registration; SIGTERM once every stream's last entry is read; pairs interleaved",
        "events_per_sink": events,
        "batch_rows": sink[0],
        "flush_ms": sink[1],
        "shards": SHARDS,
        "goal": GOAL,
    }
    for ratio in RATIOS:
        values = [result[ratio] for result in results if ratio in result]
        if values:
            report[f"{ratio}s"] = values
            report[f"median_{ratio}"] = statistics.median(values)
    report["goal_met"] = report["median_ratio"] >= GOAL
    report["stored_exactly_once"] = all(
        result[name]["stored_exactly_once"] for result in results for name in result["order"]
    )
    report["pairs"] = results
    report["load_average"] = {"before": load_before, "after": os.getloadavg()}
    report["run_s"] = round(time.monotonic() - started, 1)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.shard_sink_bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--events", type=int, default=400_000, help="events per sink")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved pairs")
    parser.add_argument("--batch-rows", type=int, default=Settings().sink_batch_rows)
    parser.add_argument("--flush-ms", type=int, default=Settings().sink_flush_ms)
    parser.add_argument(
        "--no-supplementary", action="store_true", help="only the warm A and B runs"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_EVENTS} events per sink, one pair"
    )
    parser.add_argument("--keep", action="store_true", help="keep the servers' and sinks' folder")
    parser.add_argument("--no-save", action="store_true", help="print, do not save the report")
    args = parser.parse_args(argv)
    events, pairs = (QUICK_EVENTS, 1) if args.quick else (args.events, args.pairs)
    result = run(
        events,
        pairs,
        (args.batch_rows, args.flush_ms),
        supplementary=not args.no_supplementary,
        quick=args.quick,
        keep=args.keep,
    )
    name = "shard-sink"
    if args.flush_ms != Settings().sink_flush_ms:
        name += f"-flush{args.flush_ms}"
    print_or_publish(result, name, save=not args.no_save, quick=args.quick)


if __name__ == "__main__":
    main()
