"""Hot slots: what each single-slot Redis operation costs, and the rate one Redis core caps it at.

On a Redis Cluster every key with the hash tag ``{codes}``, ``{ship}``, ``{geo}``, ``{rewards}``
or ``{camp:<id>}`` lives in one slot, so on one primary, whose one thread runs every command and
script of that slot: whatever the number of nodes, a tag's operations share one core. This
script starts a private Redis, builds state with the project's own domain functions (batches,
distributors, shipments, members with tiers, campaigns) and runs each operation of each tag as
production issues it, one round trip per call, through ``ScriptRunner`` and the stores the API
workers use. For every operation it reads Redis's own figures after ``CONFIG RESETSTAT``:

- ``us_per_op``: ``INFO commandstats`` microseconds of the operation's top-level commands (for a
  script, EVALSHA, which includes the commands it runs) per operation: the time the slot's
  thread is busy with it;
- ``redis_cpu_us_per_op``: Redis's CPU (``INFO cpu``) per operation when the window held that
  operation alone: the above plus reading the request, writing the reply and the append-only
  file, one call per round trip (the unpipelined worst case);
- ``ops_per_s_one_client``: wall-clock rate of one client waiting on each call, for context;
- ``ceiling_per_s`` = 1e6 / ``us_per_op`` and ``ceiling_per_s_cpu`` = 1e6 /
  ``redis_cpu_us_per_op``: operations per second on one core, assuming the slot's primary does
  nothing else.

``draw.lua`` is measured at 1, 4, 20, 64 and 256 entrants per call (a micro-batch's draws in one
campaign; 256 is the most one call takes): first draws of codes by members of a 100k pool, each
scan with a client scan id (and at 20 once more without), with the sink's read and
acknowledgement of the same draws (they hit the same slot). The per-scan families spread over
partitions (``{actors:N}``, ``{members:N}``) are measured too, for comparison. Medians over
``rounds``.

``python -m benchmarks.hot_slots [--quick]`` prints one JSON document and saves it as
``benchmarks/results/hot-slots-<stamp>.json``; the default run takes 1.5 to 2 minutes,
``--quick`` a few seconds (sizes too small for its figures to mean much: it checks that
everything runs). ``docs/scaling.md`` reads the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import redis
from redis.asyncio import Redis
from redis.crc import key_slot

from benchmarks import campaign_bench
from benchmarks.report import provenance, publish
from codes import batches
from codes.batches import BatchOrder
from codes.commands import ScriptCall
from codes.keyring import Keyring
from fraud import distributors, shipments, velocity
from fraud.distributors import Distributor
from fraud.policy import FraudPolicy
from fraud.shipments import SerialRange
from fraud.velocity import ActorKind, Observation
from ingest.config import Settings
from ingest.events.partitions import Partitions
from ingest.ops import local_services
from ingest.scan.fraud_stage import REFERENCE_MAX_AGE_S
from ingest.scan.pipeline import VERIFIER_MAX_AGE_S
from ingest.scan.reward_stage import CAMPAIGNS_MAX_AGE_S, MAX_DRAWS_PER_CALL
from ingest.scan.state import member_digest, retry_key
from ingest.sink.consumer import MAX_READ_COUNT
from ingest.sink.family import BATCHES, DRAWS, EventFamily
from ingest.sink.lease import StreamLeases
from ingest.sink.streams import NEW, SinkStreams
from ingest.store.batches import BatchStore
from ingest.store.campaigns import CampaignSource
from ingest.store.references import ReferenceSource
from ingest.store.scripts import Command, RedisPyCommands, ScriptRunner
from rewards import members, store
from rewards.campaigns import Campaign
from rewards.draws import Entrant
from rewards.members import TierReads

SKU = "HOT"
GTIN = "4006381333931"
BATCH_SIZE = 1_000_000  # codes per batch: the assumed brand's orders
SHIPMENT_SIZE = 10_000  # units per shipped range: a truckload
CASE_UNITS = 24
CASES_PER_SHIPMENT = 10
MICRO_BATCH = 20  # scans per micro-batch (the scan benchmarks' mean at 64 connections)
DRAW_SIZES = (1, 4, 20, 64, MAX_DRAWS_PER_CALL)
HOT_CAMPAIGN = campaign_bench.CAMPAIGN_ID
SAVED_CAMPAIGN = "saved-often"
CAMP_TAG = "{camp:<id>}"
TAGS = ("{codes}", "{ship}", "{geo}", "{rewards}", CAMP_TAG)
_SETTINGS = {field.name: field.default for field in dataclasses.fields(Settings)}
TIERS = cast(int, _SETTINGS["member_tiers"])
RETRY_TTL_S = cast(int, _SETTINGS["scan_id_ttl_s"])
SINK_BATCH_ROWS = cast(int, _SETTINGS["sink_batch_rows"])
PARTITIONS = Partitions()
_NOT_COUNTED = frozenset({"info", "config"})  # the measurement's own commands
_CHUNK = 500  # setup calls per round trip

Call = ScriptCall | Command
Work = Callable[[], Awaitable[None]]
Prepare = Callable[[], Awaitable[Work]]
"""Builds a round's work (outside the measured window) and returns it."""
_Pending = tuple[str, str, str, Prepare, int, tuple[str, ...]]


@dataclasses.dataclass(frozen=True, slots=True)
class Sizes:
    """The state built before measuring, and how much each measurement runs."""

    batches: int
    """Batches ordered before measuring: what the ``{codes}`` index holds."""
    shipments: int
    """Shipments logged before measuring."""
    distributors: int
    members: int
    """Member ids the draws come from; a share of them has a tier."""
    campaigns: int
    """Campaigns saved: every worker reloads each of them when one is saved."""
    calls: int
    """Calls per operation per round."""
    reloads: int
    """Full reloads per round (each reads all of a family)."""
    draws: int
    """Draws per entrants-per-call size per round."""
    rounds: int

    @classmethod
    def default(cls) -> Sizes:
        return cls(10_000, 10_000, 1_000, 100_000, 20, 2_000, 10, 20_000, 3)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(200, 200, 50, 2_000, 3, 100, 2, 512, 1)


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """Redis's own figures over one measured stretch of work."""

    seconds: float
    redis_cpu_s: float
    commands: dict[str, tuple[int, int]]
    """Command -> calls and microseconds (those run by scripts included)."""

    def usec(self, names: Sequence[str]) -> int:
        return sum(self.commands.get(name, (0, 0))[1] for name in names)


async def measure(client: Redis, work: Work) -> Window:
    """``work`` between ``CONFIG RESETSTAT`` and a reading of ``INFO commandstats``, with
    Redis's CPU seconds and the wall-clock seconds it took."""
    await client.config_resetstat()
    cpu_before = await _redis_cpu_s(client)
    started = time.perf_counter()
    await work()
    seconds = time.perf_counter() - started
    cpu_after = await _redis_cpu_s(client)
    stats = cast(dict[str, dict[str, Any]], await client.info("commandstats"))
    commands = {
        name.removeprefix("cmdstat_"): (int(row["calls"]), int(row["usec"]))
        for name, row in stats.items()
        if name.removeprefix("cmdstat_").split("|")[0] not in _NOT_COUNTED
    }
    return Window(seconds, cpu_after - cpu_before, commands)


async def _redis_cpu_s(client: Redis) -> float:
    cpu = cast(dict[str, float], await client.info("cpu"))
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"]


def figure(
    operation: str,
    what: str,
    windows: Sequence[Window],
    ops: int,
    counted: Sequence[str],
    *,
    alone: bool = True,
) -> dict[str, Any]:
    """An operation's cost from the windows of its rounds (``ops`` each): the microseconds of
    the ``counted`` commands per operation, and, when a window held the operation ``alone``,
    Redis's CPU per operation and the client's rate; medians over the rounds."""
    us = statistics.median(w.usec(counted) / ops for w in windows)
    cpu_us = statistics.median(w.redis_cpu_s * 1e6 / ops for w in windows) if alone else None
    rate = statistics.median(ops / w.seconds for w in windows) if alone else None
    totals: dict[str, list[int]] = {}
    for window in windows:
        for name, (calls, usec) in window.commands.items():
            total = totals.setdefault(name, [0, 0])
            total[0], total[1] = total[0] + calls, total[1] + usec
    every = ops * len(windows)
    return {
        "operation": operation,
        "what": what,
        "ops_per_round": ops,
        "rounds": len(windows),
        "us_per_op": round(us, 2),
        "us_per_op_by_round": [round(w.usec(counted) / ops, 2) for w in windows],
        "redis_cpu_us_per_op": None if cpu_us is None else round(cpu_us, 2),
        "ops_per_s_one_client": None if rate is None else round(rate),
        "ceiling_per_s": _ceiling(us),
        "ceiling_per_s_cpu": None if cpu_us is None else _ceiling(cpu_us),
        "commands_per_op": {
            name: {"calls": round(calls / every, 3), "us": round(usec / every, 3)}
            for name, (calls, usec) in sorted(totals.items(), key=lambda item: -item[1][1])
        },
    }


def _ceiling(us_per_op: float) -> int | None:
    return round(1e6 / us_per_op) if us_per_op > 0 else None


class HotSlots:
    """The state the operations run against, and the figures measured so far, by tag."""

    def __init__(self, url: str, sizes: Sizes) -> None:
        self.sizes = sizes
        self.raw = Redis.from_url(url)  # script replies are bytes (draw outcomes)
        self.text = Redis.from_url(url, decode_responses=True)  # as the stores need
        self.blocking = redis.Redis.from_url(url)  # the sink's and give_tiers' client
        self.scripts = ScriptRunner(RedisPyCommands(self.raw))
        self.keyring = Keyring.new()
        self.rng = random.Random(7)
        self.figures: dict[str, list[dict[str, Any]]] = {tag: [] for tag in TAGS}
        self.partitioned: list[dict[str, Any]] = []
        self.draws: list[dict[str, Any]] = []
        self.batch_ids: list[str] = []
        self.next_shipped = 1  # the next serial to ship; shipments go in order
        self.distributor_ids: list[str] = []
        self.tiers: dict[str, int] = {}
        self._pending: list[_Pending] = []

    async def close(self) -> None:
        await self.raw.aclose()
        await self.text.aclose()
        self.blocking.close()

    async def rounds(self, prepare: Prepare) -> list[Window]:
        """A window per round; ``prepare`` builds each round's work outside its window."""
        return [await measure(self.raw, await prepare()) for _ in range(self.sizes.rounds)]

    async def run_each(self, calls: Sequence[Call]) -> None:
        """Each call in its own round trip, as the API issues them."""
        for call in calls:
            await self.scripts.run_many([call])

    async def run_each_batch(self, groups: Sequence[Sequence[Call]]) -> None:
        """Each group of calls in one round trip, as a micro-batch's."""
        for group in groups:
            await self.scripts.run_many(group)

    def each_then(self, calls: Callable[[], list[ScriptCall]], source: ReferenceSource) -> Prepare:
        """Rounds of ``calls()`` (made outside the window), each call followed by the worker's
        refresh of its reference data, as a worker sees a change."""

        async def prepare() -> Work:
            made = calls()

            async def work() -> None:
                for call in made:
                    await self.scripts.run(call)
                    await source.current()

            return work

        return prepare

    # -- state --------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Batches, distributors, shipments, member tiers and campaigns, as the domain code
        writes them."""
        order = BatchOrder.create(SKU, GTIN, BATCH_SIZE, max_quantity=BATCH_SIZE)
        await self._order(order, self.sizes.batches)
        await self._put_distributors(self.sizes.distributors)
        for start in range(0, self.sizes.shipments, _CHUNK):
            count = min(_CHUNK, self.sizes.shipments - start)
            await self.scripts.run_many([self._shipment() for _ in range(count)])
        given = campaign_bench.give_tiers(self.blocking, self.sizes.members)
        member_ids = [f"m-{n}" for n in range(1, self.sizes.members + 1)]
        for start in range(0, len(member_ids), 1_000):
            reads = TierReads(member_ids[start : start + 1_000])
            self.tiers.update(reads.tiers(await self.scripts.run_many(reads.commands())))
        assert sum(1 for tier in self.tiers.values() if tier) == sum(given.values())
        for number in range(self.sizes.campaigns):
            cid = HOT_CAMPAIGN if number == 0 else f"other-{number}"
            sku = SKU if number == 0 else f"{SKU}-{number}"
            campaign = Campaign.from_json(cid, campaign_bench.campaign_body(sku), TIERS)
            await self.scripts.run(store.save(campaign))
            await self.scripts.run_many(store.registered(cid))

    async def _order(self, order: BatchOrder, count: int) -> None:
        key_id = self.keyring.current.key_id
        for start in range(0, count, _CHUNK):
            ids = [batches.new_batch_id() for _ in range(min(_CHUNK, count - start))]
            now_ms = int(time.time() * 1000)
            await self.scripts.run_many([order.reserve(b, key_id, now_ms) for b in ids])
            self.batch_ids += ids

    async def _put_distributors(self, count: int) -> None:
        """Square territories of 0.5 degree tiling a grid over eastern China (as the scan
        benchmarks' distributors)."""
        side = math.ceil(math.sqrt(count))
        calls = []
        for number in range(count):
            distributor = _distributor(number, side, 0)
            calls.append(distributor.put())
            self.distributor_ids.append(distributor.distributor_id)
        for start in range(0, len(calls), _CHUNK):
            await self.scripts.run_many(calls[start : start + _CHUNK])

    def _shipment(self) -> ScriptCall:
        """The next ``SHIPMENT_SIZE`` serials shipped to a distributor."""
        first = self.next_shipped
        self.next_shipped += SHIPMENT_SIZE
        ranges = [SerialRange(first, first + SHIPMENT_SIZE - 1, expand=False)]
        return shipments.ship(self._distributor_id(), uuid.uuid4().hex, _now_ms(), ranges)

    def _distributor_id(self) -> str:
        return self.distributor_ids[self.rng.randrange(len(self.distributor_ids))]

    # -- {codes} ------------------------------------------------------------------------------

    async def codes(self) -> None:
        """Ordering and revoking batches, the workers' poll and reload of the batch index, the
        sink's reads of the change stream."""
        calls, key_id = self.sizes.calls, self.keyring.current.key_id
        order = BatchOrder.create(SKU, GTIN, BATCH_SIZE, max_quantity=BATCH_SIZE)

        async def reserve() -> Work:
            ids = [batches.new_batch_id() for _ in range(calls)]
            self.batch_ids += ids
            reserved = [order.reserve(b, key_id, _now_ms()) for b in ids]
            return lambda: self.run_each(reserved)

        self._add("{codes}", "reserve_batch.lua", "order a batch of 1M codes", reserve, calls)
        fresh = iter(self.batch_ids[: self.sizes.batches])
        revoked = min(calls, self.sizes.batches // (self.sizes.rounds + 1))  # + the warm-up

        async def revoke() -> Work:
            revocations = [batches.revoke(next(fresh)) for _ in range(revoked)]
            return lambda: self.run_each(revocations)

        self._add("{codes}", "revoke_batch.lua", "revoke a batch", revoke, revoked)
        await self._run_pending()
        store_ = BatchStore(self.text)
        await store_.index()

        poll = repeat(calls, store_.index)
        what = (
            "every API worker every "
            f"{VERIFIER_MAX_AGE_S * 1000:.0f} ms: has a batch been ordered or revoked?"
        )
        self._add("{codes}", "batch index version (GET)", what, poll, calls, ("get",))
        reloads, indexed = self.sizes.reloads, len(self.batch_ids)

        reload = repeat(reloads, lambda: BatchStore(self.text).index())
        what = (
            f"every API worker after every order or revocation: all {indexed:,} batches "
            "(ZRANGE, then HGETALL of each, pipelined)"
        )
        self._add(
            "{codes}", "batch index reload", what, reload, reloads, ("get", "zrange", "hgetall")
        )
        await self._run_pending()
        self.figures["{codes}"][-1]["batches_indexed"] = indexed
        await self._sink("{codes}", BATCHES, "the sink mirrors {codes}:changes (per change)")

    # -- {ship} and {geo} ---------------------------------------------------------------------

    async def ship(self) -> None:
        """Shipping ranges and cases, aggregating and emptying cases, then what the workers
        read of ``{ship}`` and ``{geo}``."""
        calls = self.sizes.calls

        async def ship_ranges() -> Work:
            shipped = [self._shipment() for _ in range(calls)]
            return lambda: self.run_each(shipped)

        what = f"ship one range of {SHIPMENT_SIZE:,} units ({self.sizes.shipments:,} logged)"
        self._add("{ship}", "ship.lua (a range)", what, ship_ranges, calls)
        await self._run_pending()
        region = iter(range(self.sizes.batches // 2 * BATCH_SIZE + 1, 2**40, CASE_UNITS + 1))
        cases: list[int] = []

        async def aggregate() -> Work:
            parents = [next(region) for _ in range(calls)]
            cases.extend(parents)
            units = [shipments.aggregate(p, range(p + 1, p + 1 + CASE_UNITS)) for p in parents]
            return lambda: self.run_each(units)

        what = f"aggregate a case of {CASE_UNITS} units"
        self._add("{ship}", "aggregate.lua", what, aggregate, calls)
        await self._run_pending()
        half = calls // 2
        groups = half // CASES_PER_SHIPMENT
        # a chunk of cases per round (and the warm-up): half shipped, half emptied
        chunks = [cases[at : at + calls] for at in range(0, len(cases), calls)]
        to_ship, to_release = [c[:half] for c in chunks], [c[half:] for c in chunks]

        async def ship_cases() -> Work:
            parents = to_ship.pop()
            shipped = [
                shipments.ship(
                    self._distributor_id(),
                    uuid.uuid4().hex,
                    _now_ms(),
                    [SerialRange(p, p, expand=True) for p in parents[at : at + CASES_PER_SHIPMENT]],
                )
                for at in range(0, groups * CASES_PER_SHIPMENT, CASES_PER_SHIPMENT)
            ]
            return lambda: self.run_each(shipped)

        what = f"ship {CASES_PER_SHIPMENT} cases with what they hold (expand)"
        self._add("{ship}", "ship.lua (cases)", what, ship_cases, groups)

        async def release() -> Work:
            emptied = [shipments.release(p) for p in to_release.pop()]
            return lambda: self.run_each(emptied)

        what = f"empty a case of {CASE_UNITS} units"
        self._add("{ship}", "release.lua", what, release, half)
        await self._run_pending()
        await self._references()

    async def _references(self) -> None:
        """What every worker's ``ReferenceSource`` reads: the poll ({geo} and {ship} in one
        pipeline), the new lines of the shipment log, every distributor after a put."""
        calls, reloads = self.sizes.calls, self.sizes.reloads
        source = ReferenceSource(self.text)
        await source.current()

        windows = await self.rounds(repeat(calls, source.current))
        every = f"every API worker every {REFERENCE_MAX_AGE_S * 1000:.0f} ms"
        what = f"{every}, with LLEN {shipments.LOG_KEY} in one pipeline"
        geo_poll = figure(
            f"GET {distributors.VERSION_KEY}", what, windows, calls, ("get",), alone=False
        )
        geo_poll["round_trip_redis_cpu_us"] = _cpu_us(windows, calls)
        self.figures["{geo}"].append(geo_poll)
        what = f"{every}, with GET {distributors.VERSION_KEY} in one pipeline"
        ship_poll = figure(
            f"LLEN {shipments.LOG_KEY}", what, windows, calls, ("llen",), alone=False
        )
        ship_poll["round_trip_redis_cpu_us"] = _cpu_us(windows, calls)
        self.figures["{ship}"].append(ship_poll)

        ship_and_read = self.each_then(lambda: [self._shipment() for _ in range(calls)], source)
        windows = await self.rounds(ship_and_read)
        what = "every API worker after every shipment: the new line of the log"
        self.figures["{ship}"].append(
            figure("shipment log read (LRANGE)", what, windows, calls, ("lrange",), alone=False)
        )
        side = math.ceil(math.sqrt(self.sizes.distributors))

        async def put() -> Work:
            numbers = [self.rng.randrange(self.sizes.distributors) for _ in range(calls)]
            puts = [_distributor(n, side, _now_ms()).put() for n in numbers]
            return lambda: self.run_each(puts)

        what = "store a distributor with a square territory (replacing it)"
        self._add("{geo}", "put_distributor.lua", what, put, calls)
        await self._run_pending()

        def puts() -> list[ScriptCall]:
            numbers = [self.rng.randrange(self.sizes.distributors) for _ in range(reloads)]
            return [_distributor(n, side, _now_ms()).put() for n in numbers]

        windows = await self.rounds(self.each_then(puts, source))
        count = self.sizes.distributors
        what = f"every API worker after every put: all {count:,} distributors (HGETALL)"
        reload = figure("distributors reload", what, windows, reloads, ("hgetall",), alone=False)
        stored = await self.raw.memory_usage(distributors.DISTRIBUTORS_KEY) or 0
        reload["distributors"], reload["hash_bytes"] = count, stored
        self.figures["{geo}"].append(reload)

    # -- {rewards} and {camp:<id>} ------------------------------------------------------------

    async def rewards(self) -> None:
        """The workers' poll and reload of the campaigns, saving one, then the draws."""
        calls, reloads = self.sizes.calls, self.sizes.reloads
        source = CampaignSource(self.text, TIERS)
        await source.current()

        poll = repeat(calls, source.current)
        what = f"every API worker every {CAMPAIGNS_MAX_AGE_S * 1000:.0f} ms: was a campaign saved?"
        self._add("{rewards}", f"GET {store.VERSION_KEY}", what, poll, calls, ("get",))

        async def register() -> Work:
            return lambda: self.run_each_batch([store.registered(HOT_CAMPAIGN)] * calls)

        what = "after every campaign save: SADD the id, INCR the version (one round trip)"
        self._add("{rewards}", "campaign registration", what, register, calls, ("sadd", "incr"))
        await self._run_pending()

        reload = repeat(reloads, lambda: CampaignSource(self.text, TIERS).current())
        windows = await self.rounds(reload)
        count = self.sizes.campaigns
        what = f"every API worker after every save: the campaign ids ({count} campaigns)"
        ids = figure(
            "campaigns reload (SMEMBERS)", what, windows, reloads, ("smembers",), alone=False
        )
        self.figures["{rewards}"].append(ids)
        what = "every API worker after any save, per campaign: its version, configuration, seeds"
        reads = ("get", "hget", "hgetall")
        per_campaign = figure("campaign reload", what, windows, reloads * count, reads, alone=False)
        self.figures[CAMP_TAG].append(per_campaign)
        body = campaign_bench.campaign_body(SKU)
        saved = Campaign.from_json(SAVED_CAMPAIGN, body, TIERS)

        async def save() -> Work:
            return lambda: self.run_each([store.save(saved)] * calls)

        what = f"save a campaign ({len(saved.days())} days: a seed each, kept if set)"
        self._add(CAMP_TAG, "save_campaign.lua", what, save, calls)
        await self._run_pending()
        await self._draws()

    async def _draws(self) -> None:
        """``draw.lua`` at each size: first draws of codes by members of the pool, each scan
        with a client scan id (the retry key; and once more at ``MICRO_BATCH`` without); after
        each size, the sink's reads and acks of its draws."""
        live = (await CampaignSource(self.text, TIERS).current()).by_id[HOT_CAMPAIGN]
        now_ms = _local_noon(live.campaign.zone)
        variants = [(size, True) for size in DRAW_SIZES] + [(MICRO_BATCH, False)]
        per_call = [max(1, self.sizes.draws // size) for size, _ in variants]
        needed = sum(
            size * (1 + self.sizes.rounds * calls)
            for (size, _), calls in zip(variants, per_call, strict=True)
        )
        batch_id = self.batch_ids[-1]  # never shipped nor drawn: first draws
        first = (len(self.batch_ids) - 1) * BATCH_SIZE + 1
        blob = self.keyring.signer(self.keyring.current.key_id, batch_id).sign_range(first, needed)
        order = list(range(needed))
        self.rng.shuffle(order)
        entrants = iter(order)

        def call(size: int, scan_ids: bool) -> ScriptCall:
            drawn = [
                self._entrant(first, blob, next(entrants), batch_id, scan_ids) for _ in range(size)
            ]
            tiers = [self.tiers.get(e.member_id, 0) for e in drawn]
            return live.call(drawn, tiers, now_ms, RETRY_TTL_S)

        streams = SinkStreams(self.blocking, DRAWS, StreamLeases(self.blocking))
        streams.open()
        sinking: dict[str, Any] = {}
        for (size, scan_ids), calls in zip(variants, per_call, strict=True):
            await self.scripts.run(call(size, scan_ids))  # loads the script; the first bitmaps

            async def draw(size: int = size, scan_ids: bool = scan_ids, calls: int = calls) -> Work:
                prepared = [call(size, scan_ids) for _ in range(calls)]
                return lambda: self.run_each(prepared)

            windows = await self.rounds(draw)
            name = f"draw.lua x{size}" + ("" if scan_ids else ", no client scan ids")
            what = f"draw.lua with {size} entrants: a micro-batch's draws in one campaign"
            drawn = figure(name, what, windows, calls, ("evalsha",))
            sink = await self._drain(streams, DRAWS)
            us_per_draw = drawn["us_per_op"] / size
            cpu_per_draw = drawn["redis_cpu_us_per_op"] / size
            self.draws.append(
                {
                    "entrants_per_call": size,
                    "client_scan_ids": scan_ids,
                    "us_per_call": drawn["us_per_op"],
                    "us_per_draw": round(us_per_draw, 2),
                    "redis_cpu_us_per_draw": round(cpu_per_draw, 2),
                    "calls_per_s_ceiling": drawn["ceiling_per_s"],
                    "draws_per_s_ceiling": _ceiling(us_per_draw),
                    "draws_per_s_ceiling_cpu": _ceiling(cpu_per_draw),
                    "sink_us_per_draw": sink["us_per_op"],
                    "draws_per_s_ceiling_with_sink": _ceiling(us_per_draw + sink["us_per_op"]),
                    "calls_per_s_one_client": drawn["ops_per_s_one_client"],
                }
            )
            self.figures[CAMP_TAG].append(drawn)
            if size == MICRO_BATCH and scan_ids:
                sinking = sink | {"operation": f"sink read + ack (per draw, x{size})"}
        self.figures[CAMP_TAG].append(sinking)

    def _entrant(self, first: int, blob: bytes, at: int, batch_id: str, scan_ids: bool) -> Entrant:
        """The ``at``-th code of ``blob`` scanned by a member of the pool (with the retry key
        of a client scan id when ``scan_ids``)."""
        member = f"m-{self.rng.randrange(1, self.sizes.members + 1)}"
        code = blob[20 * at : 20 * at + 20].decode()
        scan_id = uuid.uuid4().hex
        device = f"dev-{self.rng.randrange(100_000)}"
        key = retry_key(scan_id if scan_ids else None, code, device, member)
        return Entrant(scan_id, key, member, 0, first + at, code, SKU, batch_id)

    # -- the sink -----------------------------------------------------------------------------

    async def _sink(self, tag: str, family: EventFamily, what: str) -> None:
        streams = SinkStreams(self.blocking, family, StreamLeases(self.blocking))
        streams.open()
        self.figures[tag].append(await self._drain(streams, family) | {"what": what})

    async def _drain(self, streams: SinkStreams, family: EventFamily) -> dict[str, Any]:
        """The sink's reads (as many entries as a batch of ``sink_batch_rows`` rows may need)
        and acknowledgements of everything in the family's streams: cost per event."""
        count = max(1, min(MAX_READ_COUNT, SINK_BATCH_ROWS // family.max_events_per_entry))
        events = 0

        async def work() -> None:
            nonlocal events
            while True:
                read = streams.read(dict.fromkeys(streams.keys, NEW), count)
                entries = {key: got for key, got in read.items() if got}
                if not entries:
                    return
                ids = {key: [entry_id for entry_id, _ in got] for key, got in entries.items()}
                sizes = {
                    key: [family.events_in(fields) for _, fields in got]
                    for key, got in entries.items()
                }
                events += sum(sum(n) for n in sizes.values())
                streams.acknowledge(ids, sizes, None)

        window = await measure(self.raw, work)
        what = f"the sink reads {count} entries at a time and acknowledges them (ack_events.lua)"
        return figure("sink read + ack", what, [window], max(events, 1), ("xreadgroup", "evalsha"))

    # -- the per-scan families, partitioned -----------------------------------------------------

    async def partitions(self) -> None:
        """The per-scan velocity counts and tier reads, spread over a few partitions each."""
        calls, policy = self.sizes.calls, FraudPolicy()

        async def observe() -> Work:
            micro_batches = [self._velocity_calls(policy) for _ in range(calls)]
            return lambda: self.run_each_batch(micro_batches)

        what = (
            f"per scan: its device and IP counted, a micro-batch of {MICRO_BATCH} scans in one "
            f"call per {{actors:N}} partition ({PARTITIONS.actors} partitions)"
        )
        tag, partitions = "{actors:N}", PARTITIONS.actors
        await self._partitioned(tag, partitions, "velocity.lua", what, observe, ("evalsha",))

        async def read_tiers() -> Work:
            pool = self.sizes.members
            groups = [
                TierReads([f"m-{self.rng.randrange(1, pool + 1)}" for _ in range(MICRO_BATCH)])
                for _ in range(calls)
            ]
            return lambda: self.run_each_batch([g.commands() for g in groups])

        what = (
            f"per scan with a member: its tier, one HMGET per {{members:N}} partition and "
            f"micro-batch of {MICRO_BATCH} ({members.PARTITIONS} partitions)"
        )
        operation = "member tier read (HMGET)"
        tag, partitions = "{members:N}", members.PARTITIONS
        await self._partitioned(tag, partitions, operation, what, read_tiers, ("hmget",))

    async def _partitioned(
        self,
        tag: str,
        partitions: int,
        operation: str,
        what: str,
        prepare: Prepare,
        counted: tuple[str, ...],
    ) -> None:
        """A per-scan operation: a warm-up round, then its rounds of micro-batches, per scan."""
        await (await prepare())()
        windows = await self.rounds(prepare)
        scans = self.sizes.calls * MICRO_BATCH
        self.partitioned.append(
            figure(operation, what, windows, scans, counted)
            | {"tag": tag, "partitions": partitions}
        )

    def _velocity_calls(self, policy: FraudPolicy) -> list[ScriptCall]:
        now_s = _now_ms() // 1000
        by_tag: dict[str, list[Observation]] = {}
        for _ in range(MICRO_BATCH):
            serial = self.rng.randrange(1, self.sizes.batches * BATCH_SIZE)
            member = member_digest(f"m-{self.rng.randrange(1, self.sizes.members + 1)}")
            ip = f"10.{self.rng.randrange(256)}.{self.rng.randrange(256)}.{self.rng.randrange(256)}"
            device = f"dev-{self.rng.randrange(100_000)}"
            for observation in (
                Observation(ActorKind.IP, ip, False, 0, member),
                Observation(ActorKind.DEVICE, device, False, serial, member),
            ):
                tag = PARTITIONS.actor_tag(observation.actor)
                by_tag.setdefault(tag, []).append(observation)
        return [velocity.count(tag, o, now_s, policy) for tag, o in by_tag.items()]

    # -- bookkeeping ----------------------------------------------------------------------------

    def _add(
        self,
        tag: str,
        operation: str,
        what: str,
        prepare: Prepare,
        ops: int,
        counted: tuple[str, ...] = ("evalsha",),
    ) -> None:
        """An operation to measure at the next ``_run_pending``, in the order added."""
        self._pending.append((tag, operation, what, prepare, ops, counted))

    async def _run_pending(self) -> None:
        """Each operation added: a warm-up round (scripts loaded, caches filled) outside the
        windows, then its rounds."""
        pending, self._pending = self._pending, []
        for tag, operation, what, prepare, ops, counted in pending:
            warm = await prepare()
            await warm()
            windows = await self.rounds(prepare)
            self.figures[tag].append(figure(operation, what, windows, ops, counted))


def repeat(times: int, step: Callable[[], Awaitable[object]]) -> Prepare:
    """Rounds that await ``step`` ``times`` times (a worker's poll or reload)."""

    async def prepare() -> Work:
        async def work() -> None:
            for _ in range(times):
                await step()

        return work

    return prepare


def _cpu_us(windows: Sequence[Window], ops: int) -> float:
    return round(statistics.median(w.redis_cpu_s * 1e6 / ops for w in windows), 2)


def _distributor(number: int, side: int, updated_ms: int) -> Distributor:
    """Distributor ``number`` of a ``side`` x ``side`` grid of 0.5-degree squares."""
    cell = 0.5  # degrees
    west, south = 121.25 - cell * (side // 2), 31.05 - cell * (side // 2)
    lon, lat = west + cell * (number % side), south + cell * (number // side)
    ring = [[lon, lat], [lon + cell, lat], [lon + cell, lat + cell], [lon, lat + cell]]
    territory = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    return Distributor.create(f"D{number}", f"Distributor {number}", territory, updated_ms)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _local_noon(zone: ZoneInfo) -> int:
    """Noon of the current local day, inside the benchmark campaign's period (from yesterday,
    30 days): mid-day, so no guarantee is due and pacing has released 13/24 of each cap."""
    today = datetime.now(zone).date()
    return int(datetime(today.year, today.month, today.day, 12, tzinfo=zone).timestamp() * 1000)


def run(sizes: Sizes, quick: bool = False) -> dict[str, Any]:
    """Every measurement on a private Redis in a temporary folder, stopped at the end."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="scanward-hot-slots-") as folder:
        server = local_services.start_redis(Path(folder))
        try:
            result = asyncio.run(_measure_all(server.url, sizes))
        finally:
            server.stop()
    return {
        "benchmark": "hot_slots",
        **provenance(),
        "quick": quick,
        **result,
        "run_s": round(time.monotonic() - started, 1),
    }


async def _measure_all(url: str, sizes: Sizes) -> dict[str, Any]:
    bench = HotSlots(url, sizes)
    try:
        info = await bench.raw.info("server")
        setup_started = time.monotonic()
        await bench.setup()
        setup_s = time.monotonic() - setup_started
        await bench.codes()
        await bench.ship()
        await bench.rewards()
        await bench.partitions()
        memory = await bench.raw.info("memory")
    finally:
        await bench.close()
    return {
        "redis_version": info["redis_version"],
        "cpu_model": _cpu_model(),
        "sizes": dataclasses.asdict(sizes),
        "setup_s": round(setup_s, 1),
        "redis_used_memory_bytes": memory["used_memory"],
        "assumption": (
            "ceiling_per_s = 1e6 / us_per_op: operations per second on one Redis core when the "
            "slot's primary does nothing else; ceiling_per_s_cpu the same from Redis's whole CPU "
            "per operation at one call per round trip (request, reply, append-only file)"
        ),
        "polls_per_worker_per_s": {
            "{codes}": round(1 / VERIFIER_MAX_AGE_S),
            "{geo} and {ship}": round(1 / REFERENCE_MAX_AGE_S),
            "{rewards}": round(1 / CAMPAIGNS_MAX_AGE_S),
        },
        "slots": {tag: key_slot(tag.encode()) for tag in TAGS if tag != CAMP_TAG}
        | {f"{{camp:{HOT_CAMPAIGN}}}": key_slot(f"{{camp:{HOT_CAMPAIGN}}}".encode())},
        "tags": bench.figures,
        "draws": bench.draws,
        "partitioned": bench.partitioned,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small state, one round: does everything run"
    )
    args = parser.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes.default()
    result = run(sizes, args.quick)
    suffix = "-quick" if args.quick else ""
    publish(result, f"hot-slots-{time.strftime('%Y%m%d-%H%M%S')}{suffix}")


if __name__ == "__main__":
    main()
