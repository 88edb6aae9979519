"""Kill -9 cluster primaries under load with WAIT off and on: failover time, losses, WAIT's cost.

How long a killed primary's slots are down, what answered scans a failover loses with and
without WAIT, and what WAIT costs.

One stack: a local Redis Cluster of 3 primaries with one replica each (node timeout 2 s, as
``ingest.ops.local_services`` starts it), ClickHouse, ``scanward sink`` and two ``scanward
serve`` (one worker each) that differ only in ``SCANWARD_REDIS_WAIT_REPLICAS``: 0 (``wait_off``)
and 1 (``wait_on``: every replica a primary has here). The setting is read at server start; two
servers, both warm and started once, let the runs switch between the settings without a restart
(a cold worker, its connections, scripts and copies of reference data, before every run), and
the idle one's background polls fall on both settings' runs alike.

For each setting, ``--kills N`` rounds in a row, each with a batch and a prize campaign of its
own (small budgets and daily caps, as ``benchmarks.crash_bench``, whose load, answer recording
and counts this reuses): open-loop scans at a fixed rate, ~25% repeats, every answer recorded;
a primary is killed with SIGKILL (each in turn); a write to one of its slots is tried on every
other node every 10 ms until one is answered (the replica, promoted): ``failover_s``, goal
<= 5 s; once the cluster is ok, the killed node is started again on its port and folder (it
rejoins as the new primary's replica) and the round waits until the cluster is ok with a replica
for every primary before a few more seconds of load. Once the sink has drained: answered (200)
scans missing from ClickHouse ``scans`` or whose retry record or code record Redis lost, codes
answered ``first_scan: true`` twice, prizes over a budget or the daily cap released, and the
answers by status (503 while a primary is down is expected, and with WAIT on until the killed
node is a synchronised replica again; 500 never). ``last_refusal_s``: from the kill to the
sending of the round's last scan not answered 200, as the client saw the outage.

Then WAIT's cost: interleaved pairs (off, on, on, off, ...) on the same stack, each run wrk at
peak, then the open-loop client at half of the first ``wait_off`` peak (p50/p99 with
queueing), the sink drained after each; the ratios on/off per pair and their medians.

``python -m benchmarks.failover_bench [--quick] [--kills N] [--pairs N] [--no-save]`` prints
one JSON document and saves it as ``benchmarks/results/failover-<stamp>.json`` (not with
``--no-save``); ``--quick``: one kill per setting and one short pair, for a test. Traffic goes
to 127.0.0.1 only; every process it starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import math
import statistics
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from benchmarks import campaign_bench
from benchmarks.crash_bench import (
    REPEAT_SHARE,
    Round,
    ScanwardStack,
    count_losses,
    drain,
    faulted_round,
    kill_options,
    paired_ratios,
    parse_kill_options,
    peak_then_fixed_rate,
    redis_version,
    scanward_on,
    shipped_codes,
    table,
    work_folder,
)
from benchmarks.report import print_or_publish, provenance
from benchmarks.stack import wait_healthy
from benchmarks.wrk import run_wrk
from ingest.ops import local_services
from ingest.ops.local_services import RedisClusterServers
from ingest.store.connect import sync_client

WAIT_REPLICAS = {"wait_off": 0, "wait_on": 1}
"""``SCANWARD_REDIS_WAIT_REPLICAS`` of each setting's API."""
WAIT_TIMEOUT_MS = 100
"""``SCANWARD_REDIS_WAIT_TIMEOUT_MS`` of both (the default)."""
MASTERS, REPLICAS = 3, 1
FAILOVER_GOAL_S = 5.0
FAILOVER_LIMIT_S = 30.0
"""How long the probe tries a killed primary's slots before it gives up on them."""
PROBE_EVERY_S = 0.01
REPLICAS_LIMIT_S = 60.0
ROUND_FAULT_S = 8.0
"""About what a round's failover, restart and resynchronisation take, for sizing its batch."""
SINK_FLUSH_MS = 250


@dataclass(frozen=True, slots=True)
class Plan:
    """The sizes of one run: ``--quick`` or the full one."""

    rate: int
    """Scans offered per second in a kill round."""
    before_kill_s: float
    after_replicas_s: float
    """Load after every primary has its replica again."""
    wrk_s: int
    wrk_connections: int
    cost_codes: int
    """Codes of the batch the cost runs scan."""

    @property
    def codes_per_round(self) -> int:
        seconds = self.before_kill_s + ROUND_FAULT_S + self.after_replicas_s
        return math.ceil(self.rate * seconds * (1 - REPEAT_SHARE) * 1.2)


FULL = Plan(500, 3.0, 3.0, 10, 64, 300_000)
QUICK = Plan(200, 1.0, 1.0, 2, 64, 20_000)


# --- the stack --------------------------------------------------------------------------------


@dataclass
class FailoverStack:
    apps: ScanwardStack
    cluster: RedisClusterServers
    urls: dict[str, str]
    """Each setting's API."""


def _settings(setting: str) -> dict[str, str]:
    return {
        "SCANWARD_SINK_FLUSH_MS": str(SINK_FLUSH_MS),
        "SCANWARD_REDIS_WAIT_REPLICAS": str(WAIT_REPLICAS[setting]),
        "SCANWARD_REDIS_WAIT_TIMEOUT_MS": str(WAIT_TIMEOUT_MS),
    }


@contextlib.contextmanager
def failover_stack(folder: Path) -> Iterator[FailoverStack]:
    """The cluster and ClickHouse in ``folder``, migrated, the sink and an API per setting
    running."""
    cluster = local_services.start_redis_cluster(folder, masters=MASTERS, replicas=REPLICAS)
    try:
        clickhouse = local_services.start_clickhouse(folder)
    except BaseException:
        cluster.stop()
        raise
    try:
        with scanward_on(folder, cluster.url, clickhouse, _settings("wait_off")) as apps:
            port = local_services.free_port()
            apps.start_api({**apps.env, **_settings("wait_on"), "SCANWARD_PORT": str(port)})
            urls = {"wait_off": apps.url, "wait_on": f"http://127.0.0.1:{port}"}
            wait_healthy(urls["wait_on"])
            yield FailoverStack(apps, cluster, urls)
    finally:  # the APIs and the sink first: ClickHouse then stops at once
        clickhouse.stop()
        cluster.stop()


# --- a failover -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlotRange:
    first: int
    last: int
    primary: str
    replicas: int


def slot_ranges(cluster: RedisClusterServers) -> list[SlotRange]:
    """The slot ranges as a primary sees them (CLUSTER SLOTS: failed replicas left out)."""
    with redis.Redis.from_url(cluster.primaries()[0], socket_timeout=1) as client:
        reply: Any = client.execute_command("CLUSTER", "SLOTS")
    return [
        SlotRange(int(first), int(last), cluster.url_at(primary[1]), len(rest))
        for first, last, primary, *rest in reply
    ]


def fail_over(cluster: RedisClusterServers, number: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """SIGKILL to a primary (the ``number``-th by port, modulo their count); the time until a
    write to one of its slots is answered again, by whichever other node; then, with the
    cluster ok, the killed node started again, and the time until the cluster is ok with a
    replica for every primary. Returns `crash_bench.Fault`'s two dictionaries."""
    primaries = cluster.primaries()
    victim = primaries[number % len(primaries)]
    ranges = [r for r in slot_ranges(cluster) if r.primary == victim]
    key = next(
        key
        for key in (f"failover-probe:{n}" for n in itertools.count())
        if any(r.first <= key_slot(key.encode()) <= r.last for r in ranges)
    )
    with contextlib.ExitStack() as clients:
        probes = [
            clients.enter_context(
                redis.Redis.from_url(node.url, socket_timeout=0.5, socket_connect_timeout=0.5)
            )
            for node in cluster.nodes
            if node.url != victim
        ]
        killed_at = time.monotonic()
        cluster.kill(victim)
        answered_at, taken_by = _first_write(probes, key, killed_at + FAILOVER_LIMIT_S)
    cluster.wait_until_ok()
    ok_at = time.monotonic()
    cluster.restart(victim)
    _wait_for_replicas(cluster)
    back_at = time.monotonic()
    kill = {
        "primary": local_services.masked_url(victim),
        "slots": sum(r.last - r.first + 1 for r in ranges),
        "killed_at": killed_at,
        "failover_s": None if answered_at is None else round(answered_at - killed_at, 3),
        "taken_over_by": taken_by,
        "cluster_ok_s": round(ok_at - killed_at, 3),
    }
    restart = {"replicas_back_s": round(back_at - killed_at, 3), "answering_at": back_at}
    return kill, restart


def _first_write(
    probes: Sequence[redis.Redis], key: str, deadline: float
) -> tuple[float | None, str | None]:
    """When a SET of ``key`` was first answered OK (a replica redirects it, a primary that does
    not own its slot too), and by which node; (None, None) by ``deadline``."""
    while time.monotonic() < deadline:
        for probe in probes:
            with contextlib.suppress(redis.RedisError):
                if probe.set(key, "1"):
                    kwargs = probe.connection_pool.connection_kwargs
                    return time.monotonic(), f"redis://{kwargs['host']}:{kwargs['port']}"
        time.sleep(PROBE_EVERY_S)
    return None, None


def _wait_for_replicas(cluster: RedisClusterServers) -> None:
    """Until the cluster is ok and every primary has ``REPLICAS`` replicas."""
    deadline = time.monotonic() + REPLICAS_LIMIT_S
    while True:
        cluster.wait_until_ok()
        if all(r.replicas >= REPLICAS for r in slot_ranges(cluster)):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"a primary had no replica {REPLICAS_LIMIT_S:.0f} s after a kill")
        time.sleep(0.05)


# --- the kills --------------------------------------------------------------------------------


def run_setting(
    stack: FailoverStack, setting: str, kills: int, plan: Plan, seed: int
) -> dict[str, Any]:
    """``kills`` rounds against the setting's API, then the counts."""
    started, sink_restarts = time.monotonic(), stack.apps.sink_restarts
    rounds: list[Round] = []
    for number in range(kills):
        round_under_load = faulted_round(
            stack.urls[setting],
            f"{setting.replace('_', '-')}-{number}",
            number,
            plan.rate,
            plan.codes_per_round,
            plan.before_kill_s,
            plan.after_replicas_s,
            functools.partial(fail_over, stack.cluster, number),
            seed + number,
        )
        rounds.append(asyncio.run(round_under_load))
        stack.apps.check_children()
    drained = drain(stack.apps)
    with sync_client(stack.cluster.url) as client:
        losses = count_losses(stack.apps.bench.clickhouse_url, client, rounds)
    for kill, one in zip(losses["kills"], rounds, strict=True):
        kill["last_refusal_s"] = _last_refusal_s(one)
    statuses = Counter[str]()
    for kill in losses["kills"]:
        statuses.update(kill["statuses"])
    return {
        "wait_replicas": WAIT_REPLICAS[setting],
        "failover_s": [kill["kill"]["failover_s"] for kill in losses["kills"]],
        "statuses": dict(sorted(statuses.items())),
        **losses,
        "drain": drained,
        "sink_restarts": stack.apps.sink_restarts - sink_restarts,
        "run_s": round(time.monotonic() - started, 1),
    }


def _last_refusal_s(one: Round) -> float | None:
    """From the kill to the sending of the round's last scan not answered 200 (None: none
    after the kill)."""
    killed_at = one.kill["killed_at"]
    refused = [a.sent_at for a in one.answers if a.status != 200 and a.sent_at >= killed_at]
    return round(max(refused) - killed_at, 3) if refused else None


# --- the cost of WAIT -------------------------------------------------------------------------


def run_cost(stack: FailoverStack, pairs: int, plan: Plan) -> dict[str, Any]:
    """Interleaved runs against the two APIs (pair i: off then on when i is even, else on then
    off), one campaign open; each run's open loop starts at its own place in the codes."""
    started = time.monotonic()
    sku = "WAITCOST"
    codes = shipped_codes(stack.apps.url, sku, plan.cost_codes)
    stack.apps.bench.codes_file.write_text("\n".join(codes) + "\n")
    campaign_bench.put_campaign(stack.apps.url, sku)
    env, load = stack.apps.env, (plan.wrk_s, plan.wrk_connections)
    for url in stack.urls.values():
        run_wrk(url, env, 2, plan.wrk_connections)  # warm-up: the campaign's codes draw once
    drain(stack.apps)
    runs: dict[str, list[dict[str, Any]]] = {setting: [] for setting in WAIT_REPLICAS}
    half_rate, number = 0, 0
    for pair in range(pairs):
        order = list(WAIT_REPLICAS) if pair % 2 == 0 else list(reversed(WAIT_REPLICAS))
        for setting in order:
            start = number * len(codes) // (2 * pairs)
            one = peak_then_fixed_rate(
                stack.urls[setting],
                env,
                load,
                [*codes[start:], *codes[:start]],
                (half_rate, number),
                functools.partial(drain, stack.apps),
            )
            number += 1
            half_rate = half_rate or one["half_load"]["offered_per_s"]
            runs[setting].append({"pair": pair, **one})
    off, on = runs["wait_off"], runs["wait_on"]
    ratios = {
        "peak_per_s": paired_ratios(off, on, "peak", "per_s"),
        "fixed_rate_p50_ms": paired_ratios(off, on, "half_load", "p50_ms"),
        "fixed_rate_p99_ms": paired_ratios(off, on, "half_load", "p99_ms"),
    }
    return {
        "method": "wrk closed loop at peak, then open loop at half of the first wait_off peak; "
        "an API of one worker per setting on one stack, the sink running, one campaign open, "
        "pairs interleaved",
        "duration_s": plan.wrk_s,
        "connections": plan.wrk_connections,
        "fixed_rate_per_s": half_rate,
        "runs": runs,
        "ratio_on_to_off": ratios,
        "median_ratio_on_to_off": {
            name: statistics.median(values) if values else None for name, values in ratios.items()
        },
        "run_s": round(time.monotonic() - started, 1),
    }


# --- the report -------------------------------------------------------------------------------


def _node_timeout_ms(cluster: RedisClusterServers) -> int:
    with redis.Redis.from_url(cluster.primaries()[0], socket_timeout=1) as client:
        return int(client.config_get("cluster-node-timeout")["cluster-node-timeout"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    with work_folder("scanward-failover-", args.keep) as folder, failover_stack(folder) as stack:
        node_timeout_ms = _node_timeout_ms(stack.cluster)
        settings = {
            setting: run_setting(stack, setting, args.kills, plan, args.seed + 1000 * n)
            for n, setting in enumerate(WAIT_REPLICAS)
            if args.kills
        }
        cost = run_cost(stack, args.pairs, plan) if args.pairs else None
    rows = table(settings, "setting")
    for row in rows:
        result = settings[row["setting"]]
        row |= {
            "failover_s": result["failover_s"],
            "stored_twice_in_clickhouse": result["totals"]["stored_twice_in_clickhouse"],
            "undercounted_in_redis": result["totals"]["undercounted_in_redis"],
            "status_503": result["statuses"].get("503", 0),
            "status_500": result["statuses"].get("500", 0),
        }
    return {
        "benchmark": "redis_cluster_failover",
        **provenance(),
        "redis": redis_version(),
        "quick": args.quick,
        "cluster": {
            "primaries": MASTERS,
            "replicas_per_primary": REPLICAS,
            "node_timeout_ms": node_timeout_ms,
        },
        "wait_timeout_ms": WAIT_TIMEOUT_MS,
        "kills_per_setting": args.kills,
        "failover_goal_s": FAILOVER_GOAL_S,
        "load": {
            "rate_per_s": plan.rate,
            "repeat_share": REPEAT_SHARE,
            "before_kill_s": plan.before_kill_s,
            "after_replicas_s": plan.after_replicas_s,
        },
        "table": rows,
        "settings": settings,
        "wait_cost": cost,
        "run_s": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = kill_options("python -m benchmarks.failover_bench", __doc__, "setting", 5)
    args = parse_kill_options(parser, argv)
    print_or_publish(run(args), "failover", save=not args.no_save, quick=args.quick)


if __name__ == "__main__":
    main()
