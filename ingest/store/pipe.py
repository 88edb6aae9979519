"""A thin pipelined Redis client for the scan path.

One connection; each ``execute`` writes its commands back to back and gets their replies in
order, parsed by hiredis. Several ``execute`` calls may be in flight at once on the connection
(replies come back in the order the commands were written). redis-py's pipeline does the same
work through a connection pool, retry wrappers and per-command response callbacks, which cost
~10% of a scan's CPU.

Errors follow redis-py's classes, so callers treat both clients alike: an error reply is a
``ResponseError`` in place of its reply (``NoScriptError`` for NOSCRIPT, and the cluster's
redirections and refusals as ``MovedError``, ``AskError``, ``TryAgainError``,
``ClusterDownError``, turned into these once, here); a lost or refused
connection raises ``ConnectionError``, a reply later than the timeout ``TimeoutError``, and the
connection is then dropped (whatever was in flight has an unknown outcome) and made again by the
next call.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ingest import stage_timer
from ingest.store.scripts import Command

_SCRIPT_CALLS = frozenset({"EVALSHA", "EVAL"})

# error replies that callers act on, as redis-py's parser names them; the message keeps the rest
_ERROR_CLASSES: dict[str, type[ResponseError | BusyLoadingError]] = {
    "NOSCRIPT": NoScriptError,
    "MOVED": MovedError,
    "ASK": AskError,
    "TRYAGAIN": TryAgainError,
    "CLUSTERDOWN": ClusterDownError,
    "LOADING": BusyLoadingError,  # a restarted Redis reading its AOF: a ConnectionError
}


def _typed(error: ResponseError) -> ResponseError | BusyLoadingError:
    """An error reply as the redis-py class its prefix names (the rest stay ``ResponseError``)."""
    prefix, _, rest = str(error).partition(" ")
    cls = _ERROR_CLASSES.get(prefix)
    if cls is None:
        return error
    return cls(rest) if cls in (MovedError, AskError) else cls(str(error))


@dataclass
class _Pending:
    expected: int
    future: asyncio.Future[list[Any]]
    replies: list[Any] = field(default_factory=list)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: deque[_Pending] = deque()
        self._reader = hiredis.Reader(replyError=ResponseError)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        with stage_timer.REDIS_CLIENT:
            self._reader.feed(data)
            while (reply := self._reader.gets()) is not False:
                if isinstance(reply, ResponseError):
                    reply = _typed(reply)
                waiting = self.pending[0]
                waiting.replies.append(reply)
                if len(waiting.replies) == waiting.expected:
                    self.pending.popleft()
                    if not waiting.future.done():
                        waiting.future.set_result(waiting.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        while self.pending:
            future = self.pending.popleft().future
            if not future.done():
                future.set_exception(RedisConnectionError(f"connection to Redis lost: {exc}"))


class NotReplicated(RedisTimeoutError):
    """The primary ran the commands, but fewer replicas than asked acknowledged them in time:
    should the primary fail now, they may be lost, so their outcome is unknown."""


class RedisPipe:
    def __init__(
        self, url: str, timeout_s: float, wait_replicas: int = 0, wait_timeout_ms: int = 100
    ) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 6379
        self._setup: list[Command] = []
        if parts.password:
            user = unquote(parts.username) if parts.username else "default"
            self._setup.append(("AUTH", user, unquote(parts.password)))
        database = parts.path.strip("/")
        if database and database != "0":
            self._setup.append(("SELECT", database))
        self._timeout_s = timeout_s
        self._wait = ("WAIT", wait_replicas, wait_timeout_ms) if wait_replicas else None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """The replies in order; with ``wait_replicas``, a round trip with script calls (the
        writes) ends with WAIT, and if too few replicas acknowledged, each reply becomes
        ``NotReplicated``."""
        protocol = await self._connected()
        if self._wait is None or not any(command[0] in _SCRIPT_CALLS for command in commands):
            return await self._send(protocol, commands)
        *replies, acknowledged = await self._send(protocol, [*commands, self._wait])
        wanted, timeout_ms = self._wait[1], self._wait[2]
        if isinstance(acknowledged, int) and acknowledged >= wanted:
            return replies
        behind = NotReplicated(
            f"{acknowledged} of {wanted} replicas acknowledged in {timeout_ms} ms"
        )
        return [reply if isinstance(reply, Exception) else behind for reply in replies]

    async def load_scripts(self, sources: Sequence[str]) -> None:
        for reply in await self.execute([("SCRIPT", "LOAD", source) for source in sources]):
            if isinstance(reply, Exception):
                raise reply

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None

    async def _send(self, protocol: _Protocol, commands: Sequence[Command]) -> list[Any]:
        transport = protocol.transport
        if transport is None:
            raise RedisConnectionError("connection to Redis lost")
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        protocol.pending.append(_Pending(len(commands), future))
        with stage_timer.REDIS_CLIENT:
            encoded = b"".join(_encode(command) for command in commands)
        transport.write(encoded)  # its system call is the event loop's time, not the client's
        try:
            return await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError:
            transport.close()  # the replies still due would be matched to the wrong calls
            raise RedisTimeoutError(f"Redis did not answer in {self._timeout_s} s") from None

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is None or self._protocol.transport is None:
                self._protocol = await self._connect()
            return self._protocol

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(_Protocol, self._host, self._port), self._timeout_s
            )
        except (OSError, TimeoutError) as error:
            raise RedisConnectionError(f"cannot connect to Redis: {error}") from None
        if self._setup:
            for reply in await self._send(protocol, self._setup):
                if isinstance(reply, ResponseError):
                    raise RedisConnectionError(f"Redis refused the connection set-up: {reply}")
        return protocol


def _encode(command: Command) -> bytes:
    parts = [b"*%d\r\n" % len(command)]
    for argument in command:
        if isinstance(argument, str):
            argument = argument.encode()
        elif isinstance(argument, int):
            argument = b"%d" % argument
        # the payload joined as it is: formatting it in would copy a scan batch's bytes again
        parts += (b"$%d\r\n" % len(argument), argument, b"\r\n")
    return b"".join(parts)
