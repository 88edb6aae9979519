"""``scanward keys``: the master keys of the keyring (encrypted at rest)."""

from __future__ import annotations

import argparse

from codes.keyring import Keyring
from ingest.cli.common import (
    CommandError,
    Subcommands,
    keyring_secret,
    print_json,
    settings_of,
)


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    keys = commands.add_parser("keys", parents=[common], help="manage master keys")
    keys.add_argument(
        "action",
        choices=["init", "rotate", "list", "retire"],
        help="init: a new keyring; rotate: a new current key; list: the keys; retire: stop "
        "a key verifying codes (those signed with it then scan as counterfeit)",
    )
    keys.add_argument("key_id", type=int, nargs="?", help="retire: the key's id, as listed")
    keys.set_defaults(run=keys_command)


def keys_command(args: argparse.Namespace) -> None:
    settings = settings_of(args)
    path, secret = settings.keyring_file, keyring_secret(settings)
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
    print_json([{**k.describe(), "current": k.key_id == current} for k in keyring.keys])
