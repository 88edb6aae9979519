"""The ``scanward`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import orjson
import uvloop
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from codes.batches import BatchOrder, BatchStatus
from codes.errors import CodesError
from codes.export import CodeExport, ExportFormat
from codes.keyring import Keyring
from ingest import local_services
from ingest.batch_store import BatchStore
from ingest.config import ConfigError, Settings
from ingest.local_services import ServiceAddresses, ServiceError
from ingest.server import serve
from ingest.tokens import Role, TokenStore


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def _settings(args: argparse.Namespace, *, needs_redis: bool = False) -> Settings:
    settings = Settings.from_env().with_overrides(
        data_dir=args.data_dir, port=getattr(args, "port", None), host=getattr(args, "host", None)
    )
    if needs_redis and settings.redis_url is None:
        recorded = ServiceAddresses.load(settings.data_dir)
        if recorded is None:
            raise CommandError(
                f"no Redis: run 'scanward up --data-dir {settings.data_dir}' "
                "or set SCANWARD_REDIS_URL"
            )
        settings = replace(
            settings,
            redis_url=recorded.redis_url,
            clickhouse_url=settings.clickhouse_url or recorded.clickhouse_url,
        )
    return settings


def _secret(settings: Settings) -> str:
    if not settings.keyring_secret:
        raise CommandError("set SCANWARD_KEYRING_SECRET: it encrypts the keyring at rest")
    return settings.keyring_secret


def _print_json(value: object) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


# --- keys -----------------------------------------------------------------------------------


def keys_command(args: argparse.Namespace) -> None:
    settings = _settings(args)
    path, secret = settings.keyring_file, _secret(settings)
    if args.action == "init":
        if path.exists():
            raise CommandError(f"{path} exists already; use 'scanward keys rotate'")
        keyring = Keyring.new()
    else:
        keyring = Keyring.load(path, secret)
        if args.action == "rotate":
            keyring = keyring.rotate()
        elif args.action == "retire":
            if args.key_id is None:
                raise CommandError("say which key: scanward keys retire KEY_ID")
            keyring = keyring.retire(args.key_id)
    if args.action != "list":
        keyring.save(path, secret)
    current = keyring.current.key_id
    _print_json([{**k.describe(), "current": k.key_id == current} for k in keyring.keys])


# --- batches and tokens -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _redis(settings: Settings) -> AsyncIterator[Redis]:
    assert settings.redis_url is not None
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        yield redis
    finally:
        await redis.aclose()


async def _batch_command(args: argparse.Namespace) -> None:
    settings = _settings(args, needs_redis=True)
    async with _redis(settings) as redis:
        store = BatchStore(redis)
        if args.action == "create":
            order = BatchOrder.create(
                args.sku,
                args.gtin,
                args.quantity,
                args.kind,
                args.line_id,
                max_quantity=settings.max_batch_quantity,
            )
            keyring = Keyring.load(settings.keyring_file, _secret(settings))
            _print_json((await store.create(order, keyring.current.key_id)).to_json())
            return
        batch = await (store.revoke if args.action == "revoke" else store.get)(args.batch_id)
        if batch is None:
            raise CommandError(f"no batch {args.batch_id!r}")
        if args.action != "codes":
            _print_json(batch.to_json())
            return
        if batch.status is BatchStatus.REVOKED:
            raise CommandError(f"batch {batch.batch_id} is revoked")
        keyring = Keyring.load(settings.keyring_file, _secret(settings))
        signer = keyring.signer(batch.key_id, batch.batch_id)
        export = CodeExport.slice(
            batch, signer, ExportFormat(args.format), settings.resolver_url, args.offset, args.limit
        )
        with _output(args.output) as out:
            for chunk in export.chunks():
                out.write(chunk)


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[BinaryIO]:
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
    else:
        with path.open("wb") as handle:
            yield handle


async def _token_command(args: argparse.Namespace) -> None:
    settings = _settings(args, needs_redis=True)
    async with _redis(settings) as redis:
        token = await TokenStore(redis, None).create(Role(args.role), args.name)
    _print_json({"token": token, "role": args.role, "name": args.name})


# --- up -------------------------------------------------------------------------------------


DEMO_SKU, DEMO_GTIN = "DEMO-BEER-500ML", "04006381333931"


def up_command(args: argparse.Namespace) -> None:
    settings = _settings(args)
    secret = _secret(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.keyring_file.exists():
        Keyring.new().save(settings.keyring_file, secret)
        print(f"created a keyring with one master key at {settings.keyring_file}")
    with contextlib.ExitStack() as stack:
        stack.enter_context(local_services.data_folder_lock(settings.data_dir))
        redis_url, clickhouse_url = settings.redis_url, settings.clickhouse_url
        if redis_url is None:
            redis_url = stack.enter_context(
                _stopping(local_services.start_redis(settings.data_dir))
            )
        if clickhouse_url is None:
            clickhouse_url = stack.enter_context(
                _stopping(local_services.start_clickhouse(settings.data_dir))
            )
        settings = replace(settings, redis_url=redis_url, clickhouse_url=clickhouse_url)
        api_url = f"http://{settings.host}:{settings.port}"
        ServiceAddresses(redis_url, clickhouse_url, api_url).save(settings.data_dir)
        stack.callback((settings.data_dir / local_services.SERVICES_FILE).unlink, missing_ok=True)
        print(f"redis       {redis_url}\nclickhouse  {clickhouse_url}\napi         {api_url}")

        async def announce() -> None:
            if args.demo:
                await _announce_demo(settings, api_url)
            print("serving; Ctrl-C stops everything", flush=True)

        try:
            uvloop.run(serve(settings, announce))
        except OSError as error:
            raise CommandError(
                f"cannot serve on {settings.host}:{settings.port}: {error}"
            ) from None


@contextlib.contextmanager
def _stopping(server: local_services.ServerProcess) -> Iterator[str]:
    try:
        yield server.url
    finally:
        server.stop()


async def _announce_demo(settings: Settings, api_url: str) -> None:
    """A demo batch (made once per data folder) and curl commands that use it."""
    async with _redis(settings) as redis:
        store = BatchStore(redis)
        demo = next((b for b in await store.index() if b.sku == DEMO_SKU), None)
        if demo is None:
            keyring = Keyring.load(settings.keyring_file, _secret(settings))
            order = BatchOrder.create(DEMO_SKU, DEMO_GTIN, 1000, max_quantity=1000)
            demo = await store.create(order, keyring.current.key_id)
    token = settings.admin_token or "<SCANWARD_ADMIN_TOKEN>"
    auth = f"-H 'Authorization: Bearer {token}'"
    print(
        f"""
demo batch {demo.batch_id}: {demo.quantity} codes of {demo.sku}
  curl -s {auth} '{api_url}/v1/batches/{demo.batch_id}/codes?format=url&limit=3'
  curl -s {api_url}/v1/codes/<one of those codes>
  curl -s {auth} -H 'Content-Type: application/json' \\
       -d '{{"sku": "BEER-500", "gtin": "{DEMO_GTIN}", "quantity": 1000000}}' {api_url}/v1/batches
""",
        flush=True,
    )


# --- argument parsing -------------------------------------------------------------------------


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, help="data folder (SCANWARD_DATA_DIR, ./var)")
    parser = argparse.ArgumentParser(prog="scanward", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", parents=[common], help="start Redis, ClickHouse and the API")
    up.add_argument("--port", type=int)
    up.add_argument("--host")
    up.add_argument("--demo", action="store_true", help="make a demo batch and print curls")
    up.set_defaults(run=up_command)

    keys = commands.add_parser("keys", parents=[common], help="manage master keys")
    keys.add_argument("action", choices=["init", "rotate", "list", "retire"])
    keys.add_argument("key_id", type=int, nargs="?")
    keys.set_defaults(run=keys_command)

    batch = commands.add_parser("batch", help="order, inspect, download and revoke batches")
    batch_actions = batch.add_subparsers(dest="action", required=True)
    create = batch_actions.add_parser("create", parents=[common])
    create.add_argument("--sku", required=True)
    create.add_argument("--gtin", required=True)
    create.add_argument("--quantity", type=int, required=True)
    create.add_argument("--kind", default="unit", choices=["unit", "case", "pallet"])
    create.add_argument("--line-id", default="")
    for action in ("show", "codes", "revoke"):
        sub = batch_actions.add_parser(action, parents=[common])
        sub.add_argument("batch_id")
        if action == "codes":
            sub.add_argument("--format", default="txt", choices=[f.value for f in ExportFormat])
            sub.add_argument("--offset", type=_count, default=0)
            sub.add_argument("--limit", type=_count)
            sub.add_argument("--output", type=Path, help="file to write (default: stdout)")
    batch.set_defaults(run=lambda a: asyncio.run(_batch_command(a)))

    token = commands.add_parser("token", help="issue API tokens")
    token_actions = token.add_subparsers(dest="action", required=True)
    token_create = token_actions.add_parser("create", parents=[common])
    token_create.add_argument("--role", required=True, choices=[r.value for r in Role])
    token_create.add_argument("--name", required=True)
    token.set_defaults(run=lambda a: asyncio.run(_token_command(a)))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (CommandError, ConfigError, ServiceError, CodesError) as error:
        print(f"scanward: {error}", file=sys.stderr)
        return 1
    except RedisConnectionError as error:
        print(f"scanward: cannot reach Redis ({error}); is 'scanward up' running?", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
