"""Runs the ``ScriptCall`` values of the sans-I/O packages: EVALSHA, reloaded on NOSCRIPT."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from codes.commands import LuaScript, ScriptCall


class ScriptRunner:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._scripts: dict[LuaScript, AsyncScript] = {}

    async def run(self, call: ScriptCall) -> Any:
        script = self._scripts.get(call.script)
        if script is None:
            script = self._scripts[call.script] = self._redis.register_script(call.script.source)
        return await script(keys=list(call.keys), args=list(call.args))
