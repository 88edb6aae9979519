"""Faults under HTTP load, black-box: scans go in over HTTP, rows come out of ClickHouse.

The whole stack runs as processes (`scanward serve`, `scanward sink`, private Redis and ClickHouse)
while a client scans a few hundred times a second: genuine codes, repeats and counterfeits, each
with its own scan_id. ClickHouse is stopped for 10 s and started again on the same data; the sink
is killed -9 around its inserts and restarted. Either way ClickHouse ends with exactly the scans
that were answered 200, each once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from benchmarks.paced import launch_paced
from codes.keyring import Keyring
from ingest.ops import local_services
from ingest.ops.local_services import ServerProcess, free_port
from ingest.warehouse.client import connect
from tests.conftest import KEYRING_SECRET
from tests.helpers import (
    ADMIN,
    ADMIN_TOKEN,
    DISTRIBUTOR_BODY,
    DISTRIBUTOR_URL,
    ONE_ADDRESS_RULES,
    ORDER,
    shipment_of,
)
from tests.sink_support import restart_clickhouse

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SCANS_PER_S = 300
FRESH_CODES = 4000
STOP_TIMEOUT_S = 10.0


# --- processes --------------------------------------------------------------------------------


def _stop(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL if the process is still there after ``timeout_s``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def _scanward(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", command],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


class SinkProcess:
    """`scanward sink`, its output copied to a log file line by line as it comes."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "sink"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.log.open("a") as copy:
            for raw in self.process.stdout:
                line = raw.decode(errors="replace")
                copy.write(line)
                copy.flush()
                with self._changed:
                    self._lines.append(line)
                    self._changed.notify_all()

    def next_line_with(self, text: str, timeout_s: float) -> bool:
        """Waits for a line containing ``text`` written from now on; False after ``timeout_s``."""
        with self._changed:
            seen = len(self._lines)
            return self._changed.wait_for(
                lambda: any(text in line for line in self._lines[seen:]), timeout_s
            )

    def kill(self) -> None:
        assert self.process.poll() is None, f"the sink had exited already:\n{_tail(self.log)}"
        self.process.kill()
        self.process.wait()
        self._reader.join(5)

    def stop(self) -> None:
        _stop(self.process)
        self._reader.join(5)


def _clickhouse_answers(url: str) -> bool:
    client = connect(url)
    try:
        return bool(client.execute("SELECT 1") == [(1,)])
    except Exception:  # clickhouse-driver raises socket errors and its own alike
        return False
    finally:
        client.disconnect()


def _stop_clickhouse(server: ServerProcess, grace_s: float = 2.0) -> str:
    """SIGTERM; SIGKILL after ``grace_s`` (a graceful stop waits ~10 s for idle connections)."""
    server.process.terminate()
    try:
        server.process.wait(grace_s)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        return f"killed after {grace_s} s of SIGTERM"
    return "stopped by SIGTERM"


def _eventually(condition: Callable[[], object], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    if not _eventually(condition, timeout_s):
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class SlowLink:
    """A TCP proxy to ClickHouse that holds every chunk ``delay_s`` in each direction, as a slow
    network does. An insert then lasts a few delays: the server lists it in system.processes a
    delay before the client sends its data, and gets the data a delay after it was sent; a kill
    can land before the data went out or while it is on the way. Bytes sent before the client
    died are still delivered, then the connection to ClickHouse is closed, as TCP would."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.port = free_port()
        self.delay_s = delay_s
        self._target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._stopping = asyncio.Event()
        self._listening = threading.Event()
        self._connections: set[asyncio.Task[Any]] = set()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> SlowLink:
        self._thread.start()
        assert self._listening.wait(10), "the slow link did not start"
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        self._loop.close()

    def _serve(self) -> None:
        self._loop.run_until_complete(self._run())

    async def _run(self) -> None:
        server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        self._listening.set()
        await self._stopping.wait()
        server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def _connection(
        self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        to_server = None
        try:
            server, to_server = await asyncio.open_connection("127.0.0.1", self._target_port)
            await asyncio.gather(self._pump(client, to_server), self._pump(server, to_client))
        except OSError:
            pass
        finally:
            to_client.close()
            if to_server is not None:
                to_server.close()
            self._connections.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        in_flight: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            with contextlib.suppress(OSError):
                while chunk := await _delayed(in_flight):
                    sink.write(chunk)
                    await sink.drain()
            sink.close()

        delivery = asyncio.create_task(deliver())
        try:
            with contextlib.suppress(OSError):
                while chunk := await source.read(65536):
                    in_flight.put_nowait((loop.time() + self.delay_s, chunk))
            in_flight.put_nowait((loop.time() + self.delay_s, b""))
            await delivery
        finally:
            delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivery


async def _delayed(queue: asyncio.Queue[tuple[float, bytes]]) -> bytes:
    due, chunk = await queue.get()
    await asyncio.sleep(due - asyncio.get_running_loop().time())
    return chunk


# --- the stack --------------------------------------------------------------------------------


@dataclass
class Stack:
    """Redis, ClickHouse, one API process and the sink, each started and stopped by the test."""

    data_dir: Path
    env: dict[str, str]
    api: str
    redis: ServerProcess
    clickhouse: ServerProcess
    serve: subprocess.Popen[bytes] | None = None
    sinks: list[SinkProcess] = field(default_factory=list)

    @property
    def clickhouse_url(self) -> str:
        return self.clickhouse.url

    @property
    def sink(self) -> SinkProcess:
        return self.sinks[-1]

    def start_sink(self, clickhouse_url: str | None = None) -> SinkProcess:
        """A sink, talking to ClickHouse at ``clickhouse_url`` if given (through a proxy)."""
        env = self.env | ({"SCANWARD_CLICKHOUSE_URL": clickhouse_url} if clickhouse_url else {})
        self.sinks.append(SinkProcess(env, self.data_dir / "sink.log"))
        return self.sink

    def stop(self) -> None:
        for sink in self.sinks:
            sink.stop()
        if self.serve is not None:
            _stop(self.serve)
        self.clickhouse.stop()
        self.redis.stop()


def _environment(data_dir: Path, redis_url: str, clickhouse_url: str, port: int) -> dict[str, str]:
    keyring = data_dir / "keyring.bin"
    Keyring.new().save(keyring, KEYRING_SECRET)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANWARD_")}
    return env | {
        "SCANWARD_REDIS_URL": redis_url,
        "SCANWARD_CLICKHOUSE_URL": clickhouse_url,
        "SCANWARD_KEYRING_SECRET": KEYRING_SECRET,
        "SCANWARD_KEYRING_PATH": str(keyring),
        "SCANWARD_ADMIN_TOKEN": ADMIN_TOKEN,
        "SCANWARD_PORT": str(port),
        "SCANWARD_DATA_DIR": str(data_dir),
        # every scan comes from 127.0.0.1, counterfeits included: blocking that address for
        # guessing, or for its volume, is not what these tests are about
        "SCANWARD_FRAUD_POLICY": orjson.dumps(
            {**ONE_ADDRESS_RULES, "guess_flag_ip": 1000000, "guess_block_ip": 1000000}
        ).decode(),
    }


@contextlib.contextmanager
def running_stack(data_dir: Path, sink_flush_ms: int) -> Iterator[Stack]:
    redis_server = local_services.start_redis(data_dir)
    try:
        clickhouse = local_services.start_clickhouse(data_dir)
    except BaseException:
        redis_server.stop()
        raise
    port = free_port()
    env = _environment(data_dir, redis_server.url, clickhouse.url, port)
    env["SCANWARD_SINK_FLUSH_MS"] = str(sink_flush_ms)
    stack = Stack(data_dir, env, f"http://127.0.0.1:{port}", redis_server, clickhouse)
    try:
        migrate = subprocess.run(
            [sys.executable, "-m", "ingest.cli", "migrate"],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stderr.decode()
        serve_log = data_dir / "serve.log"
        stack.serve = _scanward("serve", env | {"SCANWARD_WORKERS": "1"}, serve_log)
        _wait_until(lambda: _health(stack.api) is not None, 30, f"the API ({_tail(serve_log)})")
        yield stack
    finally:
        stack.stop()


# --- HTTP -------------------------------------------------------------------------------------


def _call(url: str, body: object = None, method: str | None = None) -> tuple[int, bytes]:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, headers=ADMIN, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _health(api: str) -> tuple[int, dict[str, Any]] | None:
    """(status, body) of /healthz; None while the API does not accept connections."""
    try:
        status, body = _call(api + "/healthz")
    except OSError:
        return None
    return status, orjson.loads(body)


def _genuine_codes(api: str, count: int) -> list[str]:
    status, body = _call(api + "/v1/batches", {**ORDER, "quantity": count})
    assert status == 201, body
    batch = orjson.loads(body)
    status, body = _call(api + DISTRIBUTOR_URL, DISTRIBUTOR_BODY, "PUT")
    assert status in (200, 201), body
    status, body = _call(api + "/v1/shipments", shipment_of(batch))
    assert status == 201, body
    batch_id = batch["batch_id"]
    status, codes = _call(f"{api}/v1/batches/{batch_id}/codes?limit={count}")
    assert status == 200, codes
    return codes.decode().split()


@dataclass(frozen=True, slots=True)
class Answer:
    scan_id: str
    started: float  # time.monotonic() when sent
    finished: float  # ... and when answered
    status: int  # 0: no HTTP answer (connection failed or the client timed out)
    verdict: str = ""
    error: str = ""


class ScanLoad:
    """Scans at a steady rate from a thread of its own until stopped; every answer is recorded.

    Of every 20 scans, 12 scan a code not scanned before, 5 repeat a scanned code (from other
    devices too), 3 send a counterfeit code. Every scan has its own scan_id.
    """

    def __init__(self, api: str, codes: list[str], per_s: int, seed: int) -> None:
        self._api = api
        self._fresh = iter(codes)
        self._scanned: list[str] = []
        self._per_s = per_s
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._answers: list[Answer] = []
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> ScanLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> list[Answer]:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the scan client did not stop"
        return self._answers

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await launch_paced(self._per_s, lambda n: self._scan(session, n), self._stop.is_set)

    def _code(self, number: int) -> str:
        kind = number % 20
        if kind >= 17:
            return f"fake-{number:06d}-{self._random.getrandbits(32):08x}"
        fresh = next(self._fresh, None) if kind < 12 else None
        if fresh is None:  # a repeat (every 20 scans begin with fresh ones)
            return self._random.choice(self._scanned)
        self._scanned.append(fresh)
        return fresh

    def _body(self, number: int) -> dict[str, object]:
        body: dict[str, object] = {
            "code": self._code(number),
            "scan_id": f"load-{number:06d}",
            "device_id": f"phone-{self._random.randrange(200)}",
            "member_id": f"member-{self._random.randrange(50)}" if number % 3 else "",
        }
        if number % 4:
            body["lat"] = 52.52 + self._random.uniform(-0.05, 0.05)
            body["lon"] = 13.405 + self._random.uniform(-0.05, 0.05)
            body["accuracy_m"] = 15.0
        return body

    async def _scan(self, session: aiohttp.ClientSession, number: int) -> None:
        body = self._body(number)
        scan_id = str(body["scan_id"])
        started = time.monotonic()
        try:
            async with session.post(self._api + "/v1/scans", json=body) as reply:
                text = await reply.read()
                status = reply.status
        except (aiohttp.ClientError, TimeoutError) as error:
            answer = Answer(scan_id, started, time.monotonic(), 0, error=repr(error))
        else:
            verdict = orjson.loads(text).get("verdict", "") if status == 200 else ""
            problem = "" if status == 200 else text.decode(errors="replace")[:300]
            answer = Answer(scan_id, started, time.monotonic(), status, verdict, problem)
        self._answers.append(answer)


# --- checks -----------------------------------------------------------------------------------


def _query(url: str, sql: str) -> list[Any]:
    client = connect(url)
    try:
        return list(client.execute(sql))
    finally:
        client.disconnect()


def _wait_for_the_sink(stack: Stack, answered: int, timeout_s: float = 30.0) -> None:
    """Until every answered scan may have its row and /healthz reports no unsunk events; the
    caller then compares rows and answers (a timeout shows there as missing rows)."""

    def caught_up() -> bool:
        [(stored,)] = _query(stack.clickhouse_url, "SELECT uniqExact(scan_id) FROM scans")
        health = _health(stack.api)
        return stored >= answered and health is not None and health[1]["unsunk_events"] == 0

    if not _eventually(caught_up, timeout_s):
        print(f"the sink did not catch up in {timeout_s} s; its log ends:\n{_tail(stack.sink.log)}")
    time.sleep(1.0)  # a duplicate written late would show by now


def _assert_every_scan_answered(answers: list[Answer]) -> None:
    failed = [a for a in answers if a.status != 200]
    statuses = Counter(a.status for a in failed)
    assert not failed, f"{len(failed)} of {len(answers)} scans not answered 200 {statuses}: " + (
        ", ".join(f"{a.scan_id}: {a.status} {a.error}" for a in failed[:5])
    )


def _assert_exactly_the_answered_scans(url: str, answers: list[Answer]) -> None:
    answered = {a.scan_id: a.verdict for a in answers if a.status == 200}
    rows = _query(url, "SELECT scan_id, verdict FROM scans")
    copies = Counter(scan_id for scan_id, _ in rows)
    duplicated = {scan_id: n for scan_id, n in copies.items() if n > 1}
    missing = answered.keys() - copies.keys()
    unexpected = copies.keys() - answered.keys()
    assert not duplicated, f"{len(duplicated)} scans stored more than once: {_some(duplicated)}"
    assert not missing, f"{len(missing)} answered scans not in ClickHouse: {_some(missing)}"
    assert not unexpected, f"{len(unexpected)} rows of scans never answered: {_some(unexpected)}"
    [(count, distinct)] = _query(url, "SELECT count(), uniqExact(scan_id) FROM scans")
    assert count == distinct == len(answered)
    wrong = {s: (v, answered[s]) for s, v in rows if v != answered[s]}
    assert not wrong, f"verdicts stored (vs answered) differ: {_some(wrong)}"
    verdicts = Counter(answered.values())
    assert verdicts["genuine"] > 0
    assert verdicts["counterfeit"] > 0


def _some(items: Any, count: int = 5) -> str:
    listed = sorted(items.items() if isinstance(items, dict) else items)[:count]
    return ", ".join(map(str, listed))


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


# --- the faults -------------------------------------------------------------------------------


def test_clickhouse_stopped_10_s_under_load_loses_and_repeats_no_scan(tmp_path: Path) -> None:
    with running_stack(tmp_path, sink_flush_ms=200) as stack:
        stack.start_sink()
        codes = _genuine_codes(stack.api, FRESH_CODES)
        health_before = _health(stack.api)
        assert health_before is not None
        assert health_before[1]["status"] == "ok", health_before
        outage_health: list[tuple[int, dict[str, Any]] | None] = []
        with ScanLoad(stack.api, codes, SCANS_PER_S, seed=1) as load:
            began = time.monotonic()
            _sleep_until(began + 3)
            stopped = _stop_clickhouse(stack.clickhouse)
            down_at = time.monotonic()
            while time.monotonic() < down_at + 10:
                outage_health.append(_health(stack.api))
                time.sleep(0.5)
            restart_at = time.monotonic()
            stack.clickhouse = restart_clickhouse(stack.clickhouse, tmp_path)
            _wait_until(lambda: _clickhouse_answers(stack.clickhouse_url), 30, "ClickHouse")
            _sleep_until(max(began + 16, time.monotonic() + 2))  # and some with ClickHouse back
            answers = load.stop()
        _assert_every_scan_answered(answers)
        _wait_for_the_sink(stack, len(answers))
        _assert_exactly_the_answered_scans(stack.clickhouse_url, answers)
        health_after = _health(stack.api)

    during = [
        a for a in answers if a.status == 200 and down_at <= a.started and a.finished <= restart_at
    ]
    print(f"ClickHouse {stopped}; {len(answers)} scans, {len(during)} answered while it was down")
    assert len(during) > 5 * SCANS_PER_S, f"only {len(during)} scans answered in the outage"
    assert outage_health, "no /healthz during the outage"
    assert all(h is not None and h[0] == 200 for h in outage_health), outage_health
    assert {h[1]["status"] for h in outage_health if h is not None} == {"degraded"}, outage_health
    assert health_after is not None
    assert health_after[1]["status"] == "ok", health_after


def _insert_running(clickhouse_url: str, timeout_s: float) -> bool:
    """Waits until ClickHouse lists an insert into ``scans`` as running; False after the timeout."""
    client = connect(clickhouse_url)
    running = "SELECT count() FROM system.processes WHERE query LIKE 'INSERT INTO scans%'"
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if client.execute(running)[0][0]:
                return True
        return False
    finally:
        client.disconnect()


def _kill_before_the_insert_data_is_sent(stack: Stack, link: SlowLink) -> str:
    """Kills the sink as soon as its insert shows on the server: the query has arrived and
    the server's reply (the sample block) is still on the slow link, so no data was sent yet."""
    seen = _insert_running(stack.clickhouse_url, 3)
    stack.sink.kill()
    return "before an insert's data was sent" if seen else "(no insert seen in 3 s)"


def _kill_while_the_insert_data_travels(stack: Stack, link: SlowLink) -> str:
    """Kills the sink once it has sent an insert's data but before ClickHouse has received it:
    the server completes the insert after the sink has died."""
    seen = _insert_running(stack.clickhouse_url, 3)
    time.sleep(1.5 * link.delay_s)
    stack.sink.kill()
    return "while an insert's data was on its way" if seen else "(no insert seen in 3 s)"


def _kill_between_insert_and_ack(stack: Stack) -> str:
    """Kills the sink as soon as it logs an insert: before it has acknowledged the entries."""
    logged = stack.sink.next_line_with('"message":"inserted"', 3)
    stack.sink.kill()
    return "after an insert, before its ack" if logged else "(no insert logged in 3 s)"


def _kill_soon_after_restart(stack: Stack, chance: random.Random) -> str:
    """Kills a sink just started at a random moment of its first 0.3 s of work: it is writing
    the entries an earlier kill left unacknowledged, or the backlog that built up meanwhile."""
    started = stack.sink.next_line_with('"message":"sink started"', 10)
    delay = chance.uniform(0.0, 0.3)
    time.sleep(delay)
    stack.sink.kill()
    return f"{delay:.3f} s after its start" if started else "(no start logged in 10 s)"


def test_sink_killed_9_around_inserts_under_load_loses_and_repeats_no_scan(
    tmp_path: Path,
) -> None:
    chance = random.Random()
    kills: list[str] = []
    with running_stack(tmp_path, sink_flush_ms=100) as stack:
        clickhouse_port = urlsplit(stack.clickhouse_url).port
        assert clickhouse_port is not None
        with SlowLink(clickhouse_port, delay_s=0.05) as link:
            through_link = stack.clickhouse_url.replace(f":{clickhouse_port}/", f":{link.port}/")
            stack.start_sink(through_link)
            codes = _genuine_codes(stack.api, FRESH_CODES)
            with ScanLoad(stack.api, codes, SCANS_PER_S, seed=2) as load:
                began = time.monotonic()
                schedule: list[tuple[float, Callable[[], str]]] = [
                    (1.5, lambda: _kill_before_the_insert_data_is_sent(stack, link)),
                    (3.5, lambda: _kill_while_the_insert_data_travels(stack, link)),
                    (5.5, lambda: _kill_between_insert_and_ack(stack)),
                    (5.5, lambda: _kill_soon_after_restart(stack, chance)),
                ]
                for at_s, kill in schedule:
                    _sleep_until(began + at_s)
                    kills.append(kill())
                    stack.start_sink(through_link)
                _sleep_until(began + 10)
                answers = load.stop()
            _assert_every_scan_answered(answers)
            _wait_for_the_sink(stack, len(answers))
            _assert_exactly_the_answered_scans(stack.clickhouse_url, answers)
            stack.sink.stop()
            assert stack.sink.process.returncode == 0, _tail(stack.sink.log)
    print(f"{len(answers)} scans; the sink killed", "; ".join(kills))
