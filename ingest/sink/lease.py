"""Which sink moves which stream: a lease per stream, shared out evenly among the running sinks.

Every sink names itself (``host:pid:nonce``) in ``MEMBERS_KEY``, a sorted set scored by when its
membership expires, and renews its membership and each lease it holds (``<stream>:lease``, in
the stream's slot, compare-and-set by ``lease.lua``) every ``RENEW_S``; a lease lasts
``TTL_MS``. A family's fair share is its streams divided by the live sinks, rounded up: a sink
takes free streams up to its share and gives back those over it (the sink loop first writes
and acknowledges what it read of them), so a sink that starts gets its share within seconds,
and the streams of a sink that stops are taken by the others; of one that died, when its
leases expire, or at once when it ran on this host and its process is gone.

A sink reads only streams whose lease it holds, and writes (inserts, acknowledges) only while
its own clock says the lease is valid: ``VALID_FOR_S`` from the start of the call that took or
last renewed it, less than the TTL, so that a sink that stalls stops writing before another can
take the stream (and an insert it started before is waited for by the other's recovery). If a
renewal finds a lease taken by another sink or gone, the sink stops: the other may be
re-checking entries this one would insert, and its restart recovers them afresh.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Collection, Sequence
from typing import cast

from redis.exceptions import NoScriptError, RedisError

from codes.commands import LuaScript
from ingest.store.scripts import SyncRedis

log = logging.getLogger(__name__)

MEMBERS_KEY = "{sink}:members"
TTL_MS = 10_000
RENEW_S = 2.0
VALID_FOR_S = TTL_MS / 1000 - 3 * RENEW_S / 2
"""How long after the start of a successful take or renewal this sink still writes a stream."""
_COMPARE_AND_SET = LuaScript.load(__package__ or "ingest.sink", "lease.lua")


def lease_key(stream: str) -> str:
    return stream + ":lease"


class LeaseLost(Exception):
    """Another sink holds a lease this one held: this one must stop."""


class StreamLeases:
    """This sink's leases, for every family's loop (each in its own thread) and the heartbeat."""

    def __init__(self, redis: SyncRedis) -> None:
        self._redis = redis
        self._swap = redis.register_script(_COMPARE_AND_SET.source)
        redis.script_load(_COMPARE_AND_SET.source)  # on every primary: pipelines do not load it
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._held: dict[str, float] = {}
        """Each stream held, and until when (``time.monotonic``) this sink may write it."""
        self._lock = threading.Lock()
        self.lost: LeaseLost | None = None
        """Set, with ``stop``, by the heartbeat that found a lease taken."""

    def claim(self, streams: Sequence[str]) -> list[str]:
        """Of one family's ``streams``, those this sink is to read now: the ones it holds, and
        free ones it takes, up to its share. Held streams over the share are left out: the
        caller gives them back (``release``) once it has written what it read of them."""
        with self._lock:
            share = math.ceil(len(streams) / self._live_sinks())
            held = [stream for stream in streams if stream in self._held]
            if len(held) < share:
                others = [stream for stream in streams if stream not in self._held]
                held += self._take(others, share - len(held))
            return held[:share]

    def holds(self, streams: Collection[str]) -> bool:
        """Whether this sink may write every one of ``streams`` now."""
        now = time.monotonic()
        with self._lock:
            return all(self._held.get(stream, 0.0) > now for stream in streams)

    def release(self, streams: Collection[str]) -> None:
        """Gives the leases back; a stream stays held until its release succeeded."""
        with self._lock:
            for stream in streams:
                self._change(stream, self.holder, "")
                self._held.pop(stream, None)

    def renew(self) -> None:
        """Renews the membership and every lease held; ``LeaseLost`` if one was taken or is
        gone (then this sink no longer writes it)."""
        with self._lock:
            try:
                self._join()
            except RedisError as error:  # the membership's node alone: the leases go on
                log.warning("could not renew the sink's membership", extra={"error": str(error)})
            held, started = sorted(self._held), time.monotonic()
            try:
                kept = self._renew(held)
            except NoScriptError:  # Redis restarted, or a replica took over: load it again
                self._redis.script_load(_COMPARE_AND_SET.source)
                kept = self._renew(held)
            lost = []
            for stream, renewed in zip(held, kept, strict=True):
                if renewed:
                    self._held[stream] = started + VALID_FOR_S
                else:
                    lost.append(stream)
                    del self._held[stream]
        if lost:
            raise LeaseLost(f"the leases of {', '.join(lost)} were taken by another sink or lost")

    def _renew(self, streams: Sequence[str]) -> list[int]:
        pipe = self._redis.pipeline(transaction=False)
        for stream in streams:
            args: list[str | int] = [self.holder, self.holder, TTL_MS]
            self._swap(keys=[lease_key(stream)], args=args, client=pipe)
        return cast(list[int], pipe.execute())

    def keep(self, stop: threading.Event, until: threading.Event) -> threading.Thread:
        """Renews in a thread until ``until`` (set once the loops have written what they hold);
        on a lost lease, sets ``stop`` so the sink ends."""

        def heartbeat() -> None:
            while not until.wait(RENEW_S):
                try:
                    self.renew()
                except RedisError as error:  # Redis down: the TTL leaves room for retries
                    log.warning("could not renew the sink's leases", extra={"error": str(error)})
                except LeaseLost as error:
                    log.error("stopping: %s", error)
                    self.lost = error
                    stop.set()

        self.renew()
        thread = threading.Thread(target=heartbeat, name="sink-leases", daemon=True)
        thread.start()
        return thread

    def leave(self) -> None:
        """Gives back every lease and the membership (they would expire by themselves)."""
        try:
            self.release(sorted(self._held))
            self._redis.zrem(MEMBERS_KEY, self.holder)
        except RedisError as error:
            log.warning("could not give back the sink's leases", extra={"error": str(error)})

    def _join(self) -> None:
        self._redis.zadd(MEMBERS_KEY, {self.holder: _now_ms() + TTL_MS})

    def _live_sinks(self) -> int:
        self._redis.zremrangebyscore(MEMBERS_KEY, "-inf", _now_ms())
        members = cast(list[bytes], self._redis.zrange(MEMBERS_KEY, 0, -1))
        gone = [m for m in members if m.decode() != self.holder and _gone(m.decode())]
        if gone:
            self._redis.zrem(MEMBERS_KEY, *gone)
        return max(1, len(members) - len(gone) + (self.holder.encode() not in members))

    def _take(self, streams: Sequence[str], wanted: int) -> list[str]:
        """Up to ``wanted`` of ``streams`` whose lease is free, or held by a process of this
        host that is gone."""
        pipe = self._redis.pipeline(transaction=False)
        for stream in streams:
            pipe.get(lease_key(stream))
        taken: list[str] = []
        started = time.monotonic()
        for stream, holder in zip(streams, pipe.execute(), strict=True):
            if len(taken) == wanted:
                break
            if holder is None:
                won = bool(self._redis.set(lease_key(stream), self.holder, nx=True, px=TTL_MS))
            elif (previous := cast(bytes, holder).decode()) == self.holder:
                won = self._change(stream, previous, self.holder)  # an earlier reply was lost
            elif _gone(previous):
                won = self._change(stream, previous, self.holder)
                if won:
                    log.warning("took over from a sink that is gone", extra={"was": previous})
            else:
                continue
            if won:
                self._held[stream] = started + VALID_FOR_S
                taken.append(stream)
        return taken

    def _change(self, stream: str, expected: str, new: str) -> bool:
        return bool(self._swap(keys=[lease_key(stream)], args=[expected, new, TTL_MS]))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _gone(holder: str) -> bool:
    """Whether ``holder`` names a process of this host that no longer runs."""
    host, _, pid = holder.rpartition(":")[0].rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
