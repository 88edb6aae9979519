"""Redis work described as data.

The sans-I/O packages (``codes``, ``fraud``, ``rewards``) never talk to Redis themselves: they
return ``ScriptCall`` values and interpret the replies, and ``ingest`` runs the calls, one at a
time or pipelined for a whole micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources

ErrorReplies = Mapping[str, Callable[[str], Exception]]
"""The error replies a script gives on purpose: prefix -> the exception, from the message."""


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A Lua script shipped beside the package that owns it, with the errors it replies on
    purpose: ``PREFIX message``, whose prefix is in ``errors``, stands for the exception
    ``errors[PREFIX](message)``, which the script runners give in place of the Redis error."""

    name: str
    source: str
    errors: ErrorReplies = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, package: str, filename: str, errors: ErrorReplies | None = None) -> LuaScript:
        source = resources.files(package).joinpath(filename).read_text("utf-8")
        return cls(filename, source, errors or {})

    def error(self, reply: str) -> Exception | None:
        """The exception an error reply of the script stands for; None if it is undeclared."""
        prefix, _, message = reply.partition(" ")
        declared = self.errors.get(prefix)
        return None if declared is None else declared(message)


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
