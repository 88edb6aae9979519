"""Batches, shipments and distributors mirrored from Redis into ClickHouse as they change:
made through the API, moved by the real sink, read back with FINAL."""

from __future__ import annotations

from typing import Any, cast

import orjson
import pytest
import redis
from aiohttp.test_utils import TestClient

from codes import batches
from fraud import distributors, shipments
from fraud.distributors import Distributor
from ingest.cli import main
from ingest.sink import mirror, mirror_snapshot
from ingest.sink.mirror import CHANGE_STREAMS
from ingest.sink.streams import dead_letter_key
from ingest.store.scripts import BlockingScriptRunner
from ingest.warehouse.client import connect
from tests.helpers import ADMIN, batch_codes, order_batch
from tests.sink_support import query, running_sink, sink_settings, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]

Client = TestClient[Any, Any]
SQUARE = {
    "type": "Polygon",
    "coordinates": [[[120, 30], [122, 30], [122, 32], [120, 32], [120, 30]]],
}

_BATCHES = """
SELECT batch_id, sku, kind, first_serial, last_serial, quantity, status, revoked_ms > 0
FROM batches FINAL ORDER BY batch_id
"""
_SHIPMENTS = """
SELECT distributor_id, first_serial, last_serial, codes FROM shipments FINAL
ORDER BY distributor_id, first_serial
"""
_DISTRIBUTORS = (
    "SELECT distributor_id, name, territory FROM distributors FINAL ORDER BY distributor_id"
)


async def _put(client: Client, distributor_id: str, name: str) -> None:
    body = {"name": name, "territory": SQUARE}
    reply = await client.put(f"/v1/distributors/{distributor_id}", json=body, headers=ADMIN)
    assert reply.status in (200, 201), await reply.text()


async def _post(client: Client, path: str, body: object) -> None:
    reply = await client.post(path, json=body, headers=ADMIN)
    assert reply.status in (200, 201), await reply.text()


async def _reference_data(client: Client) -> list[dict[str, Any]]:
    """Two distributors (one renamed), a unit batch shipped in two parts, a case batch whose
    first case holds four units shipped by its code, and a revoked batch; the batches."""
    await _put(client, "EAST", "East Trading")
    await _put(client, "NORTH", "North Supply")
    await _put(client, "EAST", "East Trading Ltd")
    units = await order_batch(client, quantity=100)
    cases = await order_batch(client, quantity=5, kind="case", sku="BEER-500-X6")
    revoked = await order_batch(client, quantity=10, sku="COLA-330")
    unit_codes = await batch_codes(client, units["batch_id"], limit=10)
    [case] = await batch_codes(client, cases["batch_id"], limit=1)
    await _post(client, "/v1/aggregations", {"parent": case, "children": unit_codes[6:10]})
    await _post(client, "/v1/shipments", {"distributor_id": "EAST", "codes": [case]})
    first = units["first_serial"]
    part = {"batch_id": units["batch_id"], "serial_from": first, "serial_to": first + 5}
    await _post(client, "/v1/shipments", {"distributor_id": "NORTH", **part})
    await _post(client, f"/v1/batches/{revoked['batch_id']}/revoke", {})
    return [units, cases, revoked]


def _mirror(streams: redis.Redis, redis_url: str, database: str) -> None:
    """Runs the sink until every change is in ClickHouse."""
    with running_sink(sink_settings(redis_url, database)):
        wait_until(
            lambda: all(int(streams.get(c.unsunk_key) or 0) == 0 for c in CHANGE_STREAMS),
            20,
            "the changes to be mirrored",
        )


def _redis_state(streams: redis.Redis) -> dict[str, list[tuple[Any, ...]]]:
    """What Redis holds, in the shape of the mirror queries."""
    keys = cast(list[bytes], streams.zrange(batches.BATCH_INDEX_KEY, 0, -1))
    records = [cast(dict[bytes, bytes], streams.hgetall(key)) for key in keys]
    parsed = sorted(
        (batches.Batch.from_redis({k.decode(): v.decode() for k, v in r.items()}) for r in records),
        key=lambda batch: batch.batch_id,
    )
    lines = cast(list[bytes], streams.lrange(shipments.LOG_KEY, 0, -1))
    logged = [shipments.LoggedShipment.parse(line.decode()) for line in lines]
    stored = [orjson.loads(raw) for raw in streams.hvals(distributors.DISTRIBUTORS_KEY)]
    return {
        "batches": [
            (
                b.batch_id,
                b.sku,
                b.kind.value,
                b.first_serial,
                b.last_serial,
                b.quantity,
                b.status.value,
                int(b.status is batches.BatchStatus.REVOKED),
            )
            for b in parsed
        ],
        "shipments": sorted(
            (s.distributor_id, first, last, last - first + 1)
            for s in logged
            for first, last in s.ranges
        ),
        "distributors": sorted(
            (d["distributor_id"], d["name"], orjson.dumps(d["territory"]).decode()) for d in stored
        ),
    }


def _mirrored(database: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "batches": query(database, _BATCHES),
        "shipments": query(database, _SHIPMENTS),
        "distributors": query(database, _DISTRIBUTORS),
    }


async def test_changes_made_through_the_api_are_mirrored_with_their_history(
    client: Client, streams: redis.Redis, redis_url: str, database: str
) -> None:
    made = await _reference_data(client)
    # three puts, three orders, a revocation and two shipments wait for the sink
    health = await (await client.get("/healthz", headers=ADMIN)).json()
    assert health["unsunk_changes"] == 9
    assert (
        "scanward_unsunk_changes 9.0" in await (await client.get("/metrics", headers=ADMIN)).text()
    )
    _mirror(streams, redis_url, database)

    mirrored = _mirrored(database)
    assert mirrored == _redis_state(streams)
    assert [row[6] for row in mirrored["batches"]].count("revoked") == 1
    assert {name for _, name, _ in mirrored["distributors"]} == {"East Trading Ltd", "North Supply"}
    # the case and the four units it holds went east; six units of the batch went north
    assert sum(codes for d, *_, codes in mirrored["shipments"] if d == "EAST") == 5
    assert sum(codes for d, *_, codes in mirrored["shipments"] if d == "NORTH") == 6
    # every change is a row: three orders and a revocation; three puts
    assert query(database, "SELECT count() FROM batches") == [(len(made) + 1,)]
    assert query(database, "SELECT count() FROM distributors") == [(3,)]
    assert all(streams.xlen(c.key) == 0 for c in CHANGE_STREAMS), "mirrored entries are trimmed"


async def test_a_snapshot_mirrors_what_redis_held_before_and_repeats_harmlessly(
    client: Client, streams: redis.Redis, redis_url: str, database: str
) -> None:
    await _reference_data(client)
    for changes in CHANGE_STREAMS:  # as before the change streams existed
        streams.delete(changes.key, changes.unsunk_key)

    assert mirror_snapshot.snapshot(streams) == {"batches": 3, "shipments": 2, "distributors": 2}
    _mirror(streams, redis_url, database)
    assert _mirrored(database) == _redis_state(streams)

    mirror_snapshot.snapshot(streams)
    _mirror(streams, redis_url, database)
    assert _mirrored(database) == _redis_state(streams)
    assert query(database, "SELECT count() FROM batches") == [(6,)]


def test_the_mirror_keeps_the_order_redis_made_the_changes_in_not_their_clocks(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    """Two puts of a distributor from hosts whose clocks disagree: Redis keeps the one it ran
    last, and so does the mirror, before and after a snapshot."""
    scripts = BlockingScriptRunner(streams)
    for name, updated_ms in (("From the fast clock", 2_000), ("From the slow clock", 1_000)):
        scripts.run(Distributor.create("EAST", name, SQUARE, updated_ms).put())
    _mirror(streams, redis_url, database)
    assert [row[1] for row in query(database, _DISTRIBUTORS)] == ["From the slow clock"]
    mirror_snapshot.snapshot(streams)
    _mirror(streams, redis_url, database)
    assert [row[1] for row in query(database, _DISTRIBUTORS)] == ["From the slow clock"]


async def test_a_change_after_a_snapshot_wins(
    client: Client, streams: redis.Redis, redis_url: str, database: str
) -> None:
    batch = await order_batch(client, quantity=10)
    assert mirror_snapshot.snapshot(streams)["batches"] == 1
    await _post(client, f"/v1/batches/{batch['batch_id']}/revoke", {})
    _mirror(streams, redis_url, database)
    assert [row[6] for row in query(database, _BATCHES)] == ["revoked"]
    assert query(database, "SELECT count() FROM batches") == [(3,)]


async def test_an_entry_that_does_not_decode_is_set_aside_and_the_others_mirrored(
    client: Client, streams: redis.Redis, redis_url: str, database: str
) -> None:
    await _put(client, "EAST", "East Trading")
    streams.xadd(distributors.CHANGES.key, {"distributor": b"{not json"})
    streams.incr(distributors.CHANGES.unsunk_key)
    await _put(client, "NORTH", "North Supply")
    _mirror(streams, redis_url, database)
    assert [row[0] for row in query(database, _DISTRIBUTORS)] == ["EAST", "NORTH"]
    [(_, fields)] = cast(list[Any], streams.xrange(dead_letter_key(distributors.CHANGES.key)))
    assert fields[b"distributor"] == b"{not json"


def test_a_retried_write_inserts_only_the_ranges_the_table_lacks(database: str) -> None:
    """A row is known by its stream entry and, for a shipment, its range's place in it."""
    entries = [
        (b"1700000000000-0", {b"shipment": b"S1\nEAST\n1700000000000\n1-10,21-30"}),
        (b"1700000000000-1", {b"shipment": b"S2\nNORTH\n1700000000001\n11-20"}),
    ]
    columns = mirror.decode_shipments(shipments.CHANGES.key, entries)
    client = connect(database)
    try:
        table = mirror.ShipmentTable(client)
        streams = [shipments.CHANGES.key]
        table.insert({name: column[:1] for name, column in columns.items()}, streams)
        lacking = table.missing(columns)
        assert lacking["first_serial"].tolist() == [21, 11]
        table.insert(lacking, streams)
        assert len(table.missing(columns)["first_serial"]) == 0
    finally:
        client.disconnect()
    assert query(
        database, "SELECT shipment_id, first_serial, codes FROM shipments ORDER BY first_serial"
    ) == [
        ("S1", 1, 10),
        ("S2", 11, 10),
        ("S1", 21, 10),
    ]


async def test_the_mirror_command_prints_what_it_appended(
    client: Client,
    streams: redis.Redis,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _put(client, "EAST", "East Trading")
    monkeypatch.setenv("SCANWARD_REDIS_URL", redis_url)
    assert main(["mirror"]) == 0
    assert orjson.loads(capsys.readouterr().out) == {
        "batches": 0,
        "shipments": 0,
        "distributors": 1,
    }
    assert streams.xlen(distributors.CHANGES.key) == 2  # the put's and the snapshot's
    assert streams.get(distributors.CHANGES.unsunk_key) == b"2"
