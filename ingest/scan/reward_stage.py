"""The reward stage of the scan path: the prize draws of a micro-batch.

A scan enters the draw of every campaign open for its code when it is genuine and carries a
member id (a prize needs someone to go to), and, where the campaign requires one, a valid signed
member token; a scan kept out for its token is told why (``Campaign.keeps_out``). The members'
tiers are read in the scan state's round trip (``plan`` returns the reads); once Redis has
recorded the scans, one ``draw.lua`` call per campaign (and per ``MAX_DRAWS_PER_CALL`` draws)
draws for all of them (``draw``): the script decides which codes have not drawn yet, so
concurrent batches and server processes never draw a code twice.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from codes.commands import ScriptCall
from ingest import metrics, stage_timer
from ingest.errors import Unavailable
from ingest.events.scans import MAX_EVENTS_PER_ENTRY
from ingest.scan.refusals import refusal
from ingest.store.campaigns import CampaignSource
from ingest.store.outage import STORE_FAILURES
from ingest.store.scripts import Command, ScriptRunner
from rewards.draws import DrawStatus, Entrant, LiveCampaign, Won
from rewards.errors import StaleCampaign
from rewards.member_token import TokenState
from rewards.members import TierReads

log = logging.getLogger(__name__)

CAMPAIGNS_MAX_AGE_S = 0.1
MAX_DRAWS_PER_CALL = MAX_EVENTS_PER_ENTRY
"""As the scan state's calls: keeps each script short and each stream entry of a size the sink
reads by."""


@dataclass(slots=True)
class RewardPlan:
    now_ms: int
    entries: dict[int, list[LiveCampaign]] = field(default_factory=dict)
    """Entrant index -> the campaigns it draws in."""
    kept_out: dict[int, TokenState] = field(default_factory=dict)
    """Entrant index -> the state of its member token, which kept it out of a campaign."""
    tier_reads: TierReads = field(default_factory=lambda: TierReads(()))

    def reads(self) -> list[Command]:
        return list(self.tier_reads.commands())


@dataclass(slots=True)
class _Chunk:
    """Up to ``MAX_DRAWS_PER_CALL`` draws in one campaign: one script call."""

    campaign: LiveCampaign
    indexes: list[int]
    """The candidates', in the order of ``entrants``."""
    entrants: list[Entrant] = field(default_factory=list)
    tiers: list[int] = field(default_factory=list)
    """The entrants' members'."""

    @property
    def campaign_id(self) -> str:
        return self.campaign.campaign.campaign_id

    def drawn_by(self, live: LiveCampaign) -> _Chunk:
        """This chunk for ``live``: the entrants whose code it still covers."""
        kept = [
            at
            for at, e in enumerate(self.entrants)
            if live.campaign.covers(e.sku, e.batch_id)
            and not live.campaign.keeps_out(e.member_token)
        ]
        return _Chunk(
            live,
            [self.indexes[at] for at in kept],
            [self.entrants[at] for at in kept],
            [self.tiers[at] for at in kept],
        )


class RewardStage:
    def __init__(self, scripts: ScriptRunner, campaigns: CampaignSource, retry_ttl_s: int) -> None:
        self._scripts = scripts
        self._campaigns = campaigns
        self._retry_ttl_s = retry_ttl_s

    async def plan(self, candidates: Sequence[Entrant], now_ms: int) -> RewardPlan:
        plan = RewardPlan(now_ms)
        if not candidates:
            return plan
        campaigns = await self._campaigns.current(CAMPAIGNS_MAX_AGE_S)
        with stage_timer.REWARDS:
            for index, candidate in enumerate(candidates):
                covering = campaigns.covering(candidate.sku, candidate.batch_id, now_ms)
                token = candidate.member_token
                entered = [c for c in covering if not c.campaign.keeps_out(token)]
                if entered and candidate.member_id:
                    plan.entries[index] = entered
                if len(entered) < len(covering):
                    plan.kept_out[index] = token
            plan.tier_reads = TierReads([candidates[i].member_id for i in plan.entries])
        return plan

    async def draw(
        self,
        plan: RewardPlan,
        candidates: Sequence[Entrant],
        tier_replies: Sequence[object],
        recorded: Sequence[bool],
    ) -> dict[int, Won | TokenState | Unavailable]:
        """The prize each candidate won (its first win by campaign id), for the candidates
        whose scan Redis ``recorded``; or the refusal of those whose draw Redis failed (it may
        have happened: a retry with the scan's id gets the recorded outcome); or, for those that
        won nothing, the token state that kept them out of a draw."""
        kept_out = {index: token for index, token in plan.kept_out.items() if recorded[index]}
        if not plan.entries:
            return dict(kept_out)
        failure = next((r for r in tier_replies if isinstance(r, STORE_FAILURES)), None)
        if failure is not None:
            refused = {index: refusal(failure) for index in plan.entries if recorded[index]}
            return {**kept_out, **refused}
        if any(isinstance(reply, Exception) for reply in tier_replies):
            log.error(
                "member tiers could not be read; no draws in this micro-batch: %s", tier_replies
            )
            return dict(kept_out)
        with stage_timer.REWARDS:
            tiers = plan.tier_reads.tiers(tier_replies)
            by_campaign: dict[str, tuple[LiveCampaign, list[int]]] = {}
            for index, campaigns in plan.entries.items():
                if recorded[index]:
                    for live in campaigns:
                        if live.open_at(plan.now_ms):
                            entry = by_campaign.setdefault(live.campaign.campaign_id, (live, []))
                            entry[1].append(index)
            chunks = [
                _Chunk(live, indexes[start : start + MAX_DRAWS_PER_CALL])
                for _, (live, indexes) in sorted(by_campaign.items())
                for start in range(0, len(indexes), MAX_DRAWS_PER_CALL)
            ]
            for chunk in chunks:
                chunk.entrants = [candidates[i] for i in chunk.indexes]
                chunk.tiers = [tiers[entrant.member_id] for entrant in chunk.entrants]
        replies = await self._run(chunks, plan.now_ms)
        with stage_timer.REWARDS:
            won: dict[int, Won | TokenState | Unavailable] = {}
            for chunk, reply in zip(chunks, replies, strict=True):
                prizes = self._prizes(chunk.campaign, reply, len(chunk.indexes))
                for index, prize in zip(chunk.indexes, prizes, strict=True):
                    if isinstance(prize, Unavailable):
                        won[index] = prize  # an unknown draw outweighs a known win
                    elif prize is not None:
                        won.setdefault(index, prize)
            return {**kept_out, **won}

    async def _run(self, chunks: list[_Chunk], now_ms: int) -> list[object]:
        """Every chunk's draws in one round trip. A campaign saved since this worker last
        looked is loaded again; its chunks keep the entrants it still draws for at ``now_ms`` and
        are drawn once more (the others win nothing)."""
        with stage_timer.REWARDS:
            calls = [self._call(c, now_ms) for c in chunks]
        replies = await self._scripts.run_many(calls)
        stale = [at for at, reply in enumerate(replies) if isinstance(reply, StaleCampaign)]
        if stale:
            fresh = (await self._campaigns.current(reload=True)).by_id
            again = []
            for at in stale:
                chunk, live = chunks[at], fresh.get(chunks[at].campaign_id)
                if live is None or not live.open_at(now_ms):
                    chunks[at], replies[at] = _Chunk(chunk.campaign, []), []
                    continue
                chunks[at] = chunk.drawn_by(live)
                again.append(at)
            retried = await self._scripts.run_many([self._call(chunks[at], now_ms) for at in again])
            for at, reply in zip(again, retried, strict=True):
                replies[at] = reply
        return replies

    @staticmethod
    def _prizes(
        campaign: LiveCampaign, reply: object, count: int
    ) -> list[Won | Unavailable | None]:
        cid = campaign.campaign.campaign_id
        if isinstance(reply, STORE_FAILURES):
            return [refusal(reply)] * count
        if isinstance(reply, Exception):
            log.error("draws in %s failed: %s", cid, reply)
            return [None] * count
        assert isinstance(reply, list)
        outcomes = campaign.outcomes(reply)
        fresh = [o for o in outcomes if o.status is DrawStatus.NEW]
        metrics.DRAWS.inc(len(fresh))
        for kind, wins in Counter(o.prize.kind.value for o in fresh if o.prize).items():
            metrics.PRIZES.labels(kind).inc(wins)
        return [o.prize for o in outcomes]

    def _call(self, chunk: _Chunk, now_ms: int) -> ScriptCall:
        return chunk.campaign.call(chunk.entrants, chunk.tiers, now_ms, self._retry_ttl_s)
