"""Connections from ``SCANWARD_REDIS_URL``: one node's URL, or any node of a cluster (several,
comma-separated, for a start-up that survives one being down, or all). Whether it is a cluster
is asked of the first node that answers (``INFO cluster``); no other setting is needed.

Every process makes its clients here: redis-py's clients (``Redis`` or ``RedisCluster``, async
or blocking) for the API's stores, the CLI and the sink, and the scan path's thin client
(``RedisPipe``, or ``ClusterPipe`` routing by slot).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ingest.store.cluster_pipe import ClusterPipe
from ingest.store.pipe import RedisPipe
from ingest.store.scripts import AsyncRedis, SyncRedis

log = logging.getLogger(__name__)
_PROBE_TIMEOUT_S = 5.0
_CLUSTER_BACKOFF_S = (0.2, 0.05)
"""redis-py's cluster client retries a failed command 10 times over several seconds by default;
the API keeps copies of what it reads and refuses scans it cannot take, so it fails fast."""


def node_urls(url: str) -> list[str]:
    """The URLs of a comma-separated list, each a ``redis://`` (or ``rediss://``) URL."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise RedisConnectionError("no Redis URL given")
    return urls


def is_cluster(url: str) -> bool:
    """Whether the first node that answers has cluster mode on; a one-line error naming each
    node if none answers."""
    failures = []
    for node in node_urls(url):
        client = redis.Redis.from_url(
            node, socket_timeout=_PROBE_TIMEOUT_S, socket_connect_timeout=_PROBE_TIMEOUT_S
        )
        try:
            return bool(client.info("cluster").get("cluster_enabled"))
        except RedisError as error:
            failures.append(f"{_address(node)}: {error}")
        finally:
            client.close()
    raise RedisConnectionError(f"no Redis node answered ({'; '.join(failures)})")


def _cluster_mode(url: str) -> bool:
    """``is_cluster``; while no node answers (Redis down at start-up: requests get 503s until
    it is back), several nodes are taken for a cluster and one for a single node."""
    try:
        return is_cluster(url)
    except RedisConnectionError as error:
        cluster = len(node_urls(url)) > 1
        log.warning("%s; taken for %s", error, "a cluster" if cluster else "a single node")
        return cluster


def async_client(url: str, *, decode_responses: bool = True, **options: Any) -> AsyncRedis:
    """redis-py's asyncio client of the node or the cluster."""
    if _cluster_mode(url):
        options.setdefault("retry", AsyncRetry(EqualJitterBackoff(*_CLUSTER_BACKOFF_S), 2))
        return redis.asyncio.cluster.RedisCluster(
            startup_nodes=[
                redis.asyncio.cluster.ClusterNode(*_host_port(node)) for node in node_urls(url)
            ],
            decode_responses=decode_responses,
            username=_credential(url, "username"),
            password=_credential(url, "password"),
            **options,
        )
    return redis.asyncio.Redis.from_url(url, decode_responses=decode_responses, **options)


def sync_client(url: str, *, decode_responses: bool = False, **options: Any) -> SyncRedis:
    """redis-py's blocking client of the node or the cluster."""
    if _cluster_mode(url):
        nodes = [redis.cluster.ClusterNode(*_host_port(node)) for node in node_urls(url)]  # type: ignore[no-untyped-call]
        return redis.cluster.RedisCluster(
            startup_nodes=nodes,
            decode_responses=decode_responses,
            username=_credential(url, "username"),
            password=_credential(url, "password"),
            **options,
        )
    return redis.Redis.from_url(url, decode_responses=decode_responses, **options)


def scan_client(
    url: str, timeout_s: float, wait_replicas: int = 0, wait_timeout_ms: int = 100
) -> RedisPipe | ClusterPipe:
    """The scan path's thin pipelined client of the node or the cluster; with
    ``wait_replicas``, its script calls are answered once that many replicas hold them."""
    if _cluster_mode(url):
        return ClusterPipe(node_urls(url), timeout_s, wait_replicas, wait_timeout_ms)
    return RedisPipe(url, timeout_s, wait_replicas, wait_timeout_ms)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def _address(url: str) -> str:
    host, port = _host_port(url)
    return f"{host}:{port}"


def addresses(url: str) -> str:
    """The nodes of ``url`` as ``host:port`` (no credentials), for messages."""
    return ",".join(_address(node) for node in node_urls(url))


def _credential(url: str, part: str) -> str | None:
    """The first node's username or password: a cluster's nodes share their users."""
    value: str | None = getattr(urlsplit(node_urls(url)[0]), part)
    return unquote(value) if value else None
