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


@dataclass(frozen=True, slots=True)
class ChangeStream:
    """A stream where a script appends each record of reference data it changes, as the record
    now is, for the sink to mirror into ClickHouse; and its count of entries not yet mirrored."""

    key: str

    @property
    def unsunk_key(self) -> str:
        return self.key + ":unsunk"

    @property
    def keys(self) -> tuple[str, str]:
        """The keys a script appending to the stream is given, last."""
        return (self.key, self.unsunk_key)
