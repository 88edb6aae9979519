"""``scanward batch`` and ``scanward token``: code batches ordered, shown, downloaded and
revoked, and API tokens issued, straight against Redis."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from codes.batches import BatchOrder, BatchStatus
from codes.export import CodeExport, ExportFormat
from codes.keyring import Keyring
from ingest.cli.common import (
    CommandError,
    Subcommands,
    count,
    keyring_secret,
    output_file,
    print_json,
    redis_of,
    settings_of,
)
from ingest.http.tokens import MAX_LIFETIME_S, Role, TokenStore
from ingest.store.batches import BatchStore


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    batch = commands.add_parser("batch", help="order, inspect, download and revoke batches")
    batch_actions = batch.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = batch_actions.add_parser(
        "create", parents=[common], help="order a batch of codes; prints the batch as JSON"
    )
    create.add_argument("--sku", required=True, help="the product's stock-keeping unit")
    create.add_argument("--gtin", required=True, help="the product's GTIN-8, -12, -13 or -14")
    create.add_argument("--quantity", type=int, required=True, help="how many codes")
    create.add_argument(
        "--kind", default="unit", choices=["unit", "case", "pallet"], help="what a code marks"
    )
    create.add_argument("--line-id", default="", help="the packaging line that prints them")
    for action, summary in (
        ("show", "print a batch as JSON"),
        ("codes", "write a batch's codes as a printer file"),
        ("revoke", "revoke a batch: its codes scan as revoked from now on"),
    ):
        sub = batch_actions.add_parser(action, parents=[common], help=summary)
        sub.add_argument("batch_id", help="the batch's id, as 'batch create' printed it")
        if action == "codes":
            sub.add_argument(
                "--format",
                default="txt",
                choices=[f.value for f in ExportFormat],
                help="txt: a code a line; csv: serial, code and URL; url: Digital Link URLs",
            )
            sub.add_argument("--offset", type=count, default=0, help="codes to skip first")
            sub.add_argument("--limit", type=count, help="at most this many (default: all)")
            sub.add_argument("--output", type=Path, help="file to write (default: stdout)")
    batch.set_defaults(run=lambda a: asyncio.run(batch_command(a)))

    token = commands.add_parser("token", help="issue API tokens")
    token_actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    token_create = token_actions.add_parser(
        "create", parents=[common], help="issue a token; printed once, stored only as a hash"
    )
    token_create.add_argument(
        "--role", required=True, choices=[r.value for r in Role], help="what the token may do"
    )
    token_create.add_argument("--name", required=True, help="who or what holds it")
    token_create.add_argument(
        "--expires-in",
        type=_lifetime,
        metavar="SECONDS",
        help=f"refused after this many seconds (at most {MAX_LIFETIME_S}); default: until revoked",
    )
    token.set_defaults(run=lambda a: asyncio.run(token_command(a)))


async def batch_command(args: argparse.Namespace) -> None:
    settings = settings_of(args, needs_redis=True)
    async with redis_of(settings) as redis:
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
            keyring = Keyring.load(settings.keyring_file, keyring_secret(settings))
            print_json((await store.create(order, keyring.current.key_id)).to_json())
            return
        batch = await (store.revoke if args.action == "revoke" else store.get)(args.batch_id)
        if batch is None:
            raise CommandError(f"no batch {args.batch_id!r}")
        if args.action != "codes":
            print_json(batch.to_json())
            return
        if batch.status is BatchStatus.REVOKED:
            raise CommandError(f"batch {batch.batch_id} is revoked")
        keyring = Keyring.load(settings.keyring_file, keyring_secret(settings))
        signer = keyring.signer(batch.key_id, batch.batch_id)
        export = CodeExport.slice(
            batch, signer, ExportFormat(args.format), settings.resolver_url, args.offset, args.limit
        )
        with output_file(args.output, "codes", export.content_length()) as out:
            for chunk in export.chunks():
                out.write(chunk)


async def token_command(args: argparse.Namespace) -> None:
    settings = settings_of(args, needs_redis=True)
    async with redis_of(settings) as redis:
        expires_ms = None
        if args.expires_in is not None:
            expires_ms = int(time.time() * 1000) + args.expires_in * 1000
        token, info = await TokenStore(redis, None).create(Role(args.role), args.name, expires_ms)
    print_json({"token": token, **info.to_json()})


def _lifetime(text: str) -> int:
    seconds = int(text)
    if not 1 <= seconds <= MAX_LIFETIME_S:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_LIFETIME_S} seconds")
    return seconds
