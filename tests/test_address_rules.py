"""The rules that do not trust client ids, against real Redis: per client address (valid scans,
devices, scans without a device, a daily ceiling), per code (its scan count), guessing counted
in a sliding window and from code checks too, and whom a blocked shared address refuses."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from benchmarks import scan_memory
from fraud import velocity
from fraud.clones import overscan_flag
from fraud.errors import PolicyError
from fraud.policy import FraudPolicy
from fraud.velocity import ActorCounts, ActorKind, Observation, Refusal, address_actor
from ingest.config import Settings
from ingest.events.partitions import Partitions
from ingest.http.app import create_app
from ingest.scan.fraud_stage import KnownBlocks
from ingest.store.scripts import RedisPyCommands, ScriptRunner
from tests.helpers import AiohttpClient, batch_codes, order_shipped_batch

Client = TestClient[Any, Any]
DAY_S = 86_400
NOON = 20_000 * DAY_S + DAY_S // 2  # a UTC noon, in seconds
MEMBER = b"m" * 8


# --- pure -------------------------------------------------------------------------------------


def test_an_address_is_flagged_past_its_valid_scans_devices_or_scans_without_device() -> None:
    policy = FraudPolicy()
    for counts, reason, seen in (
        (ActorCounts(0, 0, 0, 0, valid_today=301), "valid_scans_per_day", 301),
        (ActorCounts(0, 0, 0, 0, devices_today=21), "devices_per_day", 21),
        (ActorCounts(0, 0, 0, 0, without_device_today=21), "scans_without_device_per_day", 21),
    ):
        flags = velocity.velocity_flags(velocity.NOT_OBSERVED, counts, policy)
        assert flags == [
            {
                "flag": "address_farm",
                "reason": reason,
                "count": seen,
                "limit": 300 if seen == 301 else 20,
            }
        ]
    at_limits = ActorCounts(0, 0, 0, 0, 300, 20, 20)
    assert velocity.velocity_flags(velocity.NOT_OBSERVED, at_limits, policy) == []


def test_a_code_scanned_past_the_limit_is_overscanned_whoever_scans_it() -> None:
    from fraud.scan_record import record_scan

    policy = FraudPolicy(code_max_scans=3)
    record = None
    flags = []
    for n in range(5):
        flags.append(overscan_flag(record, policy))
        record = record_scan(record, n, float("nan"), float("nan"), bytes(4), bytes(8))
    assert flags[:3] == [None, None, None]
    assert flags[3] == {"flag": "overscanned", "scans": 4, "limit": 3}


def test_ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() -> None:
    assert address_actor("203.0.113.9") == "203.0.113.9"
    assert address_actor("2001:db8:1:2:aaaa::1") == address_actor("2001:db8:1:2:bbbb::9")
    assert address_actor("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_actor("2001:db8:1:3::1") != address_actor("2001:db8:1:2::1")
    assert address_actor("::ffff:198.51.100.4") == "198.51.100.4"
    assert address_actor("") == ""


def test_the_shared_address_policy_is_a_choice() -> None:
    assert FraudPolicy.from_json('{"guess_ip_block": "everyone"}').guess_ip_block == "everyone"
    with pytest.raises(PolicyError, match="guess_ip_block must be one of everyone, new_devices"):
        FraudPolicy.from_json('{"guess_ip_block": "nobody"}')


def test_a_worker_remembers_at_most_its_capacity_of_blocks_forgetting_the_oldest() -> None:
    blocks = KnownBlocks(capacity=3)
    for n in range(5):  # all still running: the oldest are forgotten
        blocks.add(ActorKind.DEVICE, f"d{n}", 100.0, Refusal.GUESSING)
    blocks.add(ActorKind.DEVICE, "d2", 200.0, Refusal.GUESSING)  # renewed: now the newest
    blocks.add(ActorKind.IP, "198.51.100.9", 100.0, Refusal.CEILING)
    assert len(blocks) == 3
    assert [blocks.get(ActorKind.DEVICE, f"d{n}", 1.0) for n in range(5)] == [
        None,
        None,
        (200.0, Refusal.GUESSING),
        None,
        (100.0, Refusal.GUESSING),
    ]
    assert blocks.get(ActorKind.DEVICE, "d4", 100.0) is None  # ended: dropped
    assert len(blocks) == 2


# --- velocity.lua -----------------------------------------------------------------------------


Count = Callable[[list[Observation], int], Awaitable[list[ActorCounts]]]


@pytest.fixture
def count(redis_url: str) -> Callable[[FraudPolicy], Count]:
    partitions = Partitions()

    def with_policy(policy: FraudPolicy) -> Count:
        async def run(observations: list[Observation], now_s: int) -> list[ActorCounts]:
            redis = Redis.from_url(redis_url)
            try:
                runner = ScriptRunner(RedisPyCommands(redis))
                tag = partitions.actor_tag("one tag for all")
                [replies] = await runner.run_many(
                    [velocity.count(tag, observations, now_s, policy)]
                )
                assert isinstance(replies, list)
                return [ActorCounts.from_reply(r) for r in replies]
            finally:
                await redis.aclose()

        return run

    return with_policy


def _observed(address: str, serial: int, device: str) -> list[Observation]:
    """A scan as its address and its device (when it names one) made it; serial 0: invalid."""
    digest = device.encode().ljust(4, b"-")[:4] if device else velocity.NO_DEVICE
    seen = [Observation(ActorKind.IP, address, serial == 0, serial, MEMBER, digest)]
    if device:
        seen.append(Observation(ActorKind.DEVICE, device, serial == 0, serial, MEMBER))
    return seen


def _guess(address: str, device: str = "") -> list[Observation]:
    return _observed(address, 0, device)


def _valid(address: str, serial: int, device: str = "") -> list[Observation]:
    return _observed(address, serial, device)


@pytest.mark.redis
async def test_the_guessing_window_slides_so_a_boundary_lets_no_more_than_the_limit(
    count: Callable[[FraudPolicy], Count],
) -> None:
    run = count(FraudPolicy(guess_window_s=600, guess_block_ip=10))
    window_end = NOON - NOON % 600 + 599
    accepted = 0
    for now in [window_end] * 9 + [window_end + 1] * 9:  # 9 at a window's end, 9 right after
        [counts] = await run(_guess("198.51.100.1"), now)
        accepted += counts.blocked_s == 0
    assert accepted == 10  # the tenth blocks; fixed windows let all 18 through
    [later] = await run(_guess("198.51.100.1"), window_end + 1 + 900)  # the cool-down ended
    # half way through the next window: the 9 are out of it, the 1 after them counts half
    assert (later.blocked_s, later.invalid_this_window) == (0, 1)


@pytest.mark.redis
async def test_an_address_counts_valid_scans_devices_and_scans_without_device(
    count: Callable[[FraudPolicy], Count],
) -> None:
    run = count(FraudPolicy(address_flag_devices_per_day=3))
    for serial in range(1, 6):  # a fresh device each: counted exactly up to one past the limit
        ip, _ = await run(_valid("198.51.100.2", serial, f"d{serial}"), NOON)
    assert (ip.valid_today, ip.devices_today, ip.without_device_today) == (5, 4, 0)
    for serial in range(6, 9):
        [ip] = await run(_valid("198.51.100.2", serial), NOON)
    assert (ip.valid_today, ip.without_device_today) == (8, 3)
    [ip] = await run(_valid("198.51.100.2", 9), NOON + DAY_S)  # a new UTC day starts over
    assert (ip.valid_today, ip.devices_today, ip.without_device_today) == (1, 0, 1)


@pytest.mark.redis
async def test_past_its_daily_ceiling_an_address_is_refused_until_the_day_ends_and_kept_small(
    count: Callable[[FraudPolicy], Count], redis_url: str
) -> None:
    run = count(FraudPolicy(address_max_scans_per_day=5))
    for serial in range(1, 6):
        [ip] = await run(_valid("198.51.100.3", serial), NOON)
        assert ip.blocked_s == 0
    redis = Redis.from_url(redis_url)
    sizes = {k: await redis.memory_usage(k) async for k in redis.scan_iter("*:ip:*")}
    for serial in range(6, 50):  # invalid codes count toward the ceiling too
        [ip] = await run(
            _guess("198.51.100.3") if serial % 2 else _valid("198.51.100.3", serial), NOON
        )
        assert (ip.blocked_s, ip.refusal) == (DAY_S // 2, Refusal.CEILING)
    assert {k: await redis.memory_usage(k) async for k in redis.scan_iter("*:ip:*")} == sizes
    await redis.aclose()
    [ip] = await run(_valid("198.51.100.3", 50), NOON + DAY_S)
    assert (ip.blocked_s, ip.valid_today) == (0, 1)


@pytest.mark.redis
@pytest.mark.parametrize("scope", ["new_devices", "everyone"])
async def test_an_address_blocked_for_guessing_spares_devices_it_knows_only_if_told_so(
    count: Callable[[FraudPolicy], Count], scope: str
) -> None:
    run = count(FraudPolicy(guess_block_ip=3, guess_ip_block=scope))
    await run(_valid("198.51.100.4", 1, "home"), NOON)  # a phone of the household
    for _ in range(3):
        await run(_guess("198.51.100.4", "guesser"), NOON + 1)
    home_ip, _ = await run(_valid("198.51.100.4", 2, "home"), NOON + 2)
    home_guess, _ = await run(_guess("198.51.100.4", "home"), NOON + 2)
    new_ip, _ = await run(_valid("198.51.100.4", 3, "visitor"), NOON + 2)
    [no_device] = await run(_valid("198.51.100.4", 4), NOON + 2)
    assert (new_ip.refusal, new_ip.blocked_s) == (Refusal.GUESSING, 899)
    assert no_device.refusal == Refusal.GUESSING
    if scope == "new_devices":  # served and counted, its invalid codes too: no oracle
        assert (home_ip.blocked_s, home_ip.valid_today) == (0, 2)
        assert (home_guess.blocked_s, home_guess.invalid_this_window) == (0, 4)
    else:
        assert home_ip.refusal == home_guess.refusal == Refusal.GUESSING


@pytest.mark.redis
async def test_code_checks_count_toward_guessing_but_not_toward_the_daily_ceiling(
    count: Callable[[FraudPolicy], Count],
) -> None:
    run = count(FraudPolicy(guess_block_ip=3, address_max_scans_per_day=2))
    check = Observation(ActorKind.IP, "198.51.100.5", True, 0, velocity.NO_MEMBER, check=True)
    for _ in range(3):
        [counts] = await run([check], NOON)
        assert counts.blocked_s == 0
    [counts] = await run([check._replace(invalid=False)], NOON)
    assert counts.refusal == Refusal.GUESSING
    counted = await run([check._replace(actor="198.51.100.6")] * 5, NOON)
    assert [c.refusal for c in counted] == [Refusal.NONE] * 3 + [Refusal.GUESSING] * 2


# --- through the API --------------------------------------------------------------------------


@pytest.fixture
def start(
    aiohttp_client: AiohttpClient, settings: Settings
) -> Callable[[FraudPolicy], Awaitable[Client]]:
    async def started(policy: FraudPolicy) -> Client:
        app = create_app(
            dataclasses.replace(settings, fraud_policy=policy, trusted_proxies=("127.0.0.1",))
        )
        client: Client = await aiohttp_client(app)
        return client

    return started


async def _scan(client: Client, address: str, body: dict[str, object]) -> tuple[int, Any]:
    reply = await client.post("/v1/scans", json=body, headers={"X-Forwarded-For": address})
    return reply.status, await reply.json()


def _flag(answer: Any, name: str) -> dict[str, Any] | None:
    return next((f for f in answer.get("flags", ()) if f["flag"] == name), None)


@pytest.mark.redis
async def test_one_address_sending_valid_codes_with_fresh_ids_is_an_address_farm(
    start: Callable[[FraudPolicy], Awaitable[Client]], client: Client
) -> None:
    app = await start(FraudPolicy())
    batch = await order_shipped_batch(client, quantity=60)
    codes = await batch_codes(client, batch["batch_id"], limit=60)
    here = {"lat": 31.23, "lon": 121.47, "accuracy_m": 10}
    fresh = [
        await _scan(
            app, "203.0.113.7", {"code": c, **here, "device_id": f"d{n}", "member_id": f"m{n}"}
        )
        for n, c in enumerate(codes[:30])
    ]
    assert [s for s, _ in fresh] == [200] * 30
    assert [a["verdict"] for _, a in fresh] == ["genuine"] * 20 + ["suspicious"] * 10
    assert _flag(fresh[20][1], "address_farm") == {
        "flag": "address_farm",
        "reason": "devices_per_day",
        "count": 21,
        "limit": 20,
    }
    bare = [await _scan(app, "203.0.113.8", {"code": c}) for c in codes[30:55]]
    assert [a["verdict"] for _, a in bare] == ["genuine"] * 20 + ["suspicious"] * 5
    flagged = _flag(bare[-1][1], "address_farm") or {}
    assert flagged.get("reason") == "scans_without_device_per_day"


@pytest.mark.redis
async def test_a_code_scanned_too_often_without_device_or_location_is_overscanned(
    start: Callable[[FraudPolicy], Awaitable[Client]], client: Client
) -> None:
    app = await start(FraudPolicy())
    batch = await order_shipped_batch(client, quantity=1)
    [code] = await batch_codes(client, batch["batch_id"], limit=1)
    answers = [await _scan(app, f"203.0.113.{n}", {"code": code}) for n in range(52)]
    assert [a["verdict"] for _, a in answers] == ["genuine"] * 50 + ["suspicious"] * 2
    assert _flag(answers[50][1], "overscanned") == {
        "flag": "overscanned",
        "scans": 51,
        "limit": 50,
    }


@pytest.mark.redis
async def test_code_checks_count_toward_the_guessing_limit_and_a_block_refuses_every_check(
    start: Callable[[FraudPolicy], Awaitable[Client]], client: Client
) -> None:
    app = await start(FraudPolicy(guess_block_ip=5))
    batch = await order_shipped_batch(client, quantity=1)
    [valid] = await batch_codes(client, batch["batch_id"], limit=1)
    guesser = {"X-Forwarded-For": "203.0.113.20"}
    statuses = []
    for n in range(6):
        reply = await app.get(f"/v1/codes/0000000000000000000{n}", headers=guesser)
        statuses.append(reply.status)
    assert statuses == [200] * 5 + [429]  # the fifth invalid code blocks the address
    refused = await app.get(f"/v1/codes/{valid}", headers=guesser)
    assert refused.status == 429
    assert (await refused.json())["error"]["code"] == "too_many_invalid_codes"
    status, _ = await _scan(app, "203.0.113.20", {"code": valid})
    assert status == 429  # the same address's scans: the same counter
    other = await app.get(f"/v1/codes/{valid}", headers={"X-Forwarded-For": "203.0.113.21"})
    assert other.status == 200
    assert (await other.json())["valid"] is True


@pytest.mark.redis
@pytest.mark.parametrize(("scope", "household_status"), [("new_devices", 200), ("everyone", 429)])
async def test_one_guesser_behind_a_shared_address_locks_out_whom_the_policy_says(
    start: Callable[[FraudPolicy], Awaitable[Client]],
    client: Client,
    scope: str,
    household_status: int,
) -> None:
    app = await start(FraudPolicy(guess_block_ip=5, guess_block_device=100, guess_ip_block=scope))
    batch = await order_shipped_batch(client, quantity=3)
    codes = await batch_codes(client, batch["batch_id"], limit=3)
    router = "203.0.113.30"
    assert (await _scan(app, router, {"code": codes[0], "device_id": "mum"}))[0] == 200
    for n in range(5):
        await _scan(app, router, {"code": f"0000000000000000000{n}", "device_id": "guesser"})
    household, _ = await _scan(app, router, {"code": codes[1], "device_id": "mum"})
    again, _ = await _scan(app, router, {"code": codes[2], "device_id": "mum"})  # worker knows
    visitor, refusal = await _scan(app, router, {"code": codes[1], "device_id": "visitor"})
    assert (household, again) == (household_status, household_status)
    assert visitor == 429
    assert refusal["error"]["code"] == "too_many_invalid_codes"


@pytest.mark.redis
async def test_a_device_a_blocked_address_spares_is_still_held_to_its_own_guessing_limit(
    start: Callable[[FraudPolicy], Awaitable[Client]], client: Client, redis_url: str
) -> None:
    app = await start(FraudPolicy(guess_block_ip=5, guess_block_device=3, guess_flag_device=1))
    batch = await order_shipped_batch(client, quantity=1)
    [code] = await batch_codes(client, batch["batch_id"], limit=1)
    router = "203.0.113.32"
    assert (await _scan(app, router, {"code": code, "device_id": "mum"}))[0] == 200
    for n in range(5):
        await _scan(app, router, {"code": f"0000000000000000010{n}", "device_id": f"g{n}"})
    visitor, _ = await _scan(app, router, {"code": code, "device_id": "visitor"})
    assert visitor == 429  # the worker now knows the address is blocked
    guesses = [
        await _scan(app, router, {"code": f"0000000000000000020{n}", "device_id": "mum"})
        for n in range(5)
    ]
    assert [status for status, _ in guesses] == [200, 200, 200, 429, 429]  # as anywhere else
    assert (_flag(guesses[1][1], "guessing") or {}).get("actor") == "device"
    redis = Redis.from_url(redis_url)
    keys_before = await redis.dbsize()
    for n in range(5):  # fresh ids behind the blocked address add nothing to Redis
        fresh: dict[str, object] = {"code": f"0000000000000000030{n}", "device_id": f"fresh{n}"}
        assert (await _scan(app, router, fresh))[0] == 429
    assert await redis.dbsize() == keys_before
    await redis.aclose()


@pytest.mark.redis
async def test_past_the_daily_ceiling_scans_are_refused_and_leave_nothing_in_redis(
    start: Callable[[FraudPolicy], Awaitable[Client]], client: Client, redis_url: str
) -> None:
    app = await start(FraudPolicy(address_max_scans_per_day=3))
    batch = await order_shipped_batch(client, quantity=10)
    codes = await batch_codes(client, batch["batch_id"], limit=10)
    for code in codes[:3]:
        assert (await _scan(app, "203.0.113.40", {"code": code, "scan_id": code}))[0] == 200
    first = await _scan(app, "203.0.113.40", {"code": codes[3], "device_id": "fresh"})
    assert first[0] == 429  # its device's counters may be kept: asked in the same round trip
    redis = Redis.from_url(redis_url)
    keys_before = await redis.dbsize()
    refused = [
        await app.post(
            "/v1/scans",
            json={
                "code": code,
                "scan_id": f"s{n}",
                "device_id": f"fresh-{n}",
                "member_id": f"m{n}",
            },
            headers={"X-Forwarded-For": "203.0.113.40"},
        )
        for n, code in enumerate(codes[4:])
    ]
    assert [r.status for r in refused] == [429] * 6
    answer = await refused[0].json()
    assert answer["error"]["code"] == "too_many_scans"
    assert 0 < int(refused[0].headers["Retry-After"]) <= DAY_S
    assert await redis.dbsize() == keys_before
    await redis.aclose()


@pytest.mark.redis
async def test_every_key_an_anonymous_scan_creates_expires_or_is_bounded_by_issued_codes(
    start: Callable[[FraudPolicy], Awaitable[Client]], client: Client, redis_url: str
) -> None:
    app = await start(FraudPolicy())
    batch = await order_shipped_batch(client, quantity=2)
    codes = await batch_codes(client, batch["batch_id"], limit=2)
    redis = Redis.from_url(redis_url)
    before = {key async for key in redis.scan_iter()}
    for n, code in enumerate([*codes, "0" * 20]):
        fresh = {"scan_id": f"s{n}", "device_id": f"d{n}", "member_id": f"m{n}"}
        located = {"lat": 31.2, "lon": 121.4} if n else {}
        assert (await _scan(app, "203.0.113.50", {"code": code, **fresh, **located}))[0] == 200
    created = {key.decode() async for key in redis.scan_iter()} - {k.decode() for k in before}
    families = {key.split("}:")[1].split(":")[0] for key in created}
    # the codes' records and bitmaps are bounded by the codes issued; the events by the backlog
    assert families == {"sid", "dev", "ip", "rec", "seen", "events", "unsunk"}
    for key in created:
        if key.split("}:")[1].split(":")[0] in ("sid", "dev", "ip"):
            assert 0 < await redis.ttl(key) <= 2 * DAY_S, key
    await redis.aclose()


@pytest.mark.redis
async def test_the_memory_benchmark_measures_anonymous_requests_and_states_the_ceiling(
    redis_url: str, tmp_path: Path
) -> None:
    figures = await scan_memory.measure_requests(redis_url, tmp_path, 40)
    for kind in ("valid_located", "valid_no_location", "invalid"):
        measured = figures["requests"][kind]
        assert measured["statuses"] == {"200": 40}
        assert measured["bytes_per_request_by_family"]["sid"] > 0  # a fresh scan_id each
        assert measured["bytes_per_request_by_family"]["dev"] > 0  # a fresh device each
    worst = figures["worst_used_memory_per_request"]
    assert figures["ceiling_per_address_per_day_bytes"] == round(worst * 5_000)
