"""``scanward member-token``: a signed member token, as a brand's backend issues one, for trying
a campaign that requires them (``rewards.member_token``)."""

from __future__ import annotations

import argparse
import time

from ingest.cli.common import CommandError, Subcommands, settings_of
from rewards.errors import MemberError
from rewards.member_token import MAX_LIFETIME_S


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    issue = commands.add_parser(
        "member-token",
        parents=[common],
        help="print a member token signed with $SCANWARD_MEMBER_TOKEN_SECRET",
        description="Prints a signed member token for a member, as a brand's backend would "
        "issue it, signed with the first secret of SCANWARD_MEMBER_TOKEN_SECRET.",
    )
    issue.add_argument("--member", required=True, help="the member id the token names")
    issue.add_argument(
        "--ttl",
        type=int,
        default=3600,
        help=f"seconds until the token expires, at most {MAX_LIFETIME_S}",
    )
    issue.set_defaults(run=member_token_command)


def member_token_command(args: argparse.Namespace) -> None:
    secret = settings_of(args).member_token_secret
    if secret is None:
        raise CommandError("set SCANWARD_MEMBER_TOKEN_SECRET: the secret the brand shares")
    if not 1 <= args.ttl <= MAX_LIFETIME_S:
        raise CommandError(f"--ttl must be from 1 to {MAX_LIFETIME_S} seconds")
    try:
        print(secret.issue(args.member, int(time.time()) + args.ttl))
    except MemberError as error:
        raise CommandError(str(error)) from None
