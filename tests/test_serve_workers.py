"""`scanward serve --workers N`: processes sharing one port, stopped cleanly by SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import redis

from ingest.events.partitions import Partitions
from ingest.ops.local_services import free_port
from tests.conftest import serve_environment
from tests.helpers import ADMIN, ADMIN_TOKEN

pytestmark = pytest.mark.redis


def _wait_for_workers(url: str, process: subprocess.Popen[bytes], count: int) -> None:
    """Until ``count`` different processes have answered: the kernel only spreads connections
    over workers that are listening."""
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while len(seen) < count and time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            seen.add(asyncio.run(_health_pid(url)))
        except aiohttp.ClientError:
            time.sleep(0.1)
    assert len(seen) == count


async def _health_pid(url: str) -> int:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/healthz", headers=admin) as reply,
    ):
        pid: int = (await reply.json())["pid"]
        return pid


async def _scan_many(url: str, count: int) -> list[dict[str, object]]:
    async with aiohttp.ClientSession() as session:

        async def one(number: int) -> dict[str, object]:
            body = {"code": f"fake-{number}", "device_id": f"d{number}"}
            async with session.post(url + "/v1/scans", json=body) as reply:
                assert reply.status == 200
                answer: dict[str, object] = await reply.json()
                return answer

        return await asyncio.gather(*(one(n) for n in range(count)))


def test_workers_share_the_port_and_stop_cleanly(
    redis_url: str, keyring_path: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = serve_environment(redis_url, keyring_path, tmp_path, port)
    command = [sys.executable, "-m", "ingest.cli", "serve", "--workers", "2"]
    server = subprocess.Popen(command, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_workers(url, server, 2)
        answers = asyncio.run(_scan_many(url, 300))
        assert {a["verdict"] for a in answers} == {"counterfeit"}
        prefixes = {str(a["scan_id"])[:12] for a in answers}  # one id prefix per process
        assert len(prefixes) == 2
        metrics = asyncio.run(_metrics(url))
        assert 'scanward_scans_total{verdict="counterfeit"} 300.0' in metrics
        answered = 'scanward_http_responses_total{method="POST",route="/v1/scans",status="200"}'
        deadline = time.monotonic() + 5  # each worker publishes its request counts within 1 s
        while f"{answered} 300.0" not in metrics and time.monotonic() < deadline:
            time.sleep(0.2)
            metrics = asyncio.run(_metrics(url))
        assert f"{answered} 300.0" in metrics
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    with redis.Redis.from_url(redis_url) as client:
        assert sum(int(client.get(key) or 0) for key in Partitions().unsunk_keys) == 300
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # every worker has let go of the port


async def _metrics(url: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/metrics", headers=ADMIN) as reply,
    ):
        return await reply.text()
