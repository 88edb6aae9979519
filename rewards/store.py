"""Where campaigns live in Redis, as data (no I/O).

Everything of campaign C is under the hash tag ``{camp:C}``, so its draw script touches one
slot:

- ``:config`` the campaign's JSON, ``:version`` its version (bumped by every save), ``:configs``
  every version's JSON (what an auditor recomputes old draws with), ``:seeds`` the secret seed
  of each local day (hex);
- ``:awarded`` prizes given out so far, ``:day:<day>`` prizes given out that day, ``:wins:<day>``
  each member's wins that day, ``:points`` each member's points balance, ``:recent:<member>`` a
  member's last awards, ``:drawn:<range>`` a bitmap of the codes that drew, ``:sid:<retry key>``
  the outcome a client scan id got, ``:seq`` the draw counter;
- ``:draws`` the draw log stream the sink moves into ClickHouse ``draws``, ``:draws:unsunk``.

``{rewards}:campaigns`` lists the campaign ids and ``{rewards}:version`` moves with every save,
so workers know when to reload.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import date

import orjson

from codes.commands import LuaScript, ScriptCall
from rewards.campaigns import Campaign
from rewards.errors import TimezoneFixed

CAMPAIGNS_KEY = "{rewards}:campaigns"
VERSION_KEY = "{rewards}:version"
SAVE_CAMPAIGN = LuaScript.load(
    __package__ or "rewards", "save_campaign.lua", {"TIMEZONE_FIXED": TimezoneFixed}
)


def campaign_key(campaign_id: str, suffix: str) -> str:
    return f"{{camp:{campaign_id}}}:{suffix}"


def draw_stream(campaign_id: str) -> str:
    return campaign_key(campaign_id, "draws")


def unsunk_key(stream: str) -> str:
    """The count of a draw stream's draws not yet in ClickHouse."""
    return stream + ":unsunk"


def save(campaign: Campaign) -> ScriptCall:
    """Stores the campaign as a new version and a fresh secret seed for each of its days that
    has none (existing seeds are kept: their hashes may be published). Reply: the version;
    ``TimezoneFixed`` when a saved campaign would change its time zone."""
    seeds = [x for day in campaign.days() for x in (day.isoformat(), secrets.token_hex(32))]
    cid = campaign.campaign_id
    return ScriptCall(
        SAVE_CAMPAIGN,
        (
            campaign_key(cid, "config"),
            campaign_key(cid, "version"),
            campaign_key(cid, "configs"),
            campaign_key(cid, "seeds"),
        ),
        (orjson.dumps(campaign.to_json()), campaign.timezone, *seeds),
    )


def registered(campaign_id: str) -> list[tuple[str, ...]]:
    """The commands that make workers and the sink see a saved campaign (another slot, so
    not in the save script: run them after it)."""
    return [("SADD", CAMPAIGNS_KEY, campaign_id), ("INCR", VERSION_KEY)]


def parse_seeds(stored: Mapping[str, str]) -> dict[date, bytes]:
    return {date.fromisoformat(day): bytes.fromhex(seed) for day, seed in stored.items()}
