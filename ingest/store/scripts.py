"""Runs the ``ScriptCall`` values of the sans-I/O packages: EVALSHA, reloaded on NOSCRIPT.

An error reply that the call's script declares (``LuaScript.errors``) comes back as the domain
exception it stands for, converted here once, so callers catch exceptions, not reply texts; any
other error reply stays the Redis client's ``ResponseError``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol, cast

from redis import Redis as BlockingRedis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.cluster import RedisCluster as BlockingRedisCluster
from redis.exceptions import NoScriptError, ResponseError

from codes.commands import LuaScript, ScriptCall
from ingest import stage_timer

Command = Sequence[bytes | str | int]
AsyncRedis = Redis | RedisCluster
"""A redis-py client of one node or of a cluster: the commands scanward uses work on both."""
SyncRedis = BlockingRedis | BlockingRedisCluster
"""The same, blocking."""


class Commands(Protocol):
    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Replies in order, in one round trip; an error reply is an exception in its place."""

    async def load_scripts(self, sources: Sequence[str]) -> None:
        """Loads the scripts where they will run: on every primary of a cluster."""


class RedisPyCommands:
    """``Commands`` over a redis-py client, one node's or a cluster's (a pipeline per call)."""

    def __init__(self, redis: AsyncRedis) -> None:
        self._redis = redis

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))

    async def load_scripts(self, sources: Sequence[str]) -> None:
        for source in sources:  # SCRIPT LOAD goes to every primary, never in a pipeline
            await self._redis.script_load(source)


class ScriptRunner:
    def __init__(self, commands: Commands) -> None:
        self._commands = commands
        self._digests: dict[LuaScript, str] = {}

    async def run(self, call: ScriptCall) -> Any:
        """The reply of one call; an error is raised (as its script declares it)."""
        [reply] = await self.run_many([call])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def run_many(self, calls: Sequence[ScriptCall | Command]) -> list[Any]:
        """All calls in one round trip; where a call failed its reply is the exception (as its
        script declares it). Plain commands may go in the same round trip (a single-key read
        needs no script).

        A call answered NOSCRIPT did not run, so after loading the script only those are sent
        again (redis-py's own pipelined scripts ask SCRIPT EXISTS on every execute instead).
        """
        if not calls:  # nothing to send: no reply would ever come
            return []
        replies = await self._evaluate(calls)
        with stage_timer.REDIS_CLIENT:
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            scripts = {cast(ScriptCall, calls[i]).script for i in missing}
            await self._commands.load_scripts([s.source for s in scripts])
            retried = await self._evaluate([calls[i] for i in missing])
            for i, reply in zip(missing, retried, strict=True):
                replies[i] = reply
        with stage_timer.REDIS_CLIENT:
            for i, reply in enumerate(replies):
                if isinstance(reply, ResponseError):
                    replies[i] = _declared(calls[i], reply)
        return replies

    async def _evaluate(self, calls: Sequence[ScriptCall | Command]) -> list[Any]:
        with stage_timer.REDIS_CLIENT:
            commands = [
                ("EVALSHA", self._digest(call.script), len(call.keys), *call.keys, *call.args)
                if isinstance(call, ScriptCall)
                else call
                for call in calls
            ]
        return await self._commands.execute(commands)

    def _digest(self, script: LuaScript) -> str:
        digest = self._digests.get(script)
        if digest is None:
            digest = self._digests[script] = hashlib.sha1(script.source.encode()).hexdigest()
        return digest


class BlockingScriptRunner:
    """Runs calls one at a time on a blocking client, for commands and tests (redis-py's
    ``Script`` sends EVALSHA and loads the script on NOSCRIPT)."""

    def __init__(self, redis: SyncRedis) -> None:
        self._redis = redis
        self._scripts: dict[LuaScript, Any] = {}

    def run(self, call: ScriptCall) -> Any:
        """The reply of the call; an error is raised (as its script declares it)."""
        script = self._scripts.get(call.script)
        if script is None:
            script = self._scripts[call.script] = self._redis.register_script(call.script.source)
        try:
            return script(keys=list(call.keys), args=list(call.args))
        except ResponseError as error:
            declared = call.script.error(str(error))
            if declared is None:
                raise
            raise declared from None


def _declared(call: ScriptCall | Command, error: ResponseError) -> Exception:
    """The exception the call's script declares for this error reply, or the reply itself."""
    declared = call.script.error(str(error)) if isinstance(call, ScriptCall) else None
    return error if declared is None else declared
