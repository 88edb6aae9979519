"""Liveness and readiness for load balancers and `scanward up`; metrics for Prometheus (with a
token of the metrics role)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar, cast

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from ingest import metrics
from ingest.events.partitions import Partitions
from ingest.http.auth import bearer_token, requires
from ingest.http.responses import json_response
from ingest.http.state import CAMPAIGNS, REDIS, SETTINGS, TOKENS
from ingest.http.tokens import Role
from ingest.scan.reward_stage import CAMPAIGNS_MAX_AGE_S
from ingest.scan.state import unsunk_limit_per_partition
from ingest.sink import CHANGE_STREAMS, STATS_KEY, lease_key
from ingest.store.scripts import AsyncRedis
from ingest.warehouse import connect, describe, open_alert_counts
from rewards import status, store

routes = web.RouteTableDef()

CLICKHOUSE_TIMEOUT_S = 2
SINK_STALLED_S = 60
Answer = TypeVar("Answer")


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.StreamResponse:
    """503 only when scans cannot be answered at all (Redis down). ``degraded`` when they are
    answered but not all is well: ClickHouse down, a partition's backlog at its bound (its scans
    get 503), or events waiting while the sink has not inserted for a minute.

    Anyone sees the status and each component's state in a word; only an admin token also sees
    the errors, backlogs, sinks and partitions (the status code is the same for both)."""
    settings = request.app[SETTINGS]
    admin = await _is_admin(request)
    try:
        partitions, sink = await _backlog_and_sink(request.app[REDIS], settings.partitions)
        unsunk_draws = await _unsunk_draws(request.app)
        unsunk_changes = await _unsunk_changes(request.app[REDIS])
    except RedisError as error:
        redis = str(error) if admin else "unavailable"
        return json_response({"status": "unavailable", "redis": redis}, status=503)
    clickhouse = await _clickhouse_status(settings.clickhouse_url)
    limit = unsunk_limit_per_partition(settings.max_unsunk_events, settings.partitions)
    unsunk = sum(p.unsunk_events for p in partitions)
    full_partitions = sum(p.unsunk_events >= limit for p in partitions)
    sink_stalled = unsunk > 0 and sink.get("seconds_since_insert", 0) > SINK_STALLED_S
    healthy = clickhouse in ("ok", "not configured") and not full_partitions and not sink_stalled
    overall = "ok" if healthy else "degraded"
    if not admin:
        return json_response(
            {
                "status": overall,
                "redis": "ok",
                "clickhouse": clickhouse.partition(":")[0],
                "backlog": "full" if full_partitions else "ok",
                "sink": "stalled" if sink_stalled else "ok",
            }
        )
    body = {
        "status": overall,
        "pid": os.getpid(),
        "redis": "ok",
        "clickhouse": clickhouse,
        "unsunk_events": unsunk,
        "unsunk_draws": unsunk_draws,
        "unsunk_changes": unsunk_changes,
        "full_partitions": full_partitions,
        "sink": sink,
        "partitions": [p._asdict() for p in partitions],
    }
    return json_response(body)


async def _is_admin(request: web.Request) -> bool:
    """Whether the request carries an admin token; a token Redis cannot check is no admin's."""
    token = bearer_token(request)
    if token is None:
        return False
    try:
        role = await request.app[TOKENS].role_of(token)
    except RedisError:
        return False
    return role is Role.ADMIN


@routes.get("/metrics")
@requires(Role.METRICS)
async def metrics_endpoint(request: web.Request) -> web.StreamResponse:
    """Prometheus' scrape, for a metrics or admin token: it shows the prize budgets left and
    the sinks. While Redis is down it still answers, with ``scanward_redis_up 0``."""
    settings = request.app[SETTINGS]
    metrics.publish_request_metrics()
    limit = unsunk_limit_per_partition(settings.max_unsunk_events, settings.partitions)
    live: dict[str, tuple[str, float | metrics.LabelledValues]] = {
        "scanward_partition_unsunk_events_limit": (_PARTITION_LIMIT_HELP, limit)
    }
    try:
        partitions, sink = await _backlog_and_sink(request.app[REDIS], settings.partitions)
        unsunk_draws = await _unsunk_draws(request.app)
        unsunk_changes = await _unsunk_changes(request.app[REDIS])
        budgets = await _prize_budgets(request.app)
    except RedisError:
        live["scanward_redis_up"] = (_REDIS_UP_HELP, 0)  # the rest is still worth a scrape
    else:
        live["scanward_redis_up"] = (_REDIS_UP_HELP, 1)
        live["scanward_unsunk_events"] = (_BACKLOG_HELP, sum(p.unsunk_events for p in partitions))
        live["scanward_partition_unsunk_events"] = (
            _PARTITION_BACKLOG_HELP,
            [({"partition": str(p.partition)}, p.unsunk_events) for p in partitions],
        )
        live["scanward_partition_sink"] = (
            _PARTITION_SINK_HELP,
            [({"partition": str(p.partition), "sink": p.sink}, 1) for p in partitions if p.sink],
        )
        live["scanward_unsunk_draws"] = (_DRAW_BACKLOG_HELP, unsunk_draws)
        live["scanward_unsunk_changes"] = (_CHANGE_BACKLOG_HELP, unsunk_changes)
        for field, help_text in _SINK_GAUGES.items():
            if field in sink:
                live[f"scanward_sink_{field}"] = (help_text, sink[field])
        live["scanward_prize_budget"] = (_BUDGET_HELP, [(p, total) for p, total, _ in budgets])
        live["scanward_prize_remaining_budget"] = (
            _REMAINING_HELP,
            [(p, remaining) for p, _, remaining in budgets],
        )
    if settings.clickhouse_url is not None:
        try:
            alerts = await _ask_clickhouse(settings.clickhouse_url, open_alert_counts)
        except Exception:  # down, not answering in time or not migrated: shown as 0
            live["scanward_clickhouse_up"] = (_CLICKHOUSE_UP_HELP, 0)
        else:
            live["scanward_clickhouse_up"] = (_CLICKHOUSE_UP_HELP, 1)
            open_alerts = [({"kind": kind}, count) for kind, count in alerts.items()]
            live["scanward_fraud_alerts_open"] = (_FRAUD_ALERTS_HELP, open_alerts)
    body = await asyncio.to_thread(metrics.exposition, live)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


_BACKLOG_HELP = "Events in the Redis streams not yet in ClickHouse"
_PARTITION_LIMIT_HELP = (
    "Unsunk events at which a scan partition answers its scans 503 (SCANWARD_MAX_UNSUNK_EVENTS "
    "over the scan partitions)"
)
_REDIS_UP_HELP = "1 when this process read the backlog from Redis for this scrape, else 0"
_CLICKHOUSE_UP_HELP = (
    "1 when this process counted the open fraud alerts in ClickHouse for this scrape, else 0"
)
_FRAUD_ALERTS_HELP = "Open fraud alerts in ClickHouse by kind (scanward alerts list)"
_BUDGET_HELP = "Total budget of each prize of the live campaigns"
_REMAINING_HELP = "What remains of each live campaign's prize budget"
_PARTITION_BACKLOG_HELP = "Events of one scan partition not yet in ClickHouse"
_PARTITION_SINK_HELP = "1 for the sink (host:pid:nonce) that holds a scan partition's stream"
_DRAW_BACKLOG_HELP = "Prize draws in the campaigns' Redis streams not yet in ClickHouse"
_CHANGE_BACKLOG_HELP = (
    "Changes of batches, shipments and distributors not yet mirrored into ClickHouse"
)
_SINK_GAUGES = {
    "rows_total": "Rows the sink has inserted into ClickHouse",
    "rows_per_s": "Rows per second of the sink's last insert",
    "lag_ms": "Age of the oldest event of the sink's last insert when it was inserted",
    "seconds_since_insert": "Seconds since the sink's last insert",
}


class PartitionBacklog(NamedTuple):
    partition: int
    unsunk_events: int
    sink: str | None
    """The sink holding the partition's stream (``host:pid``); None while none does."""


async def _backlog_and_sink(
    redis: AsyncRedis, partitions: Partitions
) -> tuple[list[PartitionBacklog], dict[str, float]]:
    """Each partition's unsunk events and sink, and the sinks' stats."""
    async with redis.pipeline(transaction=False) as pipe:
        for partition in range(partitions.scans):  # one key per command: they live in
            pipe.get(partitions.unsunk_key(partition))  # different cluster slots
            pipe.get(lease_key(partitions.stream_key(partition)))
        pipe.hgetall(STATS_KEY)
        *replies, stats = await pipe.execute()
    sink = {name: float(value) for name, value in cast(dict[str, str], stats).items()}
    if "last_insert_ms" in sink:
        sink["seconds_since_insert"] = round(time.time() - sink["last_insert_ms"] / 1000, 3)
    backlog = [
        PartitionBacklog(partition, int(count or 0), holder)
        for partition, (count, holder) in enumerate(zip(replies[::2], replies[1::2], strict=True))
    ]
    return backlog, sink


async def _unsunk_draws(app: web.Application) -> int:
    campaign_ids = (await app[CAMPAIGNS].current(CAMPAIGNS_MAX_AGE_S)).by_id
    if not campaign_ids:
        return 0
    async with app[REDIS].pipeline(transaction=False) as pipe:
        for cid in campaign_ids:
            pipe.get(store.unsunk_key(store.draw_stream(cid)))
        counts = await pipe.execute()
    return sum(int(count or 0) for count in counts)


async def _prize_budgets(app: web.Application) -> list[tuple[dict[str, str], int, int]]:
    """Each prize of the live campaigns: its labels, total budget and what remains of it."""
    campaigns = list((await app[CAMPAIGNS].current(CAMPAIGNS_MAX_AGE_S)).by_id.values())
    now_ms = int(time.time() * 1000)
    async with app[REDIS].pipeline(transaction=False) as pipe:
        for live in campaigns:
            for command in status.budget_reads(live, now_ms):
                pipe.execute_command(*command)
        replies = await pipe.execute()
    budgets = []
    for live, awarded, today in zip(campaigns, replies[::2], replies[1::2], strict=True):
        rows = status.budgets(live, now_ms, awarded, today)
        for prize, row in zip(live.campaign.prizes, rows, strict=True):
            labels = {"campaign": live.campaign.campaign_id, "prize": prize.prize_id}
            budgets.append((labels, prize.total_budget, cast(int, row["remaining_budget"])))
    return budgets


async def _unsunk_changes(redis: AsyncRedis) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for changes in CHANGE_STREAMS:  # one key per command: they live in different slots
            pipe.get(changes.unsunk_key)
        counts = await pipe.execute()
    return sum(int(count or 0) for count in counts)


async def _ask_clickhouse(url: str, question: Callable[[Any], Answer]) -> Answer:
    """``question`` asked of a client of its own, in a thread, within ``CLICKHOUSE_TIMEOUT_S``."""

    def ask() -> Answer:
        client = connect(url, timeout_s=CLICKHOUSE_TIMEOUT_S)
        try:
            return question(client)
        finally:
            client.disconnect()

    return await asyncio.wait_for(asyncio.to_thread(ask), CLICKHOUSE_TIMEOUT_S)


async def _clickhouse_status(url: str | None) -> str:
    if url is None:
        return "not configured"
    try:
        await _ask_clickhouse(url, lambda client: client.execute("SELECT 1"))
        return "ok"
    except TimeoutError:
        return "unavailable: no answer in time"
    except Exception as error:  # clickhouse-driver raises socket and its own errors alike
        return f"unavailable: {describe(error)}"
