"""Open-loop load for ``POST /v1/scans``: a fixed arrival rate, latency from intended send times.

wrk is closed-loop: a connection sends its next request only once the previous one is answered,
so a slow server slows the client down and the queueing delay never shows in the latencies
("coordinated omission"). Here, as in wrk2, request ``i`` is due at ``t0 + i / rate`` whatever
the server does; a request that finds no idle keep-alive connection waits in a FIFO queue for
the next one to free up, and its latency runs from its due time to its full answer.

The traffic mix mirrors ``scan_load.lua`` (the closed-loop wrk script): ~2% counterfeit codes,
~28% repeat scans of a random issued code, the rest first scans of the next code in sequence,
from phones around Shanghai, 100,000 devices, ``--members`` members and 65,536 client addresses
(X-Forwarded-For). Every request is built before the timed window, deterministically from
``--seed``, so the sending loop does no formatting.

``python -m benchmarks.open_loop --url http://127.0.0.1:PORT --rate R --duration S --codes FILE``
prints one JSON line. Timers have a resolution of 1 ms, so a request may go out up to ~1 ms after
its due time; that delay counts in its latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import numpy as np
import orjson
import uvloop

DEFAULT_CONNECTIONS = 128
DEFAULT_MEMBERS = 50_000
DEFAULT_SEED = 7
DEFAULT_DRAIN_S = 10.0
FAKE_SHARE = 0.02
REPEAT_SHARE = 0.28
DEVICES = 100_000
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
# uvloop rounds a shorter sleep to 0 and would spin; being late by this much counts as latency
MIN_SLEEP_S = 0.001
RECONNECT_PAUSE_S = 0.1

log = logging.getLogger(__name__)


def loopback_target(url: str) -> tuple[str, int]:
    """The (address, port) to connect to for ``url``; ``ValueError`` unless it is plain HTTP
    on 127.0.0.1 or localhost."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"{url}: only http://127.0.0.1 or http://localhost is allowed")
    return "127.0.0.1", parts.port or 80


def request_count(rate: float, duration_s: float) -> int:
    """How many requests a window of ``duration_s`` seconds at ``rate`` per second offers."""
    return max(1, round(rate * duration_s))


def scan_bodies(
    codes: Sequence[str],
    count: int,
    members: int = DEFAULT_MEMBERS,
    seed: int = DEFAULT_SEED,
) -> list[bytes]:
    """``count`` JSON bodies for ``POST /v1/scans`` with ``scan_load.lua``'s mix over ``codes``.
    The same seed gives the same bodies."""
    return _scan_bodies(codes, count, members, np.random.default_rng(seed))


def _scan_bodies(
    codes: Sequence[str], count: int, members: int, random: np.random.Generator
) -> list[bytes]:
    if not codes:
        raise ValueError("no codes to scan")
    # as in scan_load.lua: position walks the codes from a random start, one step a request
    positions = random.integers(len(codes)) + 1 + np.arange(count)
    picks = random.random(count)
    repeats = random.integers(len(codes), size=count)
    indexes = np.where(picks < FAKE_SHARE + REPEAT_SHARE, repeats, positions % len(codes))
    columns = zip(
        (picks < FAKE_SHARE).tolist(),
        positions.tolist(),
        indexes.tolist(),
        (31.2 + random.random(count) * 0.2).tolist(),
        (121.4 + random.random(count) * 0.2).tolist(),
        random.integers(1, DEVICES + 1, size=count).tolist(),
        random.integers(1, members + 1, size=count).tolist(),
        strict=True,
    )
    bodies = []
    for fake, position, index, lat, lon, device, member in columns:
        code = orjson.dumps(f"FAKE{position}" if fake else codes[index]).decode()
        body = (
            f'{{"code":{code},"lat":{lat:.5f},"lon":{lon:.5f},"accuracy_m":15,'
            f'"device_id":"dev-{device}","member_id":"m-{member}"}}'
        )
        bodies.append(body.encode())
    return bodies


def build_requests(
    codes: Sequence[str],
    count: int,
    host: str,
    members: int = DEFAULT_MEMBERS,
    seed: int = DEFAULT_SEED,
) -> list[bytes]:
    """``count`` complete ``POST /v1/scans`` requests (head and body) carrying ``scan_bodies``,
    each from a random client address; ``host`` is the Host header. The same seed gives the
    same requests."""
    random = np.random.default_rng(seed)
    bodies = _scan_bodies(codes, count, members, random)
    clients = random.integers(256, size=(count, 2)).tolist()
    requests = []
    for body, (subnet, client) in zip(bodies, clients, strict=True):
        head = (
            f"POST /v1/scans HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Connection: keep-alive\r\nX-Forwarded-For: 198.18.{subnet}.{client}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


def read_codes(path: Path) -> list[str]:
    """The scan codes in ``path``, one a line."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class BadResponse(Exception):
    """An answer this client does not read: not HTTP/1.x, chunked, no Content-Length..."""


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """The status, body length and whether the connection stays open, from a response's
    status line and headers (without the blank line)."""
    if not head.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):
        raise BadResponse(f"not an HTTP/1.x response: {head[:40]!r}")
    try:
        status = int(head[9:12])
    except ValueError:
        raise BadResponse(f"bad status line: {head[:40]!r}") from None
    headers = head.lower()
    if b"\r\ntransfer-encoding:" in headers:
        raise BadResponse("a Transfer-Encoding body (only Content-Length is read)")
    length_at = headers.find(b"\r\ncontent-length:")
    if length_at < 0:
        raise BadResponse(f"no Content-Length in a {status} response")
    value_at = length_at + len(b"\r\ncontent-length:")
    value_end = headers.find(b"\r\n", value_at)
    try:
        length = int(headers[value_at : value_end if value_end >= 0 else None])
    except ValueError:
        raise BadResponse("bad Content-Length") from None
    return status, length, b"\r\nconnection: close" not in headers


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time, as wrk's do."""

    def __init__(self, load: _OpenLoop) -> None:
        self._load = load
        self._transport: asyncio.Transport | None = None
        self._in_flight: int | None = None
        self._unread = b""  # the start of an answer that has not fully arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def send(self, index: int, request: bytes) -> None:
        assert self._transport is not None
        self._in_flight = index
        self._transport.write(request)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        received_at = time.perf_counter()
        if self._unread:
            data = self._unread + data
        try:
            read_up_to, keep_alive = self._read_answers(data, received_at)
        except BadResponse as problem:
            self._fail(str(problem))
            return
        self._unread = data[read_up_to:]
        if not keep_alive:
            self.close()
        elif self._in_flight is None:
            self._load.on_idle(self)

    def _read_answers(self, data: bytes, received_at: float) -> tuple[int, bool]:
        """Records every complete answer in ``data``; where the unread rest starts, and whether
        the server keeps the connection open."""
        start, keep_alive = 0, True
        while (head_end := data.find(b"\r\n\r\n", start)) >= 0:
            status, length, keep_alive = _parse_head(data[start:head_end])
            end = head_end + 4 + length
            if end > len(data):
                break
            if self._in_flight is None:
                raise BadResponse("an answer to no request")
            self._load.on_answer(self._in_flight, status, received_at)
            self._in_flight = None
            start = end
        if self._in_flight is None and start < len(data):
            raise BadResponse("more data than the answer")
        return start, keep_alive

    def _fail(self, reason: str) -> None:
        if self._in_flight is not None:
            self._load.on_failure(reason)
            self._in_flight = None
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._in_flight is not None:
            self._load.on_failure(f"connection lost: {exc or 'closed by server'}")
            self._in_flight = None
        self._load.on_lost(self)


class _OpenLoop:
    """Sends ``requests`` at ``rate`` over a pool of connections and records every latency."""

    def __init__(self, address: tuple[str, int], requests: Sequence[bytes], rate: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._address = address
        self._requests = requests
        self._rate = rate
        self._latencies = np.full(len(requests), np.nan)
        self._idle: deque[_Connection] = deque()
        self._waiting: deque[int] = deque()  # indexes of due requests with no connection yet
        self._open: set[_Connection] = set()
        self._reconnecting: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._warned: set[str] = set()
        self.sending_done = asyncio.Event()
        self.all_settled = asyncio.Event()
        self.started_at = 0.0
        self.last_answer_at = 0.0
        self._due = 0
        self.sent = 0
        self.completed = 0
        self.failed = 0
        self.non_2xx = 0
        self.queued_max = 0

    async def connect(self, count: int) -> None:
        for connection in await asyncio.gather(*(self._connect() for _ in range(count))):
            self._idle.append(connection)

    async def _connect(self) -> _Connection:
        _, connection = await self._loop.create_connection(
            lambda: _Connection(self), *self._address
        )
        self._open.add(connection)
        return connection

    def start(self) -> None:
        self.started_at = time.perf_counter()
        self._send_due()

    def _send_due(self) -> None:
        now = time.perf_counter()
        due_by_now = min(len(self._requests), int((now - self.started_at) * self._rate) + 1)
        for index in range(self._due, due_by_now):
            if self._idle:
                self._send(self._idle.popleft(), index)
            else:
                self._waiting.append(index)
        self._due = due_by_now
        self.queued_max = max(self.queued_max, len(self._waiting))
        if self._due == len(self._requests):
            self.sending_done.set()
            return
        next_due_at = self.started_at + self._due / self._rate
        delay = max(next_due_at - time.perf_counter(), MIN_SLEEP_S)
        self._timer = self._loop.call_later(delay, self._send_due)

    def _send(self, connection: _Connection, index: int) -> None:
        connection.send(index, self._requests[index])
        self.sent += 1

    def on_idle(self, connection: _Connection) -> None:
        if self._waiting:
            self._send(connection, self._waiting.popleft())
        else:
            self._idle.append(connection)

    def on_answer(self, index: int, status: int, received_at: float) -> None:
        self._latencies[index] = received_at - (self.started_at + index / self._rate)
        self.last_answer_at = received_at
        self.completed += 1
        if not 200 <= status < 300:
            self.non_2xx += 1
        self._note_settled()

    def on_failure(self, reason: str) -> None:
        self.failed += 1
        if not self._closing:  # else this client closed the connection
            self._warn_once(f"request failed: {reason}")
        self._note_settled()

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s", message)

    def _note_settled(self) -> None:
        if self.completed + self.failed == len(self._requests):
            self.all_settled.set()

    def on_lost(self, connection: _Connection) -> None:
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        if not self._closing:
            task = self._loop.create_task(self._reconnect())
            self._reconnecting.add(task)
            task.add_done_callback(self._reconnecting.discard)

    async def _reconnect(self) -> None:
        while True:
            try:
                connection = await self._connect()
            except OSError as problem:
                self._warn_once(f"cannot reconnect: {problem}")
                await asyncio.sleep(RECONNECT_PAUSE_S)
            else:
                self.on_idle(connection)
                return

    async def close(self) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        for task in self._reconnecting:
            task.cancel()
        await asyncio.gather(*self._reconnecting, return_exceptions=True)
        for connection in list(self._open):
            connection.close()

    def summary(self, duration_s: float) -> dict[str, Any]:
        answered_ms = self._latencies[~np.isnan(self._latencies)] * 1000
        if answered_ms.size:
            p50, p90, p99, p999 = np.percentile(answered_ms, [50, 90, 99, 99.9])
            max_ms, mean_ms = answered_ms.max(), answered_ms.mean()
        else:
            p50 = p90 = p99 = p999 = max_ms = mean_ms = 0.0
        answering_s = self.last_answer_at - self.started_at
        return {
            "offered_per_s": self._rate,
            "seconds": duration_s,
            "sent": self.sent,
            "completed": self.completed,
            "achieved_per_s": round(self.completed / answering_s, 1) if self.completed else 0.0,
            "errors": len(self._requests) - self.completed,
            "non_2xx": self.non_2xx,
            "p50_ms": round(float(p50), 3),
            "p90_ms": round(float(p90), 3),
            "p99_ms": round(float(p99), 3),
            "p999_ms": round(float(p999), 3),
            "max_ms": round(float(max_ms), 3),
            "mean_ms": round(float(mean_ms), 3),
            "queued_max": self.queued_max,
        }


async def run(
    url: str,
    rate: float,
    duration_s: float,
    connections: int,
    requests: Sequence[bytes],
    drain_s: float,
) -> dict[str, Any]:
    """Offers the first ``request_count(rate, duration_s)`` of ``requests`` to ``url`` at
    ``rate`` per second over ``connections`` keep-alive connections, then waits up to
    ``drain_s`` seconds for the answers still due.

    The summary: ``offered_per_s``, ``seconds`` (the sending window), ``sent`` (written to a
    connection), ``completed`` (answered, whatever the status), ``achieved_per_s`` (completed
    over the time from the start to the last answer), ``errors`` (connection lost, unreadable
    answer, or no answer when the drain ends), ``non_2xx``, ``p50_ms`` ``p90_ms`` ``p99_ms``
    ``p999_ms`` ``max_ms`` ``mean_ms`` (latencies of the answered requests from their due
    times) and ``queued_max`` (most requests waiting for a free connection at once)."""
    if rate <= 0 or duration_s <= 0 or connections < 1:
        raise ValueError("rate, duration and connections must be positive")
    count = request_count(rate, duration_s)
    if len(requests) < count:
        raise ValueError(f"{len(requests)} requests for a window that offers {count}")
    load = _OpenLoop(loopback_target(url), requests[:count], rate)
    try:
        await load.connect(connections)
        load.start()
        await load.sending_done.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(load.all_settled.wait(), drain_s)
    finally:
        await load.close()
    return load.summary(duration_s)


def measure(
    url: str,
    rate: float,
    duration_s: float,
    connections: int,
    requests: Sequence[bytes],
    drain_s: float = DEFAULT_DRAIN_S,
) -> dict[str, Any]:
    """``run`` on an event loop of its own (uvloop), for callers outside asyncio."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run(url, rate, duration_s, connections, requests, drain_s))


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.open_loop", description=__doc__)
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--rate", type=float, required=True, help="requests/s offered")
    parser.add_argument("--duration", type=float, required=True, help="seconds of sending")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    parser.add_argument("--codes", type=Path, required=True, help="one scan code per line")
    parser.add_argument("--members", type=int, default=DEFAULT_MEMBERS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--drain", type=float, default=DEFAULT_DRAIN_S, help="max seconds to wait for answers"
    )
    arguments = parser.parse_args(argv)
    try:
        loopback_target(arguments.url)
    except ValueError as problem:
        parser.error(str(problem))
    if min(arguments.rate, arguments.duration, arguments.connections, arguments.members) <= 0:
        parser.error("--rate, --duration, --connections and --members must be positive")
    return arguments


def main(argv: Sequence[str] | None = None) -> None:
    arguments = _arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    requests = build_requests(
        read_codes(arguments.codes),
        request_count(arguments.rate, arguments.duration),
        urlsplit(arguments.url).netloc,
        arguments.members,
        arguments.seed,
    )
    try:
        result = measure(
            arguments.url,
            arguments.rate,
            arguments.duration,
            arguments.connections,
            requests,
            arguments.drain,
        )
    except KeyboardInterrupt:
        sys.exit(130)
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")


if __name__ == "__main__":
    main()
