"""Kill -9 Redis under load, restart it from its append-only file: what answered scans it lost.

For each AOF fsync policy (``everysec``, ``always``) a private stack runs (Redis started with
that policy, ClickHouse, ``scanward serve`` and ``scanward sink``); then ``--kills N`` rounds,
each with a batch of its own (ordered, shipped) and a prize campaign of its own over the
batch's SKU whose prizes have small budgets and daily caps (4 to 512 prizes, doubling: whatever
the draw rate, some limit is reached near the kill, so an award Redis forgot would be given
again and show as overspending). In a round an open-loop client scans at a fixed rate with
member ids, ~25% of them repeats, and records every answer (scan_id, code, first_scan,
scan_count, prize); Redis is killed with SIGKILL mid-load, started again ~1 s later on the same
port and folder (it reloads its AOF) and the load goes on for a few seconds. Kills alternate:
one aimed at a background AOF fsync (INFO persistence polled to time one, the kill halfway into
the next: under ``everysec`` Redis then postpones its AOF writes but still answers, see
deploy/README.md, Durability), one at a random moment. Once the sink has drained it counts,
per policy: answered (200) scans missing from ClickHouse ``scans`` (by scan_id) or stored
twice; answered scans whose retry record (``{scans:N}:sid:*``, written by the same script as
the scan's state and event) is gone from Redis, and those the code's record does not count;
codes answered ``first_scan: true`` twice; prizes beyond a total budget or the daily cap
released so far, in the answers, ClickHouse ``draws`` and Redis ``{camp:*}:awarded``.

Then the cost of ``always``: interleaved pairs (ABBA) of wrk at peak on the scan path (one
worker, the sink running, one campaign open, as ``benchmarks.scan_bench``), each run followed
by the open-loop client at half of the first everysec peak, on one stack, switching the policy
with ``CONFIG SET appendfsync`` between runs; the ratios always/everysec per pair and their
median.

``python -m benchmarks.crash_bench [--quick] [--kills N] [--pairs N]`` prints one JSON document
and saves it as ``benchmarks/results/crash-<stamp>.json`` (not with ``--no-save``). Traffic goes
to 127.0.0.1 only; every process it starts is stopped by its PID. Its stack, load, answer
recording and counts serve ``benchmarks.failover_bench`` (Redis Cluster failovers) too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import redis

from benchmarks import campaign_bench, open_loop
from benchmarks.api_metrics import mean_batch, scrape
from benchmarks.paced import launch_paced
from benchmarks.report import print_or_publish, provenance
from benchmarks.stack import (
    SECRET,
    SKU,
    BenchStack,
    drain_streams,
    local_stack,
    process,
    run_scanward,
    scanward,
    wait_healthy,
)
from benchmarks.wrk import run_wrk
from codes import signing
from codes.keyring import Keyring
from ingest.events.partitions import Partitions
from ingest.ops import local_services
from ingest.ops.local_services import ServerProcess
from ingest.scan.state import history_of, partition_of_serial, read_history, retry_key
from ingest.store.scripts import SyncRedis
from ingest.warehouse.client import connect
from rewards.calendar import CampaignDay
from rewards.campaigns import MAX_COUNT
from rewards.store import campaign_key

POLICIES = ("everysec", "always")
KILL_MODES = ("during_fsync", "random")
"""Kill i (from 0) uses mode i % 2: the first kill of a policy is aimed at a background fsync."""
ADMIN = {"Authorization": f"Bearer {campaign_bench.ADMIN_TOKEN}"}
GTIN = "4006381333931"
CHINA = {"type": "Polygon", "coordinates": [[[73, 18], [135, 18], [135, 54], [73, 54], [73, 18]]]}
DISTRIBUTOR = "CN"
REPEAT_SHARE = 0.25
MEMBERS = 20_000
DEVICES = 100_000
PRIZE_STEPS = 8
PARTITIONS = Partitions()  # the stack runs with the default partitions
"""Prizes limited by their total budget 4, 8, ... 512, and as many by their daily cap."""
PRIZE_PROBABILITY = 0.06  # x 16 prizes = 0.96: nearly every draw wins while prizes remain
FSYNC_AIM_LIMIT_S = 2.5
"""How long a kill aimed at a background fsync polls for one (under ``always`` there is none:
the fsync runs in Redis's main thread before it answers)."""
DRAIN_LIMIT_S = 90.0
CLIENT_TIMEOUT_S = 10.0
ADMIN_TRIES, ADMIN_RETRY_S = 10, 0.5
MAX_KILLS, MAX_PAIRS = 20, 10
"""Bounds of ``--kills`` and ``--pairs``."""
CONNECTIONS = 256


@dataclass(frozen=True, slots=True)
class Plan:
    """The sizes of one run: ``--quick`` or the full one."""

    rate: int
    """Scans offered per second in a round."""
    before_kill_s: float
    down_s: float
    """From the kill to the restart."""
    after_restart_s: float
    """Load after Redis answers again."""
    wrk_s: int
    wrk_connections: int
    stack_codes: int
    stack_sample: int
    stack_territories: int
    stack_members: int

    @property
    def codes_per_round(self) -> int:
        seconds = self.before_kill_s + FSYNC_AIM_LIMIT_S + self.down_s + 2 + self.after_restart_s
        return math.ceil(self.rate * seconds * (1 - REPEAT_SHARE) * 1.2)


FULL = Plan(1000, 3.0, 1.0, 4.0, 10, 64, 1_000_000, 300_000, 100, 100_000)
QUICK = Plan(400, 1.5, 1.0, 2.0, 2, 64, 50_000, 50_000, 10, 10_000)


# --- the stack --------------------------------------------------------------------------------


@dataclass
class ScanwardStack:
    """``scanward serve`` (one worker each: one API, or more with other settings) and
    ``scanward sink`` on servers already running, each stopped by its PID when ``children``
    closes."""

    bench: BenchStack
    env: dict[str, str]
    """Of the first API and the sink."""
    children: contextlib.ExitStack
    apis: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sink: subprocess.Popen[bytes] | None = None
    sink_restarts: int = 0

    @property
    def url(self) -> str:
        """The first API's."""
        return self.bench.url

    def start_api(self, env: Mapping[str, str]) -> None:
        command = scanward("serve", "--workers", "1")
        self.apis.append(self.children.enter_context(process(command, env)))

    def start_sink(self) -> None:
        """A sink; one that has exited (after a Redis outage) is replaced, as a supervisor
        (``scanward up``) would, and counted."""
        if self.sink is not None:
            self.sink_restarts += 1
        self.sink = self.children.enter_context(process(scanward("sink"), self.env))

    def check_children(self) -> None:
        """An API that exited is an error; a sink that exited is replaced."""
        for api in self.apis:
            if api.poll() is not None:
                raise RuntimeError(f"scanward serve exited ({api.returncode}); see processes.log")
        if self.sink is None or self.sink.poll() is not None:
            self.start_sink()


@contextlib.contextmanager
def scanward_on(
    folder: Path, redis_url: str, clickhouse: ServerProcess, settings: Mapping[str, str]
) -> Iterator[ScanwardStack]:
    """A keyring in ``folder``, ClickHouse migrated, one API and the sink on ``redis_url`` with
    ``settings`` (``SCANWARD_*`` variables), healthy, and the distributor of China; the API and
    the sink stopped at the end."""
    Keyring.new().save(folder / "keyring.bin", SECRET)
    bench = BenchStack(
        folder,
        redis_url,
        clickhouse.url,
        clickhouse.pid,
        local_services.free_port(),
        folder / "codes.txt",
        {0: MEMBERS},
    )
    env = {**bench.env, **settings}
    with contextlib.ExitStack() as children:
        stack = ScanwardStack(bench, env, children)
        run_scanward(env, "migrate")
        stack.start_api(env)
        stack.start_sink()
        wait_healthy(bench.url)
        call(bench.url, f"/v1/distributors/{DISTRIBUTOR}", "PUT", _distributor())
        yield stack


@dataclass
class CrashStack:
    """Redis (killed and restarted by PID), ClickHouse, one API worker and the sink."""

    apps: ScanwardStack
    redis: ServerProcess
    """Its process is replaced at each restart."""
    redis_logs_seen: int = 0

    @property
    def url(self) -> str:
        return self.apps.url

    def kill_redis(self, mode: str, chance: random.Random) -> dict[str, Any]:
        """SIGKILL to Redis: halfway into a background AOF fsync (``during_fsync``, see
        `aim_at_fsync`), or after a random 0-1 s (``random``). What the last INFO before the
        kill said is kept either way."""
        waited = time.monotonic()
        with redis.Redis.from_url(self.redis.url, socket_timeout=1) as client:
            if mode == "during_fsync":
                aim = aim_at_fsync(client, FSYNC_AIM_LIMIT_S)
            else:
                time.sleep(chance.uniform(0.0, 1.0))
                aim = {"polls": 1, "fsync_pending_at_last_poll": _fsync_pending(client)}
            killed_at = time.monotonic()
            self.redis.process.send_signal(signal.SIGKILL)
        self.redis.process.wait()
        return {
            "mode": mode,
            **aim,
            "waited_s": round(killed_at - waited, 3),
            "killed_at": killed_at,
        }

    def restart_redis(self) -> dict[str, Any]:
        """The killed Redis again, with its arguments, port and folder: it loads its AOF. Returns
        once it answers PING, with what its log says of the load."""
        server = self.redis
        assert server.process.poll() is not None, "Redis must be down before a restart"
        started = time.monotonic()
        arguments = cast(list[str], server.process.args)
        server.process, _ = local_services.spawn("redis", arguments, server.log.parent)
        _wait_for_pong(server)
        answered = time.monotonic()
        lines = server.log.read_text(errors="replace").splitlines()
        new_lines, self.redis_logs_seen = lines[self.redis_logs_seen :], len(lines)
        return {
            "restart_to_pong_s": round(answered - started, 3),
            "answering_at": answered,
            "aof_truncated_tail": any("truncated" in line.lower() for line in new_lines),
            "load_log": [line.split(" * ", 1)[-1] for line in new_lines if "loaded" in line][-3:],
        }


def aim_at_fsync(client: redis.Redis, limit_s: float) -> dict[str, Any]:
    """Polls INFO persistence: times one whole background AOF fsync (``aof_pending_bio_fsync``
    1 from the first poll to the last), then returns halfway into the next one, when Redis has
    been answering for a while without writing its AOF. Gives up after ``limit_s`` (under
    ``always`` there is no background fsync: it runs before Redis answers)."""
    deadline = time.monotonic() + limit_s
    polls, span_s, seen_at, pending = 0, -1.0, 0.0, False
    while time.monotonic() < deadline:
        polls += 1
        pending, now = _fsync_pending(client), time.monotonic()
        if span_s < 0:
            if pending and not seen_at:
                seen_at = now
            elif not pending and seen_at:
                span_s = now - seen_at
        elif pending:
            until = now + span_s / 2
            while time.monotonic() < until:
                polls += 1
                pending = _fsync_pending(client)
            break
    return {
        "polls": polls,
        "fsync_span_ms": round(span_s * 1000, 2) if span_s >= 0 else None,
        "fsync_pending_at_last_poll": pending,
    }


def _fsync_pending(client: redis.Redis) -> bool:
    info = client.info("persistence")
    return int(info.get("aof_pending_bio_fsync", 0)) > 0


def _wait_for_pong(server: ServerProcess, limit_s: float = 60.0) -> None:
    """Until Redis answers PING (not while it is still loading its AOF)."""
    deadline = time.monotonic() + limit_s
    with redis.Redis.from_url(server.url, socket_timeout=1) as client:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(f"Redis exited at restart; see {server.log}")
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis did not answer {limit_s:.0f} s after its restart")
            time.sleep(0.02)


@contextlib.contextmanager
def crash_stack(folder: Path, policy: str, flush_ms: int) -> Iterator[CrashStack]:
    """Servers in ``folder``, Redis with ``appendfsync`` = ``policy``, migrated, the API and the
    sink running."""
    redis_server = local_services.start_redis(folder, appendfsync=policy)
    try:
        clickhouse = local_services.start_clickhouse(folder)
    except BaseException:
        redis_server.stop()
        raise
    try:
        settings = {"SCANWARD_SINK_FLUSH_MS": str(flush_ms)}
        with scanward_on(folder, redis_server.url, clickhouse, settings) as apps:
            yield CrashStack(apps, redis_server)
    finally:  # the API and the sink first: ClickHouse then stops at once
        clickhouse.stop()
        redis_server.stop()


def _distributor() -> dict[str, Any]:
    return {"name": "All of China", "territory": CHINA}


# --- the admin API ----------------------------------------------------------------------------


def call(url: str, path: str, method: str = "GET", body: object = None) -> Any:
    """An admin request; its JSON answer (or text, for the codes). A 503 is tried again,
    ``ADMIN_TRIES`` times at most, as a client would: a worker whose Redis client still holds
    a failed node (idle through a failover) refuses its first requests."""
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url + path, data=data, method=method, headers=ADMIN)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for tries_left in reversed(range(ADMIN_TRIES)):
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                payload = reply.read()
                kind = reply.headers.get_content_type()
            break
        except urllib.error.HTTPError as error:
            if error.code != 503 or not tries_left:
                text = error.read()[:300]
                raise RuntimeError(f"{method} {path}: {error.code} {text!r}") from None
            time.sleep(ADMIN_RETRY_S)
    return orjson.loads(payload) if kind == "application/json" else payload.decode()


def shipped_codes(url: str, sku: str, quantity: int) -> list[str]:
    """A new batch of ``quantity`` codes of ``sku``, shipped to the distributor of China."""
    batch = call(url, "/v1/batches", "POST", {"sku": sku, "gtin": GTIN, "quantity": quantity})
    shipment = {"distributor_id": DISTRIBUTOR, "batch_id": batch["batch_id"]}
    call(url, "/v1/shipments", "POST", shipment)
    text = call(url, f"/v1/batches/{batch['batch_id']}/codes?limit={quantity}")
    return [str(signing.parse(code)) for code in str(text).split()]


@dataclass(frozen=True, slots=True)
class Limits:
    """A campaign's prizes as the checks need them: budget and daily cap by prize id."""

    zone: str
    budgets: dict[str, int]
    caps: dict[str, int]

    def released(self, prize_id: str, now_ms: int) -> int:
        day = CampaignDay.at(now_ms, ZoneInfo(self.zone))
        return day.released(self.caps[prize_id])


def noon_zone(now: datetime) -> str:
    """A fixed-offset zone where it is now about noon: a run is then hours from a new local
    day, so every daily cap counts one day."""
    offset = 12 - now.astimezone(UTC).hour
    return f"Etc/GMT-{offset}" if offset >= 0 else f"Etc/GMT+{-offset}"


def put_campaign(url: str, campaign_id: str, sku: str) -> Limits:
    """A campaign over ``sku`` whose prizes run out fast: ``PRIZE_STEPS`` limited by their
    total budget (4, 8, ... ) and as many by their daily cap (sized so that about 4, 8, ... are
    released by now, caps being paced by the hour)."""
    now = datetime.now(UTC)
    zone = noon_zone(now)
    day = CampaignDay.at(round(now.timestamp() * 1000), ZoneInfo(zone))
    prizes, budgets, caps = [], {}, {}
    for step in range(PRIZE_STEPS):
        target = 4 << step
        cap = math.ceil(target * day.hours / (day.hour + 1))
        for prize_id, budget, daily_cap in (
            (f"budget-{target}", target, MAX_COUNT),
            (f"cap-{target}", MAX_COUNT, cap),
        ):
            budgets[prize_id], caps[prize_id] = budget, daily_cap
            prizes.append(
                {
                    "id": prize_id,
                    "kind": "points",
                    "value": 1,
                    "total_budget": budget,
                    "daily_cap": daily_cap,
                    "base_probability": PRIZE_PROBABILITY,
                }
            )
    body = {
        "name": f"Crash benchmark {campaign_id}",
        "start": (now - timedelta(days=1)).isoformat(),
        "end": (now + timedelta(days=2)).isoformat(),
        "timezone": zone,
        "skus": [sku],
        "member_daily_win_limit": 1000,
        "prizes": prizes,
    }
    call(url, f"/v1/campaigns/{campaign_id}", "PUT", body)
    return Limits(zone, budgets, caps)


# --- the load ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One scan sent and what came back (status 0: no HTTP answer)."""

    scan_id: str
    code: str
    device_id: str
    member_id: str
    sent_at: float
    answered_at: float
    status: int
    first_scan: bool = False
    scan_count: int = 0
    prize: str = ""
    campaign: str = ""


class ScanLoad:
    """Open loop: scan ``i`` is sent at ``t0 + i / rate`` whatever the server does, each on a
    task of its own, every answer recorded. ~25% repeat a code sent before in the round."""

    def __init__(self, url: str, rate: int, prefix: str, codes: Sequence[str], seed: int) -> None:
        self._url = url + "/v1/scans"
        self._rate = rate
        self._prefix = prefix
        self._fresh = iter(codes)
        self._sent: list[str] = []
        self._random = random.Random(seed)
        self.answers: list[Answer] = []

    async def run(self, stop: asyncio.Event) -> list[Answer]:
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await launch_paced(self._rate, lambda n: self._scan(session, n), stop.is_set)
        return self.answers

    def _code(self) -> str:
        repeat = self._sent and self._random.random() < REPEAT_SHARE
        fresh = None if repeat else next(self._fresh, None)
        if fresh is None:
            return self._random.choice(self._sent)
        self._sent.append(fresh)
        return fresh

    async def _scan(self, session: aiohttp.ClientSession, number: int) -> None:
        chance = self._random
        code = self._code()
        device, member = f"dev-{chance.randrange(DEVICES)}", f"m-{chance.randrange(MEMBERS)}"
        body = {
            "code": code,
            "scan_id": f"{self._prefix}-{number}",
            "device_id": device,
            "member_id": member,
            "lat": 31.2 + chance.random() * 0.2,
            "lon": 121.4 + chance.random() * 0.2,
            "accuracy_m": 15,
        }
        headers = {"X-Forwarded-For": f"198.18.{chance.randrange(256)}.{chance.randrange(256)}"}
        scan_id = str(body["scan_id"])
        sent_at = time.monotonic()
        try:
            async with session.post(self._url, json=body, headers=headers) as reply:
                status, payload = reply.status, await reply.read()
        except (aiohttp.ClientError, TimeoutError):
            status, payload = 0, b""
        answered_at = time.monotonic()
        answer = Answer(scan_id, code, device, member, sent_at, answered_at, status)
        if status == 200:
            result = orjson.loads(payload)
            prize = result.get("prize") or {}
            answer = Answer(
                scan_id,
                code,
                device,
                member,
                sent_at,
                answered_at,
                status,
                bool(result["first_scan"]),
                int(result["scan_count"]),
                str(prize.get("prize_id", "")),
                str(prize.get("campaign_id", "")),
            )
        self.answers.append(answer)


# --- a policy's rounds ------------------------------------------------------------------------


@dataclass
class Round:
    number: int
    campaign_id: str
    limits: Limits
    kill: dict[str, Any]
    restart: dict[str, Any]
    answers: list[Answer] = field(default_factory=list)


Fault = Callable[[], tuple[dict[str, Any], dict[str, Any]]]
"""Breaks Redis and brings it back (blocking, on a thread of its own while the load runs): what
it did at the kill, with ``killed_at``, and once Redis serves again, with ``answering_at``
(``time.monotonic()`` both)."""


async def faulted_round(
    url: str,
    name: str,
    number: int,
    rate: int,
    quantity: int,
    before_s: float,
    after_s: float,
    fault: Fault,
    seed: int,
) -> Round:
    """A batch of ``quantity`` codes and a campaign of their own (``name``, its SKU ``name`` in
    capitals); open-loop load at ``rate`` scans per second; ``fault`` after ``before_s`` of it,
    then ``after_s`` more."""
    sku = name.upper()
    codes = await asyncio.to_thread(shipped_codes, url, sku, quantity)
    limits = await asyncio.to_thread(put_campaign, url, name, sku)
    await asyncio.sleep(0.3)  # the worker sees campaigns within 0.1 s
    scans = ScanLoad(url, rate, name, codes, seed)
    stop = asyncio.Event()
    loading = asyncio.create_task(scans.run(stop))
    await asyncio.sleep(before_s)
    kill, restart = await asyncio.to_thread(fault)
    await asyncio.sleep(after_s)
    stop.set()
    return Round(number, name, limits, kill, restart, await loading)


async def _round(stack: CrashStack, number: int, plan: Plan, seed: int) -> Round:
    """Load; a kill and a restart under it."""
    chance = random.Random(seed)
    mode = KILL_MODES[number % len(KILL_MODES)]

    def kill_and_restart() -> tuple[dict[str, Any], dict[str, Any]]:
        kill = stack.kill_redis(mode, chance)
        time.sleep(max(0.0, kill["killed_at"] + plan.down_s - time.monotonic()))
        return kill, stack.restart_redis()

    one = await faulted_round(
        stack.url,
        f"crash-{number}",
        number,
        plan.rate,
        plan.codes_per_round,
        plan.before_kill_s,
        plan.after_restart_s,
        kill_and_restart,
        seed,
    )
    stack.apps.check_children()
    return one


def run_policy(policy: str, kills: int, plan: Plan, seed: int, keep: bool) -> dict[str, Any]:
    """``kills`` rounds on a stack of its own, then the counts; ``keep`` leaves its folder
    (logs, AOF) behind."""
    started = time.monotonic()
    with (
        work_folder(f"scanward-crash-{policy}-", keep) as folder,
        crash_stack(folder, policy, flush_ms=250) as stack,
    ):
        with redis.Redis.from_url(stack.redis.url) as client:
            configured = cast(dict[str, str], client.config_get("appendfsync"))["appendfsync"]
        rounds = [
            asyncio.run(_round(stack, number, plan, seed + number)) for number in range(kills)
        ]
        drained = drain(stack.apps)
        with redis.Redis.from_url(stack.redis.url) as client:
            tally = count_losses(stack.apps.bench.clickhouse_url, client, rounds)
        sink_restarts = stack.apps.sink_restarts
    return {
        "appendfsync": configured,
        **tally,
        "drain": drained,
        "sink_restarts": sink_restarts,
        "run_s": round(time.monotonic() - started, 1),
    }


@contextlib.contextmanager
def work_folder(prefix: str, keep: bool) -> Iterator[Path]:
    if keep:
        folder = tempfile.mkdtemp(prefix=prefix)
        print(f"the stack's folder: {folder}", file=sys.stderr)
        yield Path(folder)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as temporary:
        yield Path(temporary)


def drain(stack: ScanwardStack) -> dict[str, Any]:
    """Waits until the first API's /healthz shows no event and no draw waiting for ClickHouse."""
    started = time.monotonic()
    health: dict[str, Any] = {}
    while time.monotonic() - started < DRAIN_LIMIT_S:
        stack.check_children()
        with contextlib.suppress(OSError, RuntimeError, orjson.JSONDecodeError):
            health = call(stack.url, "/healthz")
            if health.get("unsunk_events") == 0 and health.get("unsunk_draws") == 0:
                break
        time.sleep(0.2)
    time.sleep(0.5)  # a duplicate written late would show by now
    return {
        "seconds": round(time.monotonic() - started, 2),
        "unsunk_events": health.get("unsunk_events"),
        "unsunk_draws": health.get("unsunk_draws"),
    }


# --- the counts -------------------------------------------------------------------------------


def count_losses(
    clickhouse_url: str, redis_client: SyncRedis, rounds: Sequence[Round]
) -> dict[str, Any]:
    """What the answers say against ClickHouse and Redis, per kill and in all."""
    client = connect(clickhouse_url)
    try:
        rows = client.execute("SELECT scan_id, count() FROM scans GROUP BY scan_id")
        draws = client.execute(
            "SELECT campaign_id, prize_id, scan_id FROM draws WHERE won = 1 ORDER BY seq"
        )
    finally:
        client.disconnect()
    stored = {str(scan_id): int(n) for scan_id, n in rows}
    won_in_clickhouse: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for campaign_id, prize_id, scan_id in draws:
        won_in_clickhouse[str(campaign_id)].append((str(prize_id), str(scan_id)))
    now_ms = time.time_ns() // 1_000_000
    kills = [_tally_round(one, stored, won_in_clickhouse, redis_client, now_ms) for one in rounds]
    total_keys = (
        "sent",
        "answered",
        "lost_in_clickhouse",
        "stored_twice_in_clickhouse",
        "lost_in_redis",
        "undercounted_in_redis",
        "double_first_scans",
        "prizes_answered",
        "prizes_over_budget",
        "prizes_over_budget_clickhouse",
        "prizes_over_budget_redis",
        "prizes_lost_in_clickhouse",
    )
    totals = {key: sum(int(k[key]) for k in kills) for key in total_keys}
    return {"totals": totals, "kills": kills}


def _tally_round(
    one: Round,
    stored: Mapping[str, int],
    won_in_clickhouse: Mapping[str, list[tuple[str, str]]],
    client: SyncRedis,
    now_ms: int,
) -> dict[str, Any]:
    answered = [a for a in one.answers if a.status == 200]
    statuses = Counter(str(a.status) for a in one.answers)
    lost_ch = [a for a in answered if a.scan_id not in stored]
    twice = [a for a in answered if stored.get(a.scan_id, 0) > 1]
    lost_redis = _missing_retry_records(client, answered)
    undercounted = _undercounted(client, answered)
    firsts = Counter(a.code for a in answered if a.first_scan)
    double_firsts = sum(1 for n in firsts.values() if n > 1)
    answered_prizes = Counter(a.prize for a in answered if a.prize)
    clickhouse_prizes = Counter(p for p, _ in won_in_clickhouse.get(one.campaign_id, []))
    awarded = cast(dict[bytes, bytes], client.hgetall(campaign_key(one.campaign_id, "awarded")))
    redis_prizes = Counter({k.decode(): int(v) for k, v in awarded.items()})
    won_ids = {s for _, s in won_in_clickhouse.get(one.campaign_id, [])}
    prizes_lost_ch = sum(1 for a in answered if a.prize and a.scan_id not in won_ids)
    kill_at = one.kill["killed_at"]
    lost_any = {a.scan_id: a for a in lost_ch} | {a.scan_id: a for a in lost_redis}
    return {
        "round": one.number,
        "kill": {k: v for k, v in one.kill.items() if k != "killed_at"},
        "restart": {k: v for k, v in one.restart.items() if k != "answering_at"},
        "sent": len(one.answers),
        "answered": len(answered),
        "answered_in_last_s_before_kill": sum(
            1 for a in answered if kill_at - 1.0 <= a.answered_at <= kill_at
        ),
        "answered_after_restart": sum(
            1 for a in answered if a.sent_at >= one.restart["answering_at"]
        ),
        "statuses": dict(sorted(statuses.items())),
        "lost_in_clickhouse": len(lost_ch),
        "stored_twice_in_clickhouse": len(twice),
        "lost_in_redis": len(lost_redis),
        "undercounted_in_redis": undercounted,
        # when the client got the answers of lost scans, ms before the kill (a little after it,
        # negative, when the reply had left Redis before)
        "lost_answered_ms_before_kill": sorted(
            round((kill_at - a.answered_at) * 1000, 1) for a in lost_any.values()
        )[:20],
        "double_first_scans": double_firsts,
        "prizes_answered": sum(answered_prizes.values()),
        "prizes_over_budget": _over(answered_prizes, one.limits, now_ms),
        "prizes_over_budget_clickhouse": _over(clickhouse_prizes, one.limits, now_ms),
        "prizes_over_budget_redis": _over(redis_prizes, one.limits, now_ms),
        "prizes_lost_in_clickhouse": prizes_lost_ch,
    }


def _missing_retry_records(client: SyncRedis, answered: Sequence[Answer]) -> list[Answer]:
    """Answered scans whose retry record is gone: the scan-state script wrote it with the
    code's record and the event, so the scan's whole effect is gone with it."""
    pipe = client.pipeline(transaction=False)
    for answer in answered:
        serial = signing.parse(answer.code).serial
        key = retry_key(answer.scan_id, answer.code, answer.device_id, answer.member_id)
        tag = PARTITIONS.scan_tag(partition_of_serial(serial, PARTITIONS))
        pipe.exists(f"{tag}:sid:{key}")
    found = pipe.execute()
    return [answer for answer, exists in zip(answered, found, strict=True) if not exists]


def _undercounted(client: SyncRedis, answered: Sequence[Answer]) -> int:
    """Answered scans the codes' records do not count (a record counts every scan applied,
    answered or not, so this can only undercount a loss)."""
    per_code = Counter(a.code for a in answered if a.scan_count > 0)
    codes = sorted(per_code)
    pipe = client.pipeline(transaction=False)
    for code in codes:
        _, key, field_name = read_history(signing.parse(code).serial, PARTITIONS)
        pipe.hget(key, field_name)
    records = pipe.execute()
    missing = 0
    for code, record in zip(codes, records, strict=True):
        counted = history_of(record)
        missing += max(0, per_code[code] - (counted.scan_count if counted else 0))
    return missing


def _over(given: Mapping[str, int], limits: Limits, now_ms: int) -> int:
    """Prizes beyond their total budget or the daily cap released by ``now_ms``."""
    over = 0
    for prize_id, count in given.items():
        limit = min(limits.budgets[prize_id], limits.released(prize_id, now_ms))
        over += max(0, count - limit)
    return over


# --- the cost of always -----------------------------------------------------------------------


def run_throughput(pairs: int, plan: Plan) -> dict[str, Any]:
    """Interleaved runs on one stack, ``CONFIG SET appendfsync`` between them (pair i runs
    everysec then always when i is even, else always then everysec). Each run: wrk at peak,
    then the open-loop client at half of the first everysec peak (latency with queueing); the
    sink drains after each load so that the next starts quiet."""
    started = time.monotonic()
    runs: dict[str, list[dict[str, Any]]] = {policy: [] for policy in POLICIES}
    stack_args = (plan.stack_codes, plan.stack_sample, plan.stack_territories, plan.stack_members)
    with local_stack(*stack_args) as stack:
        url, env, connections = stack.url, stack.env, plan.wrk_connections
        codes = open_loop.read_codes(stack.codes_file)
        serve = scanward("serve", "--workers", "1")
        with (
            process(scanward("sink"), env),
            process(serve, env),
            redis.Redis.from_url(stack.redis_url) as client,
        ):
            wait_healthy(url)
            campaign_bench.put_campaign(url, SKU)
            run_wrk(url, env, 2, connections)  # warm-up: the campaign's codes draw once
            drain_streams(client)
            half_rate, number = 0, 0
            for pair in range(pairs):
                order = POLICIES if pair % 2 == 0 else tuple(reversed(POLICIES))
                for policy in order:
                    client.config_set("appendfsync", policy)
                    set_to = cast(dict[str, str], client.config_get("appendfsync"))
                    assert set_to["appendfsync"] == policy, set_to
                    one = peak_then_fixed_rate(
                        url,
                        env,
                        (plan.wrk_s, connections),
                        codes,
                        (half_rate, number),
                        lambda: drain_streams(client),
                    )
                    number += 1
                    half_rate = half_rate or one["half_load"]["offered_per_s"]
                    runs[policy].append({"pair": pair, **one})
    everysec, always = runs["everysec"], runs["always"]
    ratios = paired_ratios(everysec, always, "peak", "per_s")
    return {
        "method": "wrk closed loop at peak, then open loop at half of the first everysec peak; "
        "1 worker, the sink running, one campaign open; the policy switched with CONFIG SET "
        "appendfsync on one stack, pairs interleaved",
        "duration_s": plan.wrk_s,
        "connections": plan.wrk_connections,
        "half_load_per_s": half_rate,
        "runs": runs,
        "ratio_always_to_everysec": ratios,
        "median_ratio": statistics.median(ratios) if ratios else None,
        "half_load_p99_ratio_always_to_everysec": paired_ratios(
            everysec, always, "half_load", "p99_ms"
        ),
        "run_s": round(time.monotonic() - started, 1),
    }


def peak_then_fixed_rate(
    url: str,
    env: Mapping[str, str],
    load: tuple[int, int],
    codes: Sequence[str],
    fixed_rate: tuple[int, int],
    drained: Callable[[], object],
) -> dict[str, Any]:
    """One run: wrk at peak for ``load`` = (seconds, connections), then the open-loop client
    as long on ``codes`` (from the first) with ``fixed_rate`` = (scans per second, 0: half of
    this run's peak; the seed of its requests); ``drained`` (the sink has emptied the streams)
    after each. ``env`` carries wrk's SCAN_CODES and SCAN_MEMBERS; the open loop uses as many
    members."""
    duration_s, connections = load
    rate, seed = fixed_rate
    before = scrape(url)
    peak = run_wrk(url, env, duration_s, connections)
    batch = mean_batch(before, scrape(url))
    drained()
    rate = rate or peak["per_s"] // 2
    requests = open_loop.build_requests(
        codes,
        open_loop.request_count(rate, duration_s),
        urlsplit(url).netloc,
        int(env["SCAN_MEMBERS"]),
        seed=seed,
    )
    fixed = open_loop.measure(url, rate, duration_s, connections, requests)
    drained()
    return {
        "peak": _figures(peak, WRK_KEYS),
        "mean_batch_at_peak": batch,
        "half_load": _figures(fixed, OPEN_LOOP_KEYS),
    }


def paired_ratios(
    base: Sequence[Mapping[str, Any]], other: Sequence[Mapping[str, Any]], load: str, figure: str
) -> list[float]:
    """``other`` / ``base`` of one figure (``peak`` ``per_s``, ``half_load`` ``p99_ms``...),
    pair by pair; a pair whose base figure is 0 is left out."""
    return [
        round(second[load][figure] / first[load][figure], 3)
        for first, second in zip(base, other, strict=True)
        if first[load][figure]
    ]


WRK_KEYS = ("per_s", "requests", "errors", "non_2xx", "p50_ms", "p99_ms", "max_ms")
OPEN_LOOP_KEYS = ("offered_per_s", "achieved_per_s", "errors", "non_2xx", "p50_ms", "p99_ms")


def _figures(result: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {key: result[key] for key in keys}


# --- the report -------------------------------------------------------------------------------


def table(results: Mapping[str, Mapping[str, Any]], column: str) -> list[dict[str, Any]]:
    """One row a setting (named in ``column``) of ``results``' counts: what the issue asks
    for."""
    return [
        {
            column: setting,
            "kills": len(result["kills"]),
            "answered": result["totals"]["answered"],
            "lost_in_clickhouse": result["totals"]["lost_in_clickhouse"],
            "lost_in_redis": result["totals"]["lost_in_redis"],
            "double_first_scans": result["totals"]["double_first_scans"],
            "prizes_over_budget": max(
                result["totals"]["prizes_over_budget"],
                result["totals"]["prizes_over_budget_clickhouse"],
                result["totals"]["prizes_over_budget_redis"],
            ),
        }
        for setting, result in results.items()
    ]


def redis_version() -> str:
    binary = local_services.find_binary("redis-server", "redis-server")
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    found = re.search(r"v=(\S+)", output.stdout)
    return found.group(1) if found else output.stdout.strip()


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    policies = {
        policy: run_policy(policy, args.kills, plan, args.seed + 1000 * n, args.keep)
        for n, policy in enumerate(POLICIES)
        if policy in args.policy and args.kills
    }
    throughput = run_throughput(args.pairs, plan) if args.pairs else None
    return {
        "benchmark": "redis_crash",
        **provenance(),
        "redis": redis_version(),
        "quick": args.quick,
        "kills_per_policy": args.kills,
        "kill_modes": list(KILL_MODES),
        "load": {
            "rate_per_s": plan.rate,
            "repeat_share": REPEAT_SHARE,
            "before_kill_s": plan.before_kill_s,
            "down_s": plan.down_s,
            "after_restart_s": plan.after_restart_s,
        },
        "table": table(policies, "appendfsync"),
        "policies": policies,
        "throughput": throughput,
        "run_s": round(time.monotonic() - started, 1),
    }


def kill_options(prog: str, doc: str | None, per: str, kills: int) -> argparse.ArgumentParser:
    """The options of a kill benchmark: ``--quick``, ``--kills`` (``kills`` per ``per``, a
    policy or a setting, by default), ``--pairs``, ``--seed``, ``--keep``, ``--no-save``."""
    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"1 kill per {per}, short loads")
    parser.add_argument(
        "--kills", type=int, help=f"kills per {per} (default {kills}; 1 with --quick)"
    )
    parser.add_argument(
        "--pairs", type=int, help="interleaved throughput pairs (default 3; 1 with --quick)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the stacks' folders")
    parser.add_argument("--no-save", action="store_true", help="print, do not save the report")
    parser.set_defaults(default_kills=kills)
    return parser


def parse_kill_options(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """The options, ``--kills`` and ``--pairs`` given their defaults and bounded."""
    args = parser.parse_args(argv)
    args.kills = args.kills if args.kills is not None else (1 if args.quick else args.default_kills)
    args.pairs = args.pairs if args.pairs is not None else (1 if args.quick else 3)
    if not 0 <= args.kills <= MAX_KILLS or not 0 <= args.pairs <= MAX_PAIRS:
        parser.error(f"--kills must be 0 to {MAX_KILLS} and --pairs 0 to {MAX_PAIRS}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    parser = kill_options("python -m benchmarks.crash_bench", __doc__, "policy", 3)
    parser.add_argument(
        "--policy",
        action="append",
        choices=POLICIES,
        help="only this policy's kills (repeatable; default both)",
    )
    args = parse_kill_options(parser, argv)
    args.policy = args.policy or list(POLICIES)
    print_or_publish(run(args), "crash", save=not args.no_save, quick=args.quick)


if __name__ == "__main__":
    main()
