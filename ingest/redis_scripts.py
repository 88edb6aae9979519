"""Runs the ``ScriptCall`` values of the sans-I/O packages: EVALSHA, reloaded on NOSCRIPT."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from codes.commands import LuaScript, ScriptCall


class ScriptRunner:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._digests: dict[LuaScript, str] = {}

    async def run(self, call: ScriptCall) -> Any:
        """The reply of one call; a Redis error is raised."""
        [reply] = await self.run_many([call])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def run_many(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """All calls in one round trip; where a call failed its reply is the exception.

        A call answered NOSCRIPT did not run, so after loading the script only those are sent
        again (redis-py's own pipelined scripts ask SCRIPT EXISTS on every execute instead).
        """
        replies = await self._pipeline(calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            for script in {calls[i].script for i in missing}:
                await self._redis.script_load(script.source)
            retried = await self._pipeline([calls[i] for i in missing])
            for i, reply in zip(missing, retried, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: Sequence[ScriptCall]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.execute_command(
                    "EVALSHA", self._digest(call.script), len(call.keys), *call.keys, *call.args
                )
            return list(await pipe.execute(raise_on_error=False))

    def _digest(self, script: LuaScript) -> str:
        digest = self._digests.get(script)
        if digest is None:
            digest = self._digests[script] = hashlib.sha1(script.source.encode()).hexdigest()
        return digest
