"""Redis work described as data.

The sans-I/O packages (``codes``, ``fraud``, ``rewards``) never talk to Redis themselves: they
return ``ScriptCall`` values and interpret the replies, and ``ingest`` runs the calls, one at a
time or pipelined for a whole micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A Lua script shipped beside the package that owns it."""

    name: str
    source: str

    @classmethod
    def load(cls, package: str, filename: str) -> LuaScript:
        return cls(filename, resources.files(package).joinpath(filename).read_text("utf-8"))


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """One invocation of a script: every key it touches shares one hash tag (one cluster slot)."""

    script: LuaScript
    keys: tuple[str, ...]
    args: tuple[str | int | bytes, ...]
