"""With Redis unreachable the API answers 503 in JSON: the client may retry; nothing is lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ingest.http.app import create_app
from ingest.ops.local_services import free_port
from tests.conftest import api_settings
from tests.helpers import ADMIN_TOKEN

AiohttpClient = Any


async def test_unreachable_redis_is_a_json_503(
    aiohttp_client: AiohttpClient, keyring_path: Path, tmp_path: Path
) -> None:
    settings = api_settings(f"redis://127.0.0.1:{free_port()}/0", keyring_path, tmp_path)
    client = await aiohttp_client(create_app(settings))
    health = await client.get("/healthz")
    assert health.status == 503
    order = {"sku": "S", "gtin": "4006381333931", "quantity": 5}
    reply = await client.post(
        "/v1/batches", json=order, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert reply.status == 503
    assert (await reply.json())["error"]["code"] == "unavailable"
