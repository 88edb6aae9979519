"""The fraud rules against a small synthetic world, through the real app and Redis: the goals
of issue 4 hold, and nobody but a guesser is refused."""

from __future__ import annotations

import dataclasses

import aiohttp
import pytest

from benchmarks.fraud_eval import run_world
from benchmarks.world import Label, WorldParams, build_world
from fraud.policy import FraudPolicy
from ingest.config import Settings
from ingest.http.app import create_app
from tests.helpers import ADMIN_TOKEN, AiohttpClient

SMALL = WorldParams(
    distributors=6,
    consumers=300,
    honest_scans=2_500,
    diverted_cases=4,
    clones=6,
    guessers=2,
    farms=2,
    harvested_scans=40,
    overscan_scans=120,
)


@pytest.mark.redis
@pytest.mark.parametrize("seed", [1, 2])
async def test_the_rules_meet_the_goals_on_a_small_world(
    aiohttp_client: AiohttpClient, settings: Settings, seed: int
) -> None:
    policy = FraudPolicy()  # the defaults the evaluation is about, address rules included
    app = create_app(
        dataclasses.replace(settings, trusted_proxies=("127.0.0.1",), fraud_policy=policy)
    )
    client = await aiohttp_client(app)
    world = build_world(seed, SMALL)
    async with aiohttp.ClientSession() as session:
        report = await run_world(session, str(client.make_url("/")), world, ADMIN_TOKEN)
    for label, statuses in report.statuses_by_label.items():
        expected = {"200", "429"} if label == Label.GUESSING.value else {"200"}
        assert set(statuses) <= expected, (label, statuses)
    assert report.recall["cloned"].value is not None
    assert report.recall["cloned"].value >= 0.99
    assert (report.recall["diverted"].value or 0.0) >= 0.95
    assert (report.recall["harvested"].value or 0.0) >= 0.99
    assert (report.recall["farm_devices"].value or 0.0) >= 0.95
    assert report.recall["address_farms"].value == 1.0  # both: fresh ids, and no device
    assert report.recall["address_farm_scans"].value == 1.0
    assert report.recall["overscanned"].value == 1.0
    assert report.honest_false_positives.total > 2_000
    false_positives = report.honest_false_positives.value or 0.0
    assert false_positives <= 0.001, report.false_positive_examples
    assert report.travellers.total > 0
