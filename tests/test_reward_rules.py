"""The rewards rules without servers: local days and pacing, odds slices, the choice, the
campaign document, the audit's bookkeeping."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from rewards.audit import DrawRow, audit
from rewards.calendar import CampaignDay
from rewards.campaigns import Campaign
from rewards.odds import DRAW_SCALE, NO_PRIZE, DrawValues, choose, draw_value, eligible, slices

NEW_YORK = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def make(*prizes: dict[str, object], **changes: object) -> Campaign:
    document = {
        "name": "c",
        "start": "2027-03-01T00:00:00-05:00",
        "end": "2027-11-30T00:00:00-05:00",
        "timezone": "America/New_York",
        "skus": ["S"],
        "prizes": list(prizes),
        **changes,
    }
    return Campaign.from_json("c", document, 5)


def prize(**fields: object) -> dict[str, object]:
    return {"id": "p", "kind": "cash", "value": 1, "total_budget": 10, "base_probability": 0.1} | (
        fields
    )


@pytest.mark.parametrize(
    ("moment", "hour", "hours"),
    [
        (datetime(2027, 6, 1, 0, 30, tzinfo=SHANGHAI), 0, 24),
        (datetime(2027, 6, 1, 23, 59, tzinfo=SHANGHAI), 23, 24),
        (datetime(2027, 3, 14, 12, 0, tzinfo=NEW_YORK), 11, 23),  # clocks went forward at 2
        (datetime(2027, 11, 7, 12, 0, tzinfo=NEW_YORK), 13, 25),  # and back
    ],
)
def test_a_local_day_counts_the_hours_that_really_passed(
    moment: datetime, hour: int, hours: int
) -> None:
    day = CampaignDay.at(ms(moment), moment.tzinfo)  # type: ignore[arg-type]
    assert (day.day, day.hour, day.hours) == (moment.date(), hour, hours)


def test_the_release_rounds_up_and_ends_at_the_cap() -> None:
    noon = CampaignDay(date(2027, 6, 1), 11, 24, 0)
    last = CampaignDay(date(2027, 6, 1), 23, 24, 0)
    assert [noon.released(cap) for cap in (0, 1, 10, 24, 4000)] == [0, 1, 5, 12, 2000]
    assert [last.released(cap) for cap in (1, 10, 4000)] == [1, 10, 4000]


def test_the_guarantee_is_due_in_the_last_window_of_the_day() -> None:
    day = CampaignDay.at(ms(datetime(2027, 6, 1, 12, tzinfo=SHANGHAI)), SHANGHAI)
    never = day.ends_ms * 2
    assert not day.guarantee_due(day.ends_ms - 61 * 60_000, 60, never)
    assert day.guarantee_due(day.ends_ms - 60 * 60_000, 60, never)
    closing_at_six = day.ends_ms - 6 * 3_600_000
    assert day.guarantee_due(closing_at_six - 30 * 60_000, 60, closing_at_six)


def test_slices_follow_the_tier_weights_and_leave_out_tiers_below_the_minimum() -> None:
    campaign = make(
        prize(id="a", base_probability=0.1, tier_weights={"1": 2}),
        prize(id="b", base_probability=0.25, min_tier=1),
    )
    tier_0, tier_1 = slices(campaign.prizes, 0), slices(campaign.prizes, 1)
    assert [(high - low) / DRAW_SCALE for low, high in tier_0] == pytest.approx([0.1, 0.0])
    assert [(high - low) / DRAW_SCALE for low, high in tier_1] == pytest.approx([0.2, 0.25])
    assert tier_1[0][1] == tier_1[1][0]  # back to back


def test_an_unavailable_prize_keeps_its_slice_and_a_guarantee_comes_first() -> None:
    bounds = [(0, 100), (100, 300)]
    assert choose(50, bounds, [False, True], [False, False]).prize == NO_PRIZE
    assert choose(150, bounds, [False, True], [False, False]).prize == 1
    owed = choose(999, bounds, [True, True], [False, True])
    assert (owed.prize, owed.guaranteed) == (1, True)


@pytest.mark.parametrize(
    ("risk", "cash", "item"), [(2, True, True), (3, True, False), (4, False, False)]
)
def test_risk_limits_what_a_draw_may_win(risk: int, cash: bool, item: bool) -> None:
    campaign = make(prize(id="cash"), prize(id="item", kind="item"))
    assert [eligible(p, 0, risk) for p in campaign.prizes] == [cash, item]


def test_a_campaign_document_reads_back_as_the_same_campaign() -> None:
    campaign = make(prize(tier_weights={"2": 3}, guaranteed_daily=1, daily_cap=2), batches=["b"])
    assert Campaign.from_json("c", campaign.to_json(), 5) == campaign


def _row(seq: int, prize_id: str = "", available: int = 0) -> DrawRow:
    noon = ms(datetime(2027, 6, 1, 12, tzinfo=NEW_YORK))
    value = draw_value(b"seed", f"s{seq}", "C" * 20)
    return DrawRow(seq, noon, f"s{seq}", "C" * 20, "m", 0, 0, value, prize_id, False, available, 1)


def test_the_audit_reports_reused_draw_numbers_and_unknown_versions() -> None:
    campaign = make(prize(base_probability=0.0))
    available = 1
    rows = [_row(1, available=available), _row(1, available=available)]
    rows.append(dataclasses.replace(_row(2, available=available), version=7))
    found = audit(rows, {1: campaign}, date(2027, 6, 1), b"seed", [])
    assert [(m.seq, m.field) for m in found] == [(1, "seq"), (2, "version")]


def test_the_audit_knows_a_spent_budget() -> None:
    campaign = make(prize(base_probability=1.0))
    claims_a_win = _row(1, "p", 1)
    spent = [(0, "p")] * 10  # the whole budget, won on other days before this draw
    found = audit([claims_a_win], {1: campaign}, date(2027, 6, 1), b"seed", spent)
    assert [(m.field, m.recorded, m.expected) for m in found] == [
        ("available", ["p"], []),
        ("prize", ["p", False], ["", False]),
    ]


@pytest.mark.parametrize("seed", [b"", b"k" * 32, b"x" * 100])
def test_the_fast_draw_value_is_the_published_one(seed: bytes) -> None:
    fast = DrawValues(seed)
    for scan_id in ("a", "8c8f8003e3196", "é-scan"):
        assert fast(scan_id, "C" * 20) == draw_value(seed, scan_id, "C" * 20)


def test_a_scan_id_seen_to_win_draws_anew_with_another_code() -> None:
    seed = b"k" * 32
    assert draw_value(seed, "lucky", "A" * 20) != draw_value(seed, "lucky", "B" * 20)


def test_the_audit_folds_in_other_days_awards_where_their_numbers_fall() -> None:
    campaign = make(prize(base_probability=1.0, total_budget=2))
    day = date(2027, 6, 1)
    # seq 1 and 5 went to the day before (5: a batch stamped before midnight, drawn after 3)
    honest = [_row(3, "p", 1), _row(7)]
    assert audit(honest, {1: campaign}, day, b"seed", [(1, "p"), (5, "p")]) == []
    over_budget = [_row(3, "p", 1), _row(7, "p", 1)]
    found = audit(over_budget, {1: campaign}, day, b"seed", [(5, "p")])
    assert [(m.seq, m.field) for m in found] == [(7, "available"), (7, "prize")]
