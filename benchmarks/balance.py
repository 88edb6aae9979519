"""Balance: how evenly the scan state, its memory and its Redis CPU spread over a cluster's masters.

For a local Redis Cluster of 3 masters, then of 6 (no replicas, slots as ``redis-cli --cluster
create`` assigns them), ``scanward serve`` (one worker, no ClickHouse, no sink) runs with
``SCANWARD_SCAN_PARTITIONS=48`` and ``SCANWARD_ACTOR_PARTITIONS=12`` (multiples of both master
counts) and trusts 127.0.0.0/8 for ``X-Forwarded-For``. The script orders one batch that goes
round the 48 scan partitions ``laps`` times (``laps`` x 48 x 65,472 codes: a partition holds a
serial's 65,472-serial range, ``ingest.scan.state``), fetches a stratified random sample of its
codes (``GET /v1/batches/{id}/codes?offset=&limit=``: ``chunks_per_range`` runs of ``chunk``
codes at random offsets in each range, in proportion to the range's share of the batch) and
scans them over HTTP with ``benchmarks.open_loop`` at a fixed rate (its mix: ~28% repeats, ~2%
unknown codes, 100,000 devices, 65,536 client addresses). Then, per master:

- ``scan_keys``: keys whose name starts with ``{scans:`` (SCAN MATCH on the master itself);
- ``scan_key_memory``: their ``MEMORY USAGE`` (SAMPLES 0: exact) summed, also by kind (``seen``,
  ``rec``, ``events``...: the event streams keep every scan's event, no sink runs);
- ``redis_cpu``: CPU seconds of the master's redis-server process (``/proc/<pid>/stat``) from
  just before the load to its last answer;
- ``old_scheme_partitions``: for contrast, computed offline on the live slot map (CLUSTER SLOTS):
  how many of the 16 tags ``{scans:N}`` used before spread partitions would sit on the master.

Each figure comes with its share of the masters' total and its deviation from an even spread,
``share x masters - 1`` in %; the issue's goal is within +-10% for 3 and 6 masters.

``python -m benchmarks.balance [--quick] [--masters 3 6] [--laps N] [--rate R] [--seconds S]``
prints one JSON document and saves it as ``benchmarks/results/balance-<stamp>.json`` (not with
``--no-save``). The default run takes under a minute; ``--quick`` (tiny sample and load, about
12 s) checks that everything runs. Traffic goes to 127.0.0.1 only; every process it starts is
stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import random
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from benchmarks import campaign_bench, open_loop
from benchmarks.crash_bench import GTIN, call, redis_version
from benchmarks.failover_bench import SlotRange, slot_ranges
from benchmarks.process_cpu import processes_cpu_seconds
from benchmarks.report import print_or_publish, provenance
from benchmarks.stack import SECRET, process, scanward, wait_healthy
from codes.keyring import Keyring
from ingest.config import Settings
from ingest.events.partitions import Partitions
from ingest.ops import local_services
from ingest.ops.local_services import RedisClusterServers
from ingest.scan.state import SEEN_RANGE
from ingest.store.layout import LAYOUT_KEY

PARTITIONS = Partitions(scans=48, actors=12)
OLD_SCAN_TAGS = tuple(f"{{scans:{n}}}" for n in range(16))
"""The scan partitions' tags before they were spread over the slot space."""
SCAN_KEYS = "{scans:*"
GOAL_PCT = 10.0
SKU = "BALANCE"
CONNECTIONS = 64
MEMORY_PIPELINE = 1_000
"""MEMORY USAGE commands per round trip."""
LOAD_KEYS = ("offered_per_s", "sent", "completed", "achieved_per_s", "errors", "non_2xx", "p99_ms")


@dataclasses.dataclass(frozen=True, slots=True)
class Sizes:
    """What one run orders, samples and scans, on each cluster size of ``masters``."""

    masters: tuple[int, ...]
    laps: int
    """Times the batch goes round the scan partitions."""
    chunks_per_range: int
    """Runs of codes fetched per 65,472-serial range (fewer in a range the batch holds part of)."""
    chunk: int
    """Consecutive codes per run."""
    rate: int
    """Scans offered per second."""
    seconds: float
    """Of offered load."""

    @property
    def quantity(self) -> int:
        return self.laps * PARTITIONS.scans * SEEN_RANGE

    @property
    def scans(self) -> int:
        return open_loop.request_count(self.rate, self.seconds)


FULL = Sizes((3, 6), laps=2, chunks_per_range=40, chunk=8, rate=2_000, seconds=15.0)
QUICK = Sizes((3, 6), laps=1, chunks_per_range=2, chunk=4, rate=300, seconds=1.5)


# --- the figures -----------------------------------------------------------------------------


def spread(values: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Each master's value, its share of the total and its deviation from an even share
    (``share x masters - 1``, in %)."""
    total = sum(values.values())
    masters = len(values)
    spread_out = {}
    for master, value in values.items():
        share = value / total if total else 0.0
        spread_out[master] = {
            "value": round(value, 3),
            "share": round(share, 4),
            "deviation_pct": round((share * masters - 1) * 100, 1),
        }
    return spread_out


def owner_of_slots(ranges: Sequence[SlotRange]) -> list[str]:
    """The primary of each slot."""
    owners = [""] * REDIS_CLUSTER_HASH_SLOTS
    for span in ranges:
        owners[span.first : span.last + 1] = [span.primary] * (span.last - span.first + 1)
    return owners


def tags_per_master(
    tags: Sequence[str], owners: Sequence[str], primaries: Sequence[str]
) -> dict[str, int]:
    """How many of ``tags`` each primary holds."""
    held = Counter(owners[key_slot(tag.encode())] for tag in tags)
    return {primary: held[primary] for primary in primaries}


def scan_keys(primary: str) -> tuple[int, int, dict[str, int]]:
    """The ``{scans:`` keys a primary holds: their count, their memory (bytes) and that memory
    by kind (the name's part after the tag, up to the next colon)."""
    keys, memory, by_kind = 0, 0, Counter[str]()
    with redis.Redis.from_url(primary) as client:
        batch: list[bytes] = []

        def weigh() -> None:
            nonlocal memory
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.memory_usage(key, samples=0)
            for key, used in zip(batch, pipe.execute(), strict=True):
                size = int(used or 0)
                memory += size
                by_kind[key.split(b"}:", 1)[-1].split(b":", 1)[0].decode()] += size
            batch.clear()

        for key in client.scan_iter(match=SCAN_KEYS, count=1_000):
            keys += 1
            batch.append(cast(bytes, key))
            if len(batch) == MEMORY_PIPELINE:
                weigh()
        weigh()
    return keys, memory, dict(sorted(by_kind.items()))


def recorded_layout(ranges: Sequence[SlotRange]) -> Any:
    """The partition counts the API recorded in Redis at its start."""
    owner = owner_of_slots(ranges)[key_slot(LAYOUT_KEY.encode())]
    with redis.Redis.from_url(owner) as client:
        stored = client.get(LAYOUT_KEY)
    return orjson.loads(cast(bytes, stored)) if stored else None


# --- the stack and the load ------------------------------------------------------------------


@contextlib.contextmanager
def serving(folder: Path, cluster: RedisClusterServers, quantity: int) -> Iterator[str]:
    """``scanward serve`` (one worker) on ``cluster`` with the benchmark's partitions, batches
    of up to ``quantity`` codes allowed; its URL once healthy."""
    Keyring.new().save(folder / "keyring.bin", SECRET)
    port = local_services.free_port()
    env = {
        "SCANWARD_DATA_DIR": str(folder),
        "SCANWARD_KEYRING_SECRET": SECRET,
        "SCANWARD_REDIS_URL": cluster.url,
        "SCANWARD_PORT": str(port),
        "SCANWARD_ADMIN_TOKEN": campaign_bench.ADMIN_TOKEN,
        "SCANWARD_TRUSTED_PROXIES": "127.0.0.0/8",
        "SCANWARD_SCAN_PARTITIONS": str(PARTITIONS.scans),
        "SCANWARD_ACTOR_PARTITIONS": str(PARTITIONS.actors),
        "SCANWARD_MAX_BATCH_QUANTITY": str(max(quantity, Settings().max_batch_quantity)),
    }
    with process(scanward("serve", "--workers", "1"), env):
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        yield url


def sample_codes(
    url: str, batch: Mapping[str, Any], sizes: Sizes, chance: random.Random
) -> list[str]:
    """Runs of ``sizes.chunk`` codes at random offsets of each 65,472-serial range of the batch,
    ``sizes.chunks_per_range`` per whole range (in proportion for a part), shuffled."""
    first, last = int(batch["first_serial"]), int(batch["last_serial"])
    codes: set[str] = set()
    for number in range(first // SEEN_RANGE, last // SEEN_RANGE + 1):
        low = max(first, number * SEEN_RANGE)
        high = min(last, number * SEEN_RANGE + SEEN_RANGE - 1)
        runs = round(sizes.chunks_per_range * (high - low + 1) / SEEN_RANGE)
        for _ in range(runs if high - low + 1 >= sizes.chunk else 0):
            offset = chance.randint(low, high - sizes.chunk + 1) - first
            path = f"/v1/batches/{batch['batch_id']}/codes?offset={offset}&limit={sizes.chunk}"
            codes.update(str(call(url, path)).split())
    sample = sorted(codes)
    chance.shuffle(sample)
    return sample


def run_cluster(masters: int, sizes: Sizes, seed: int) -> dict[str, Any]:
    """One cluster of ``masters`` primaries: the load, then each master's figures."""
    started = time.monotonic()
    chance = random.Random(seed + masters)
    with tempfile.TemporaryDirectory(prefix=f"scanward-balance-{masters}-") as temporary:
        folder = Path(temporary)
        cluster = local_services.start_redis_cluster(folder, masters=masters, replicas=0)
        try:
            with serving(folder, cluster, sizes.quantity) as url:
                body = {"sku": SKU, "gtin": GTIN, "quantity": sizes.quantity}
                batch = call(url, "/v1/batches", "POST", body)
                codes = sample_codes(url, batch, sizes, chance)
                requests = open_loop.build_requests(
                    codes, sizes.scans, urlsplit(url).netloc, seed=seed + masters
                )
                primaries = cluster.primaries()
                pids = {primary: cluster.node(primary).pid for primary in primaries}
                before = processes_cpu_seconds(pids)
                load = open_loop.measure(url, sizes.rate, sizes.seconds, CONNECTIONS, requests)
                after = processes_cpu_seconds(pids)
            ranges = slot_ranges(cluster)
            layout = recorded_layout(ranges)
            counted = {primary: scan_keys(primary) for primary in primaries}
        finally:
            cluster.stop()
    owners = owner_of_slots(ranges)
    new_tags = [PARTITIONS.scan_tag(p) for p in range(PARTITIONS.scans)]
    figures = {
        "scan_partitions": spread(tags_per_master(new_tags, owners, primaries)),
        "scan_keys": spread({p: counted[p][0] for p in primaries}),
        "scan_key_memory": spread({p: counted[p][1] for p in primaries}),
        "redis_cpu": spread({p: after[p] - before[p] for p in primaries}),
        "old_scheme_partitions": spread(tags_per_master(OLD_SCAN_TAGS, owners, primaries)),
    }
    worst = {
        name: max(abs(row["deviation_pct"]) for row in rows.values())
        for name, rows in figures.items()
    }
    return {
        "masters": masters,
        "layout_recorded": layout,
        "batch": {
            key: batch[key] for key in ("batch_id", "first_serial", "last_serial", "quantity")
        },
        "sampled_codes": len(codes),
        "load": {key: load[key] for key in LOAD_KEYS},
        "per_master": [
            {
                "primary": local_services.masked_url(primary),
                "slots": [[r.first, r.last] for r in ranges if r.primary == primary],
                **{name: rows[primary] for name, rows in figures.items()},
                "scan_key_memory_by_kind": counted[primary][2],
            }
            for primary in primaries
        ],
        "max_abs_deviation_pct": worst,
        "within_goal": all(
            worst[name] <= GOAL_PCT for name in ("scan_keys", "scan_key_memory", "redis_cpu")
        ),
        "run_s": round(time.monotonic() - started, 1),
    }


def run(sizes: Sizes, quick: bool, seed: int) -> dict[str, Any]:
    started = time.monotonic()
    clusters = [run_cluster(masters, sizes, seed) for masters in sizes.masters]
    return {
        "benchmark": "balance",
        **provenance(),
        "redis": redis_version(),
        "quick": quick,
        "sizes": dataclasses.asdict(sizes) | {"quantity": sizes.quantity, "scans": sizes.scans},
        "partitions": {"scans": PARTITIONS.scans, "actors": PARTITIONS.actors},
        "old_scheme_tags": len(OLD_SCAN_TAGS),
        "goal_pct": GOAL_PCT,
        "table": [
            {"masters": c["masters"], **c["max_abs_deviation_pct"], "within_goal": c["within_goal"]}
            for c in clusters
        ],
        "clusters": clusters,
        "run_s": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.balance", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sample and load")
    parser.add_argument("--masters", type=int, nargs="+", help="cluster sizes (default 3 6)")
    parser.add_argument("--laps", type=int, help="times the batch goes round the partitions")
    parser.add_argument("--rate", type=int, help="scans offered per second")
    parser.add_argument("--seconds", type=float, help="of offered load")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-save", action="store_true", help="print, do not save the report")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    changes = {
        "masters": None if args.masters is None else tuple(args.masters),
        "laps": args.laps,
        "rate": args.rate,
        "seconds": args.seconds,
    }
    sizes = dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})
    if min(sizes.masters) < 3 or min(sizes.laps, sizes.rate, sizes.seconds) <= 0:
        parser.error("--masters must be 3 or more; --laps, --rate and --seconds positive")
    result = run(sizes, args.quick, args.seed)
    print_or_publish(result, "balance", save=not args.no_save, quick=args.quick)


if __name__ == "__main__":
    main()
