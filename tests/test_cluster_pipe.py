"""The scan path's cluster client on a real 3-master Redis Cluster: routing by slot, MOVED and
ASK followed, scripts on every primary, and the errors of a bad URL in one line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from codes.commands import LuaScript, ScriptCall
from ingest.store import connect
from ingest.store.cluster_pipe import ClusterPipe
from ingest.store.scripts import ScriptRunner

pytestmark = pytest.mark.cluster

_INCREMENT = LuaScript("increment.lua", "return redis.call('INCR', KEYS[1])")


@pytest.fixture
def primaries(cluster_url: str) -> Iterator[dict[str, redis.Redis]]:
    """A blocking client per primary, by node id."""
    clients = {}
    for url in connect.node_urls(cluster_url):
        client = redis.Redis.from_url(url)
        if client.info("replication")["role"] == "master":
            clients[_command(client, "CLUSTER", "MYID").decode()] = client
    yield clients
    for client in clients.values():
        client.close()


def _slot_owner_and_another(primaries: dict[str, redis.Redis], key: str) -> tuple[int, str, str]:
    """The key's slot, the id of the primary serving it and of another primary."""
    slot = key_slot(key.encode())
    owner = next(node_id for node_id, client in primaries.items() if _serves(client, slot))
    return slot, owner, next(node_id for node_id in primaries if node_id != owner)


def _serves(client: redis.Redis, slot: int) -> bool:
    myself = _command(client, "CLUSTER", "MYID").decode()
    for first, last, primary, *_ in _command(client, "CLUSTER", "SLOTS"):
        if first <= slot <= last:
            return bool(primary[2].decode() == myself)
    return False


async def test_commands_reach_the_primaries_of_their_slots_and_replies_keep_their_order(
    cluster_url: str, primaries: dict[str, redis.Redis]
) -> None:
    pipe = ClusterPipe(connect.node_urls(cluster_url), 5)
    keys = [f"{{scans:{n}}}:x" for n in range(32)]
    try:
        assert await pipe.execute([("SET", key, n) for n, key in enumerate(keys)]) == [b"OK"] * 32
        assert await pipe.execute([("GET", key) for key in keys]) == [b"%d" % n for n in range(32)]
    finally:
        await pipe.close()
    held = [client.dbsize() for client in primaries.values()]
    assert sum(held) == 32
    assert all(count > 0 for count in held)  # 32 tags: every primary serves some


async def test_scripts_are_loaded_on_every_primary(
    cluster_url: str, primaries: dict[str, redis.Redis]
) -> None:
    pipe = ClusterPipe(connect.node_urls(cluster_url), 5)
    runner = ScriptRunner(pipe)
    calls = [ScriptCall(_INCREMENT, (f"{{n:{n}}}",), ()) for n in range(24)]
    try:
        assert await runner.run_many(calls) == [1] * 24  # each first answered NOSCRIPT
        assert await runner.run_many(calls) == [2] * 24
    finally:
        await pipe.close()
    digest = runner._digest(_INCREMENT)
    assert [c.script_exists(digest) for c in primaries.values()] == [[True]] * len(primaries)


async def test_a_slot_given_to_another_primary_is_followed_there(
    cluster_url: str, primaries: dict[str, redis.Redis]
) -> None:
    pipe = ClusterPipe(connect.node_urls(cluster_url), 5)
    key = "{moving}:k"
    slot, owner, other = _slot_owner_and_another(primaries, key)
    try:
        await pipe.execute([("GET", key)])  # the slot map is read
        _assign(primaries, slot, other)  # the (empty) slot moves: the old owner answers MOVED
        try:
            assert await pipe.execute([("SET", key, "v"), ("GET", key)]) == [b"OK", b"v"]
            assert primaries[other].get(key) == b"v"
        finally:
            primaries[other].delete(key)
            _assign(primaries, slot, owner)
    finally:
        await pipe.close()


async def test_a_migrating_slot_is_asked_of_its_importing_node(
    cluster_url: str, primaries: dict[str, redis.Redis]
) -> None:
    pipe = ClusterPipe(connect.node_urls(cluster_url), 5)
    key = "{migrating}:k"
    slot, owner, other = _slot_owner_and_another(primaries, key)
    try:
        await pipe.execute([("GET", key)])
        _command(primaries[other], "CLUSTER", "SETSLOT", slot, "IMPORTING", owner)
        _command(primaries[owner], "CLUSTER", "SETSLOT", slot, "MIGRATING", other)
        # absent from the migrating node, so it answers ASK and the importing node takes it
        assert await pipe.execute([("SET", key, "v")]) == [b"OK"]
        assert _command(primaries[owner], "CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        with primaries[other].pipeline(transaction=False) as asking:
            _command(asking, "ASKING")
            asking.get(key)
            assert asking.execute()[1] == b"v"
            _command(asking, "ASKING")
            asking.delete(key)
            asking.execute()
    finally:
        for client in (primaries[owner], primaries[other]):
            _command(client, "CLUSTER", "SETSLOT", slot, "STABLE")
        await pipe.close()


async def test_a_seed_that_is_down_is_passed_over(cluster_url: str) -> None:
    nodes = connect.node_urls(cluster_url)
    down = nodes[0].rsplit(":", 1)[0] + ":1"  # the same credentials, on a port nothing serves
    pipe = ClusterPipe([down, *nodes], 5)
    try:
        assert await pipe.execute([("SET", "{seed}:k", 1)]) == [b"OK"]
    finally:
        await pipe.close()


@pytest.mark.redis
async def test_the_topology_is_asked_of_the_url_and_a_bad_one_is_one_line(
    cluster_url: str, redis_url: str
) -> None:
    assert connect.is_cluster(cluster_url)
    assert not connect.is_cluster(redis_url)
    assert isinstance(connect.scan_client(cluster_url, 5), ClusterPipe)
    with pytest.raises(RedisConnectionError, match=r"^no Redis node answered \(127\.0\.0\.1:1: "):
        connect.is_cluster("redis://127.0.0.1:1")
    single = ClusterPipe([redis_url], 5)
    try:
        with pytest.raises(RedisConnectionError, match="cluster support disabled"):
            await single.execute([("GET", "k")])
    finally:
        await single.close()


def _command(client: Any, *args: object) -> Any:
    """A raw command on a blocking client or pipeline (redis-py leaves these untyped)."""
    return client.execute_command(*args)


def _assign(primaries: dict[str, redis.Redis], slot: int, node_id: str) -> None:
    """Gives an empty slot to ``node_id``, told to every primary (as redis-cli's reshard does)."""
    for client in primaries.values():
        _command(client, "CLUSTER", "SETSLOT", slot, "NODE", node_id)
