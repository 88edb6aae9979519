"""The open-loop load generator: fixed arrival rate, latency from due times, scan_load.lua's mix."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from benchmarks import open_loop
from ingest.ops.local_services import free_port
from ingest.ops.server import wait_until_serving

CODES = [f"C{index:06d}" for index in range(100_000)]
HOST = "127.0.0.1:8080"


@pytest.fixture
def hello_url() -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.hello_server", str(port)])
    try:
        assert wait_until_serving(url, 20.0), "hello_server did not start"
        yield url
    finally:
        server.terminate()
        server.wait(10)


def test_sustains_the_offered_rate(hello_url: str) -> None:
    requests = open_loop.build_requests(CODES, 500, hello_url.removeprefix("http://"))
    result = open_loop.measure(hello_url, 500, 1.0, 16, requests, drain_s=5.0)
    assert result["sent"] == result["completed"] == 500
    assert result["errors"] == result["non_2xx"] == 0
    assert abs(result["achieved_per_s"] - 500) <= 50
    assert 0 < result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"] <= result["max_ms"]


async def test_latency_includes_the_wait_for_a_connection(aiohttp_server: Any) -> None:
    """Twice the load one connection can carry: a request waits for those due before it, and
    its latency says so, where a closed-loop client would have seen the handler's 20 ms."""

    async def slow_scan(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(0.020)
        return web.json_response({"verdict": "genuine"})

    app = web.Application()
    app.router.add_post("/v1/scans", slow_scan)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}"
    requests = open_loop.build_requests(CODES, 100, f"127.0.0.1:{server.port}")
    result = await open_loop.run(url, 100, 1.0, 1, requests, drain_s=10.0)
    assert result["completed"] == 100
    assert result["errors"] == 0
    assert result["queued_max"] >= 10
    assert result["p50_ms"] >= 150
    assert result["p99_ms"] >= 400
    assert result["p99_ms"] >= 1.5 * result["p50_ms"]  # the backlog grows all along


@asynccontextmanager
async def raw_server(answer: list[bytes]) -> AsyncIterator[str]:
    """A server that answers every request with the pieces of ``answer``, written one by one."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = re.search(rb"Content-Length: (\d+)", head)
                assert length is not None
                await reader.readexactly(int(length[1]))
                for piece in answer:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.001)
        except asyncio.IncompleteReadError:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_reads_answers_arriving_in_pieces() -> None:
    answer = [b"HTTP/1.1 201 Created\r\nContent-", b"Length: 5\r\n\r", b"\nhel", b"lo"]
    async with raw_server(answer) as url:
        requests = open_loop.build_requests(CODES, 10, HOST)
        result = await open_loop.run(url, 50, 0.2, 2, requests, drain_s=5.0)
    assert result["completed"] == 10
    assert result["errors"] == result["non_2xx"] == 0


async def test_counts_unreadable_answers_as_errors() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    async with raw_server([chunked]) as url:
        requests = open_loop.build_requests(CODES, 10, HOST)
        result = await open_loop.run(url, 50, 0.2, 2, requests, drain_s=5.0)
    assert result["completed"] == 0
    assert result["errors"] == 10


def test_requests_are_deterministic_for_a_seed() -> None:
    first = open_loop.build_requests(CODES[:100], 200, HOST, seed=3)
    assert first == open_loop.build_requests(CODES[:100], 200, HOST, seed=3)
    assert first != open_loop.build_requests(CODES[:100], 200, HOST, seed=4)
    bodies = [request.split(b"\r\n\r\n", 1)[1] for request in first]
    assert bodies == open_loop.scan_bodies(CODES[:100], 200, seed=3)


def _split(request: bytes) -> tuple[str, dict[str, str], dict[str, Any]]:
    head, body = request.split(b"\r\n\r\n", 1)
    request_line, *header_lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert int(headers["Content-Length"]) == len(body)
    return request_line, headers, orjson.loads(body)


def test_requests_mirror_the_wrk_scripts_mix() -> None:
    count = 4000
    requests = open_loop.build_requests(CODES, count, HOST, members=50)
    kinds: Counter[str] = Counter()
    offsets: list[int] = []  # where each code sits in CODES, less the request's number
    for number, request in enumerate(requests):
        request_line, headers, body = _split(request)
        assert request_line == "POST /v1/scans HTTP/1.1"
        assert headers["Host"] == HOST
        assert headers["Content-Type"] == "application/json"
        assert headers["Connection"] == "keep-alive"
        assert re.fullmatch(r"198\.18\.\d{1,3}\.\d{1,3}", headers["X-Forwarded-For"])
        assert all(0 <= int(part) <= 255 for part in headers["X-Forwarded-For"].split(".")[2:])
        assert set(body) == {"code", "lat", "lon", "accuracy_m", "device_id", "member_id"}
        assert 31.2 <= body["lat"] <= 31.4
        assert 121.4 <= body["lon"] <= 121.6
        assert body["accuracy_m"] == 15
        assert 1 <= int(body["device_id"].removeprefix("dev-")) <= 100_000
        assert 1 <= int(body["member_id"].removeprefix("m-")) <= 50
        if body["code"].startswith("FAKE"):
            kinds["fake"] += 1
        else:
            offsets.append((int(body["code"][1:]) - number) % len(CODES))
    # first scans walk CODES in order, so they share one offset; repeats land anywhere
    _, kinds["first"] = Counter(offsets).most_common(1)[0]
    kinds["repeat"] = len(offsets) - kinds["first"]
    assert 0.01 <= kinds["fake"] / count <= 0.035
    assert 0.23 <= kinds["repeat"] / count <= 0.33
    assert kinds["first"] + kinds["repeat"] + kinds["fake"] == count


@pytest.mark.parametrize(
    "url", ["http://example.com:8080", "http://10.1.2.3:8080", "https://127.0.0.1:8443"]
)
def test_cli_refuses_anything_but_loopback(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    codes = tmp_path / "codes.txt"
    codes.write_text("C000001\n")
    arguments = ["--url", url, "--rate", "10", "--duration", "1", "--codes", str(codes)]
    with pytest.raises(SystemExit) as exit_:
        open_loop.main(arguments)
    assert exit_.value.code == 2
    assert "only http://127.0.0.1 or http://localhost" in capsys.readouterr().err
