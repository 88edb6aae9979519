"""What an open prize campaign costs the scan path: interleaved scan benchmarks with and without.

``python -m benchmarks.campaign_bench --pairs 3`` runs ``benchmarks.scan_bench`` 2 x 3 times,
alternating (none, campaign, campaign, none, none, campaign: drift on a shared machine falls on
both), each on its own fresh stack, with 1,000 territories and the codes shipped (by default)
so that the scans are genuine. Both variants send the same load: every scan carries a
``member_id`` from the same pool and the same share of members has a tier, so the difference is
the campaign alone. With ``--campaign`` (here, or given to ``scan_bench`` itself) the run PUTs
``CAMPAIGN_ID`` through the admin API: five prizes of every kind covering the benchmark's SKU,
budgets and daily caps far above what a run gives out, so every first genuine scan of a code by
a member draws. Prints one JSON summary (the medians of the same-run ceiling ratios and their
ratio, issue goal >= 0.85) and saves it, with each run, under ``benchmarks/results/``.

The rest of this module is what ``scan_bench`` uses for the campaign: its body, the members'
tiers, and the campaign's counters read from Redis around the peak.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import redis

from benchmarks.report import provenance, publish
from rewards import members
from rewards.store import campaign_key

CAMPAIGN_ID = "bench"
ADMIN_TOKEN = "bench-admin-token-0123456789"
TIER_SHARES = {1: 0.20, 2: 0.10, 3: 0.06, 4: 0.04}
"""The share of the member pool at each tier above 0 (the rest have none: tier 0)."""
GOAL_RATIO = 0.85
_WEIGHTS = {"1": 1.25, "2": 1.5, "3": 2.0, "4": 2.5}


def campaign_body(sku: str) -> dict[str, Any]:
    """Open since yesterday for 30 days on ``sku``: points, cash and an item for tier 2 and up
    with a guaranteed daily count. A tier-4 member wins with probability ~0.23, tier 0 ~0.09."""
    now = datetime.now(UTC)
    return {
        "name": "Benchmark campaign",
        "start": (now - timedelta(days=1)).isoformat(),
        "end": (now + timedelta(days=30)).isoformat(),
        "timezone": "Asia/Shanghai",
        "skus": [sku],
        "member_daily_win_limit": 3,
        "prizes": [
            _prize("points-10", "points", 10, 0.08, 50_000_000, 5_000_000),
            _prize("red-envelope-2", "cash", 200, 0.01, 10_000_000, 1_000_000),
            _prize("points-500", "points", 500, 0.002, 2_000_000, 200_000),
            _prize("cash-88", "cash", 8_800, 0.0002, 500_000, 50_000),
            {
                **_prize("gift-box", "item", 1, 0.0005, 1_000_000, 100_000),
                "min_tier": 2,
                "guaranteed_daily": 20,
                "tier_weights": {"3": 2.0, "4": 4.0},
            },
        ],
    }


def _prize(
    prize_id: str, kind: str, value: int, probability: float, budget: int, daily_cap: int
) -> dict[str, Any]:
    return {
        "id": prize_id,
        "kind": kind,
        "value": value,
        "total_budget": budget,
        "daily_cap": daily_cap,
        "base_probability": probability,
        "tier_weights": _WEIGHTS,
    }


def put_campaign(url: str, sku: str) -> dict[str, Any]:
    """The campaign PUT through the admin API, as an operator would."""
    request = urllib.request.Request(
        f"{url}/v1/campaigns/{CAMPAIGN_ID}",
        data=orjson.dumps(campaign_body(sku)),
        method="PUT",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return cast(dict[str, Any], orjson.loads(reply.read()))


def show_campaign(url: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/v1/campaigns/{CAMPAIGN_ID}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return cast(dict[str, Any], orjson.loads(reply.read()))


def give_tiers(client: redis.Redis, pool: int, seed: int = 7) -> dict[int, int]:
    """Tiers for a share of members ``m-1 .. m-<pool>`` (the load's ids), written with the
    commands ``PUT /v1/members/{id}`` runs; returns how many members got each tier."""
    rng = random.Random(seed)
    thresholds, total = [], 0.0
    for tier, share in sorted(TIER_SHARES.items()):
        total += share
        thresholds.append((total, tier))
    given = dict.fromkeys(TIER_SHARES, 0)
    pipe = client.pipeline(transaction=False)
    for number in range(1, pool + 1):
        pick = rng.random()
        tier = next((t for limit, t in thresholds if pick < limit), 0)
        if tier:
            given[tier] += 1
            command, key, member_id, text = members.set_tier(f"m-{number}", tier)
            assert command == "HSET"
            pipe.hset(key, member_id, text)
        if len(pipe) >= 10_000:
            pipe.execute()
    pipe.execute()
    return given


def counters(client: redis.Redis) -> dict[str, Any]:
    """Draws made so far (the campaign's draw counter) and prizes given out, by prize."""
    seq = client.get(campaign_key(CAMPAIGN_ID, "seq"))
    awarded = cast(dict[bytes, bytes], client.hgetall(campaign_key(CAMPAIGN_ID, "awarded")))
    return {
        "draws": int(cast(bytes, seq) or 0),
        "awarded": {name.decode(): int(count) for name, count in awarded.items()},
    }


def between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    names = sorted(set(before["awarded"]) | set(after["awarded"]))
    awarded = {n: after["awarded"].get(n, 0) - before["awarded"].get(n, 0) for n in names}
    return {
        "draws": after["draws"] - before["draws"],
        "awards": sum(awarded.values()),
        "awarded": awarded,
    }


def main(argv: list[str] | None = None) -> None:
    from benchmarks import scan_bench  # scan_bench imports this module

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    scan_bench.add_arguments(parser)
    parser.set_defaults(territories=1_000)  # shipped codes: genuine scans, which draw
    args = parser.parse_args(argv)
    if not args.territories:
        parser.error("--territories must be at least 1: unshipped codes never draw")
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for pair in range(args.pairs):
        order = (False, True) if pair % 2 == 0 else (True, False)
        for with_campaign in order:
            args.campaign = with_campaign
            result = scan_bench.run(args)
            scan_bench.publish_run(result, args)
            runs[with_campaign].append(result)
    publish(summary(runs, args), f"campaign-{time.strftime('%Y%m%d-%H%M%S')}-w{args.workers}")


def summary(runs: dict[bool, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    def variant(results: list[dict[str, Any]]) -> dict[str, Any]:
        ratios = [r["ceiling_ratio"] for r in results]
        return {
            "runs": [
                {
                    "scans_per_s": r["peak"]["per_s"],
                    "ceiling_per_s": r["ceiling"]["per_s"],
                    "ceiling_ratio": r["ceiling_ratio"],
                    "cpu_us_per_scan": r["cpu_us_per_scan"],
                    "p99_ms": r["peak"]["p99_ms"],
                    "mean_batch": r["mean_batch_at_peak"],
                    **({"peak_draws": r["campaign"]["peak"]} if r.get("campaign") else {}),
                }
                for r in results
            ],
            "median_scans_per_s": statistics.median(r["peak"]["per_s"] for r in results),
            "median_ceiling_per_s": statistics.median(r["ceiling"]["per_s"] for r in results),
            "median_ceiling_ratio": statistics.median(ratios),
            "median_cpu_us_per_scan": {
                name: statistics.median(r["cpu_us_per_scan"][name] for r in results)
                for name in results[0]["cpu_us_per_scan"]
            },
        }

    without, with_campaign = variant(runs[False]), variant(runs[True])
    ratio = with_campaign["median_ceiling_ratio"] / without["median_ceiling_ratio"]
    raw = with_campaign["median_scans_per_s"] / without["median_scans_per_s"]
    return {
        "benchmark": "campaign_cost",
        **provenance(),
        "workers": args.workers,
        "connections": args.connections,
        "duration_s": args.duration,
        "members": args.members,
        "without_campaign": without,
        "with_campaign": with_campaign,
        "ratio_of_median_ceiling_ratios": round(ratio, 3),
        "ratio_of_median_scans_per_s": round(raw, 3),
        "goal": {"ratio_min": GOAL_RATIO, "met": ratio >= GOAL_RATIO},
    }


if __name__ == "__main__":
    main()
