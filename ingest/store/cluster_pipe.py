"""The scan path's thin client on a Redis Cluster: each command goes to the primary serving the
slot of its key (CRC16 of the hash tag), over one ``RedisPipe`` per primary, and the primaries'
shares of a round trip travel at once.

Redirections are followed as the cluster specification says: MOVED (the slot has a new owner:
the command goes there, and the slot map is read again before the next call), ASK (the slot is
migrating: the command goes once to the named node, after ASKING). TRYAGAIN and CLUSTERDOWN (a
migration or a failover under way) are retried after a pause, a bounded number of times; what
still fails is returned in place, as any error reply. So is the ``ConnectionError`` (or
``TimeoutError``) of a primary that cannot be reached, in place of each of its commands: the
other primaries' replies stand, and the map is read again before the next call, which finds a
promoted replica.
redis-py's cluster pipeline does the same at 4-8 times the client CPU per round trip.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import AskError, ClusterDownError, MovedError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ingest.store.pipe import RedisPipe
from ingest.store.scripts import Command

_RETRY_PAUSES_S = (0.05, 0.1, 0.2, 0.4, 0.8)
"""One pause per retry of a TRYAGAIN or CLUSTERDOWN; a redirection is followed at once."""
_MAX_ROUNDS = 1 + len(_RETRY_PAUSES_S)
_SCRIPT_COMMANDS = {"EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO"}


class ClusterPipe:
    def __init__(
        self,
        urls: Sequence[str],
        timeout_s: float,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 100,
    ) -> None:
        self._seeds = [_node_name(url) for url in urls]
        self._template = urlsplit(urls[0])  # scheme and credentials, shared by every node
        self._timeout_s = timeout_s
        self._wait = (wait_replicas, wait_timeout_ms)  # each primary's, see RedisPipe
        self._pipes: dict[str, RedisPipe] = {}
        self._owners: list[str | None] = []  # by slot: "host:port" of its primary
        self._stale = True
        self._refreshing: asyncio.Lock | None = None

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Replies in order; an error reply is an exception in its place."""
        if self._stale:
            await self._refresh()
        replies: list[Any] = [None] * len(commands)
        targets = {i: self._owner_of(command) for i, command in enumerate(commands)}
        asking: set[int] = set()
        pauses = iter(_RETRY_PAUSES_S)
        for _ in range(_MAX_ROUNDS):
            again: dict[int, str | None] = {}  # None: route by the slot map
            wait = False
            for i, reply in (await self._send(commands, targets, asking)).items():
                replies[i] = reply
                if isinstance(reply, AskError):  # and MovedError, its subclass
                    again[i] = f"{reply.host}:{reply.port}"
                    if isinstance(reply, MovedError):
                        self._stale = True  # read the map again before the next call
                    else:
                        asking.add(i)
                elif isinstance(reply, TryAgainError | ClusterDownError):
                    again[i], wait = None, True
                    if isinstance(reply, ClusterDownError):
                        self._stale = True
            if not again:
                break
            if wait:
                delay = next(pauses, None)
                if delay is None:
                    break
                await asyncio.sleep(delay)
                if self._stale:
                    await self._refresh()
            targets = {i: node or self._owner_of(commands[i]) for i, node in again.items()}
        return [  # redirected round and round (a resharding under way): try again later
            TryAgainError(f"TRYAGAIN still redirected: {reply}")
            if isinstance(reply, AskError)
            else reply
            for reply in replies
        ]

    async def load_scripts(self, sources: Sequence[str]) -> None:
        """Loads the scripts on every primary (a script call may land on any of them)."""
        if self._stale:
            await self._refresh()
        load = [("SCRIPT", "LOAD", source) for source in sources]
        primaries = {owner for owner in self._owners if owner is not None}
        loads = [self._pipe(n).execute(load) for n in primaries]
        for replies in await asyncio.gather(*loads, return_exceptions=True):
            if isinstance(replies, RedisConnectionError | RedisTimeoutError):
                continue  # a primary down: the calls sent to it fail in place anyway
            if isinstance(replies, BaseException):
                raise replies
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply

    async def close(self) -> None:
        for pipe in self._pipes.values():
            await pipe.close()
        self._pipes.clear()

    async def _send(
        self, commands: Sequence[Command], targets: dict[int, str | None], asking: set[int]
    ) -> dict[int, Any]:
        """Each command to its node (ASKING before those redirected by ASK), all nodes at once;
        a command whose slot has no primary is answered CLUSTERDOWN without being sent."""
        by_node: dict[str, list[int]] = defaultdict(list)
        answered: dict[int, Any] = {}
        for i, node in targets.items():
            if node is None:
                answered[i] = ClusterDownError("CLUSTERDOWN the slot has no primary")
            else:
                by_node[node].append(i)
        nodes = list(by_node)
        sent = [self._node_share(commands, by_node[node], asking) for node in nodes]
        results = await asyncio.gather(
            *(self._pipe(node).execute(share) for node, share in zip(nodes, sent, strict=True)),
            return_exceptions=True,
        )
        for node, result in zip(nodes, results, strict=True):
            if isinstance(result, RedisConnectionError | RedisTimeoutError):
                self._stale = True  # a failover may be under way: read the map again next time
                for i in by_node[node]:  # this primary's commands fail, the others' are answered
                    answered[i] = result
                    asking.discard(i)
                continue
            if isinstance(result, BaseException):
                raise result
            replies = iter(result)
            for i in by_node[node]:
                if i in asking:
                    next(replies)  # ASKING's +OK
                    asking.discard(i)
                answered[i] = next(replies)
        return answered

    @staticmethod
    def _node_share(
        commands: Sequence[Command], indexes: list[int], asking: set[int]
    ) -> list[Command]:
        share: list[Command] = []
        for i in indexes:
            if i in asking:
                share.append(("ASKING",))
            share.append(commands[i])
        return share

    def _owner_of(self, command: Command) -> str | None:
        key = _key_of(command)
        if key is None:  # no key: any primary serves it
            return next((owner for owner in self._owners if owner is not None), None)
        return self._owners[key_slot(key.encode() if isinstance(key, str) else key)]

    def _pipe(self, node: str) -> RedisPipe:
        pipe = self._pipes.get(node)
        if pipe is None:
            netloc = self._template.netloc.rpartition("@")
            address = f"{netloc[0]}@{node}" if netloc[1] else node
            url = urlunsplit((self._template.scheme, address, "", "", ""))
            pipe = self._pipes[node] = RedisPipe(url, self._timeout_s, *self._wait)
        return pipe

    async def _refresh(self) -> None:
        """Reads the slot map from the first node that answers, the known primaries first."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            if not self._stale:
                return
            known = [owner for owner in dict.fromkeys(self._owners) if owner is not None]
            failures = []
            for node in dict.fromkeys([*known, *self._seeds]):
                try:
                    [reply] = await self._pipe(node).execute([("CLUSTER", "SLOTS")])
                except (RedisConnectionError, RedisTimeoutError) as error:
                    failures.append(f"{node}: {error}")
                    continue
                if isinstance(reply, Exception):  # LOADING after a restart, or not a cluster
                    failures.append(f"{node}: {reply}")
                    continue
                self._owners = _owners(reply, node)
                self._stale = False
                return
            raise RedisConnectionError(f"no node of the cluster answered ({'; '.join(failures)})")


def _key_of(command: Command) -> bytes | str | None:
    """The key a command is routed by: a script's first key, another command's first argument."""
    name = command[0]
    name = (name.decode() if isinstance(name, bytes) else str(name)).upper()
    if name in _SCRIPT_COMMANDS:
        key = command[3] if int(command[2]) > 0 else None
    else:
        key = command[1] if len(command) > 1 else None
    return None if isinstance(key, int) else key


def _owners(slots_reply: list[Any], asked: str) -> list[str | None]:
    """The primary of each slot from a CLUSTER SLOTS reply (an empty host is the node asked)."""
    owners: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
    asked_host = asked.rpartition(":")[0]
    for first, last, primary, *_replicas in slots_reply:
        host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
        node = f"{host or asked_host}:{int(primary[1])}"
        owners[int(first) : int(last) + 1] = [node] * (int(last) - int(first) + 1)
    return owners


def _node_name(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
