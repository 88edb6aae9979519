"""``scanward serve`` and ``scanward up``: the API alone, or the whole stack (Redis and
ClickHouse, each one server or a local cluster, unless configured; the schema, API workers, the
sink and the alerts loop)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from typing import Protocol

import uvloop

from codes.keyring import Keyring
from ingest.cli.common import (
    CommandError,
    Subcommands,
    count,
    keyring_secret,
    positive,
    redis_of,
    settings_of,
)
from ingest.cli.warehouse import apply_all_migrations, server_line
from ingest.config import Settings
from ingest.metrics import MULTIPROC_ENV
from ingest.ops import clickhouse_cluster, demo, json_logging, local_services
from ingest.ops.server import serve, wait_until_serving
from ingest.ops.supervisor import Supervisor
from ingest.store import connect
from ingest.store.layout import check_layout
from ingest.store.outage import STORE_FAILURES
from ingest.warehouse.cluster_schema import apply_cluster_migrations
from ingest.warehouse.topology import Topology


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    up = commands.add_parser("up", parents=[common], help="start Redis, ClickHouse and the API")
    _add_address(up)
    up.add_argument("--demo", action="store_true", help="make a demo batch and print curls")
    up.add_argument("--workers", type=positive, help="API processes sharing the port")
    up.add_argument(
        "--redis-masters",
        type=_cluster_masters,
        metavar="N",
        help="start a local Redis Cluster of N (3 or more) primaries instead of one Redis",
    )
    up.add_argument(
        "--redis-replicas",
        type=count,
        metavar="R",
        help="with --redis-masters: R replicas of each primary (default 0)",
    )
    up.add_argument(
        "--clickhouse-shards",
        type=positive,
        metavar="N",
        help="start a local ClickHouse cluster of N shards instead of one ClickHouse",
    )
    up.add_argument(
        "--clickhouse-replicas",
        type=positive,
        metavar="R",
        help="with --clickhouse-shards: R servers in each shard, replicating it through a "
        "local ZooKeeper when R > 1 (default 1)",
    )
    up.set_defaults(run=up_command)

    serve_parser = commands.add_parser("serve", parents=[common], help="run the API only")
    _add_address(serve_parser)
    serve_parser.add_argument("--workers", type=positive, help="processes sharing the port")
    serve_parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve_parser.set_defaults(run=serve_command)


def _add_address(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    parser.add_argument(
        "--port", type=int, help=f"the API's port (default: $SCANWARD_PORT, else {defaults.port})"
    )
    parser.add_argument(
        "--host",
        help=f"the address the API listens on (default: $SCANWARD_HOST, else {defaults.host})",
    )


def serve_command(args: argparse.Namespace) -> None:
    """The API alone, in one process or in ``--workers`` processes sharing the port."""
    settings = settings_of(args, needs_redis=True).with_overrides(workers=args.workers)
    keyring_secret(settings)
    json_logging.configure()
    if args.worker or settings.workers == 1:
        try:
            uvloop.run(serve(settings, reuse_port=args.worker))
        except OSError as error:
            raise _cannot_serve(settings, error) from None
        return
    _check_port_is_free(settings)
    check_partitions(settings)
    with (
        tempfile.TemporaryDirectory(prefix="scanward-metrics-") as metrics_dir,
        Supervisor({**settings_environment(settings), MULTIPROC_ENV: metrics_dir}) as supervisor,
    ):
        add_workers(supervisor, settings.workers)
        supervisor.run()


def up_command(args: argparse.Namespace) -> None:
    """Redis and ClickHouse (unless configured), the schema, API workers and the sink."""
    settings = settings_of(args).with_overrides(workers=args.workers)
    _check_redis_options(args, settings)
    _check_clickhouse_options(args, settings)
    secret = keyring_secret(settings)
    json_logging.configure()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.keyring_file.exists():
        Keyring.new().save(settings.keyring_file, secret)
        print(f"created a keyring with one master key at {settings.keyring_file}")
    _check_port_is_free(settings)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_interrupted_by_sigterm())
        stack.enter_context(local_services.data_folder_lock(settings.data_dir))
        redis_url, clickhouse_url = settings.redis_url, settings.clickhouse_url
        if redis_url is None:
            redis_url = stack.enter_context(_stopping(_start_redis(args, settings)))
        check_partitions(replace(settings, redis_url=redis_url))
        if clickhouse_url is None:
            clickhouse_url = stack.enter_context(_stopping(_start_clickhouse(args, settings)))
        settings = replace(settings, redis_url=redis_url, clickhouse_url=clickhouse_url)
        api_url = f"http://{settings.host}:{settings.port}"
        local_services.ServiceAddresses(redis_url, clickhouse_url, api_url).save(settings.data_dir)
        stack.callback((settings.data_dir / local_services.SERVICES_FILE).unlink, missing_ok=True)
        _migrate(settings)
        shown = local_services.masked_url
        print(f"redis       {shown(redis_url)}\nclickhouse  {shown(clickhouse_url)}")
        print(f"api         {api_url}")
        metrics_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="scanward-metrics-"))
        environment = {**settings_environment(settings), MULTIPROC_ENV: metrics_dir}
        supervisor = stack.enter_context(Supervisor(environment))
        add_workers(supervisor, settings.workers)
        supervisor.add("sink", ["sink", "--supervised"], stop_group=1)
        supervisor.add("alerts", ["alerts", "run", "--supervised"], stop_group=1)
        _wait_until_serving(api_url)
        if args.demo:
            asyncio.run(_announce_demo(settings, api_url))
        print(f"serving with {settings.workers} worker(s) and the sink; Ctrl-C stops everything")
        sys.stdout.flush()
        supervisor.run()


def check_partitions(settings: Settings) -> None:
    """The partition counts against the store's before any child starts (each would stop with
    the same line, and be started again); with Redis down the start goes on unchecked, as a
    worker's own start does."""
    assert settings.redis_url is not None
    redis = connect.sync_client(settings.redis_url)
    try:
        check_layout(redis, settings.partitions, connect.addresses(settings.redis_url))
    except STORE_FAILURES as error:
        print(f"partition counts not checked: Redis is unavailable: {error}", file=sys.stderr)
    finally:
        redis.close()


def settings_environment(settings: Settings) -> dict[str, str]:
    """What a child process needs beyond the inherited environment: the values resolved here."""
    values = {
        "data_dir": str(settings.data_dir),
        "host": settings.host,
        "port": str(settings.port),
        "redis_url": settings.redis_url,
        "clickhouse_url": settings.clickhouse_url,
    }
    return {f"SCANWARD_{k.upper()}": v for k, v in values.items() if v is not None}


def add_workers(supervisor: Supervisor, count: int) -> None:
    for number in range(count):
        supervisor.add(f"api worker {number + 1}", ["serve", "--worker"], stop_group=0)


def _cannot_serve(settings: Settings, error: OSError) -> CommandError:
    return CommandError(f"cannot serve on {settings.host}:{settings.port}: {error}")


def _cluster_masters(text: str) -> int:
    value = int(text)
    if value < 3:
        raise argparse.ArgumentTypeError("a Redis Cluster needs at least 3 masters")
    return value


def _check_redis_options(args: argparse.Namespace, settings: Settings) -> None:
    """The cluster options shape the Redis `up` starts, so they make no sense without it."""
    if args.redis_masters is None and args.redis_replicas is not None:
        raise CommandError("--redis-replicas needs --redis-masters")
    if args.redis_masters is not None and settings.redis_url is not None:
        raise CommandError(
            "--redis-masters starts a local Redis Cluster, but a Redis is configured "
            "(SCANWARD_REDIS_URL): use one or the other"
        )


def _check_clickhouse_options(args: argparse.Namespace, settings: Settings) -> None:
    """Like the Redis options: they shape the ClickHouse cluster `up` starts."""
    shards, replicas = args.clickhouse_shards, args.clickhouse_replicas
    if shards is None and replicas is not None:
        raise CommandError("--clickhouse-replicas needs --clickhouse-shards")
    if shards is not None and settings.clickhouse_url is not None:
        raise CommandError(
            "--clickhouse-shards starts a local ClickHouse cluster, but a ClickHouse is "
            "configured (SCANWARD_CLICKHOUSE_URL): use one or the other"
        )
    if shards == 1 and (replicas or 1) == 1:
        raise CommandError(
            "a ClickHouse cluster of one server is one ClickHouse: give --clickhouse-shards 2 "
            "or more, or --clickhouse-replicas 2 or more, or neither"
        )


class _Servers(Protocol):
    """One server or a local cluster, as `up` uses it: its URL, and a stop by PID."""

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


def _start_redis(args: argparse.Namespace, settings: Settings) -> _Servers:
    """One Redis, or with ``--redis-masters`` a Redis Cluster, in the data folder."""
    if args.redis_masters is None:
        return local_services.start_redis(settings.data_dir)
    return local_services.start_redis_cluster(
        settings.data_dir, args.redis_masters, args.redis_replicas or 0
    )


def _start_clickhouse(args: argparse.Namespace, settings: Settings) -> _Servers:
    """One ClickHouse, or with ``--clickhouse-shards`` a ClickHouse cluster, in the data folder;
    either keeps its data across runs (a cluster, across runs of the same shape)."""
    if args.clickhouse_shards is None:
        return local_services.start_clickhouse(settings.data_dir)
    return clickhouse_cluster.start_clickhouse_cluster(
        settings.data_dir, args.clickhouse_shards, args.clickhouse_replicas or 1
    )


def _migrate(settings: Settings) -> None:
    """The migrations as `scanward migrate` applies them: on a cluster, on every server, a line
    each; `up` stops if one was left behind."""
    assert settings.clickhouse_url is not None
    topology = Topology.parse(settings.clickhouse_url)
    if not topology.clustered:
        for name in apply_all_migrations(settings):
            print(f"applied migration {name}")
        return
    outcomes = apply_cluster_migrations(topology)
    for outcome in outcomes:
        print(f"migrations on {server_line(outcome)}")
    if any(outcome.error for outcome in outcomes):
        raise CommandError("some ClickHouse servers were not migrated; see above")


def _check_port_is_free(settings: Settings) -> None:
    """Workers bind with SO_REUSEPORT, which would quietly share a port with another stack."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no obstacle
        try:
            probe.bind((settings.host, settings.port))
        except OSError as error:
            raise _cannot_serve(settings, error) from None


def _wait_until_serving(api_url: str, timeout_s: float = 30.0) -> None:
    if not wait_until_serving(api_url, timeout_s):
        raise CommandError(f"the API did not answer at {api_url} within {timeout_s:.0f} s")


@contextlib.contextmanager
def _stopping(servers: _Servers) -> Iterator[str]:
    try:
        yield servers.url
    finally:
        servers.stop()


@contextlib.contextmanager
def _interrupted_by_sigterm() -> Iterator[None]:
    """SIGTERM as Ctrl-C while `up` starts and stops its servers (the supervisor takes both
    while it runs): the servers started so far run in sessions of their own, and are stopped
    by the blocks that started them rather than left behind."""

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the stops that follow must finish
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


async def _announce_demo(settings: Settings, api_url: str) -> None:
    async with redis_of(settings) as redis:
        batch = await demo.demo_batch(redis, settings.keyring_file, keyring_secret(settings))
        await demo.demo_campaign(redis, settings.member_tiers)
    print(demo.instructions(settings, api_url, batch), flush=True)
