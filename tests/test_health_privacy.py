"""/healthz tells anyone whether the API is well, and only an admin why not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ingest.config import Settings
from ingest.http.app import create_app
from ingest.ops.local_services import free_port
from tests.conftest import api_settings
from tests.helpers import ADMIN, AiohttpClient


@pytest.mark.redis
async def test_anonymous_callers_see_the_status_and_components_only(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    unreachable = f"clickhouse://default:hush-hush@127.0.0.1:{free_port()}/scanward"
    client = await aiohttp_client(
        create_app(dataclasses.replace(settings, clickhouse_url=unreachable))
    )

    anonymous = await client.get("/healthz")
    with_a_wrong_token = await client.get("/healthz", headers={"Authorization": "Bearer nope"})
    admin = await client.get("/healthz", headers=ADMIN)

    assert anonymous.status == with_a_wrong_token.status == admin.status == 200
    brief = await anonymous.json()
    assert brief == {
        "status": "degraded",
        "redis": "ok",
        "clickhouse": "unavailable",
        "backlog": "ok",
        "sink": "ok",
    }
    assert await with_a_wrong_token.json() == brief
    detail = await admin.json()
    assert detail["status"] == "degraded"
    assert detail["clickhouse"].startswith("unavailable: ")
    assert "partitions" in detail
    assert "unsunk_events" in detail
    assert "hush-hush" not in str(detail)


async def test_an_unreachable_redis_is_named_to_admins_only(
    aiohttp_client: AiohttpClient, keyring_path: Path, tmp_path: Path
) -> None:
    port = free_port()
    settings = api_settings(f"redis://127.0.0.1:{port}/0", keyring_path, tmp_path)
    client = await aiohttp_client(create_app(settings))

    anonymous = await client.get("/healthz")
    admin = await client.get("/healthz", headers=ADMIN)

    assert anonymous.status == admin.status == 503
    assert await anonymous.json() == {"status": "unavailable", "redis": "unavailable"}
    detail = await admin.json()
    assert detail["status"] == "unavailable"
    assert str(port) in detail["redis"]
