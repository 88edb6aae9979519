"""``scanward batch`` and ``scanward token``: code batches ordered, shown, downloaded and
revoked, and API tokens issued, straight against Redis."""

from __future__ import annotations

import argparse
import asyncio
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
from ingest.http.tokens import Role, TokenStore
from ingest.store.batches import BatchStore


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
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
            sub.add_argument("--offset", type=count, default=0)
            sub.add_argument("--limit", type=count)
            sub.add_argument("--output", type=Path, help="file to write (default: stdout)")
    batch.set_defaults(run=lambda a: asyncio.run(batch_command(a)))

    token = commands.add_parser("token", help="issue API tokens")
    token_actions = token.add_subparsers(dest="action", required=True)
    token_create = token_actions.add_parser("create", parents=[common])
    token_create.add_argument("--role", required=True, choices=[r.value for r in Role])
    token_create.add_argument("--name", required=True)
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
        with output_file(args.output) as out:
            for chunk in export.chunks():
                out.write(chunk)


async def token_command(args: argparse.Namespace) -> None:
    settings = settings_of(args, needs_redis=True)
    async with redis_of(settings) as redis:
        token = await TokenStore(redis, None).create(Role(args.role), args.name)
    print_json({"token": token, "role": args.role, "name": args.name})
