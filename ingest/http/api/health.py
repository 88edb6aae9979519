"""Liveness, readiness and metrics for load balancers, `scanward up` and Prometheus."""

from __future__ import annotations

import asyncio
import os
import time
from typing import NamedTuple, cast

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from ingest import metrics
from ingest.events.partitions import Partitions
from ingest.http.responses import json_response
from ingest.http.state import CAMPAIGNS, REDIS, SETTINGS
from ingest.scan.reward_stage import CAMPAIGNS_MAX_AGE_S
from ingest.scan.state import unsunk_limit_per_partition
from ingest.sink import CHANGE_STREAMS, STATS_KEY, lease_key
from ingest.store.scripts import AsyncRedis
from ingest.warehouse import connect, describe
from rewards import store

routes = web.RouteTableDef()

CLICKHOUSE_TIMEOUT_S = 2
SINK_STALLED_S = 60


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.StreamResponse:
    """503 only when scans cannot be answered at all (Redis down). ``degraded`` when they are
    answered but not all is well: ClickHouse down, a partition's backlog at its bound (its scans
    get 503), or events waiting while the sink has not inserted for a minute."""
    settings = request.app[SETTINGS]
    try:
        partitions, sink = await _backlog_and_sink(request.app[REDIS], settings.partitions)
        unsunk_draws = await _unsunk_draws(request.app)
        unsunk_changes = await _unsunk_changes(request.app[REDIS])
    except RedisError as error:
        return json_response({"status": "unavailable", "redis": str(error)}, status=503)
    clickhouse = await _clickhouse_status(settings.clickhouse_url)
    limit = unsunk_limit_per_partition(settings.max_unsunk_events, settings.partitions)
    unsunk = sum(p.unsunk_events for p in partitions)
    full_partitions = sum(p.unsunk_events >= limit for p in partitions)
    sink_stalled = unsunk > 0 and sink.get("seconds_since_insert", 0) > SINK_STALLED_S
    healthy = clickhouse in ("ok", "not configured") and not full_partitions and not sink_stalled
    body = {
        "status": "ok" if healthy else "degraded",
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


@routes.get("/metrics")
async def metrics_endpoint(request: web.Request) -> web.StreamResponse:
    live: dict[str, tuple[str, float | metrics.LabelledValues]] = {}
    try:
        partitions, sink = await _backlog_and_sink(
            request.app[REDIS], request.app[SETTINGS].partitions
        )
        unsunk_draws = await _unsunk_draws(request.app)
        unsunk_changes = await _unsunk_changes(request.app[REDIS])
    except RedisError:
        pass  # the process metrics are still worth a scrape
    else:
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
    body = await asyncio.to_thread(metrics.exposition, live)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


_BACKLOG_HELP = "Events in the Redis streams not yet in ClickHouse"
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


async def _unsunk_changes(redis: AsyncRedis) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for changes in CHANGE_STREAMS:  # one key per command: they live in different slots
            pipe.get(changes.unsunk_key)
        counts = await pipe.execute()
    return sum(int(count or 0) for count in counts)


async def _clickhouse_status(url: str | None) -> str:
    if url is None:
        return "not configured"

    def ping() -> str:
        client = connect(url, timeout_s=CLICKHOUSE_TIMEOUT_S)
        try:
            client.execute("SELECT 1")
        finally:
            client.disconnect()
        return "ok"

    try:
        return await asyncio.wait_for(asyncio.to_thread(ping), CLICKHOUSE_TIMEOUT_S)
    except TimeoutError:
        return "unavailable: no answer in time"
    except Exception as error:  # clickhouse-driver raises socket and its own errors alike
        return f"unavailable: {describe(error)}"
