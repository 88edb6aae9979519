"""One sink at a time: a lease in Redis that the running sink renews from a heartbeat thread.

A second sink would insert entries that the first is re-checking after a failure, so it waits
instead. The lease names its holder (``host:pid``); a holder on this host whose process is gone
(a sink killed with SIGKILL) is replaced at once, one elsewhere when its lease expires.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import cast

from redis.exceptions import RedisError

from codes.commands import LuaScript
from ingest.store.scripts import SyncRedis

log = logging.getLogger(__name__)

LEASE_KEY = "{sink}:lease"
TTL_MS = 10_000
RENEW_S = 2.0
_COMPARE_AND_SET = LuaScript.load(__package__ or "ingest.sink", "lease.lua")


class SinkLease:
    def __init__(self, redis: SyncRedis) -> None:
        self._redis = redis
        self._swap = redis.register_script(_COMPARE_AND_SET.source)
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    def acquire(self, stop: threading.Event) -> bool:
        """Waits until the lease is ours; False if ``stop`` came first."""
        while not stop.is_set():
            if self._redis.set(LEASE_KEY, self.holder, nx=True, px=TTL_MS):
                return True
            current = cast(bytes, self._redis.get(LEASE_KEY) or b"").decode()
            if current and _gone_from_this_host(current) and self._change(current, self.holder):
                log.warning("took over the lease of a sink that is gone", extra={"was": current})
                return True
            log.warning("another sink is running; waiting", extra={"holder": current})
            stop.wait(RENEW_S)
        return False

    def keep(self, stop: threading.Event) -> threading.Thread:
        """Renews the lease until ``stop``; if it is lost, sets ``stop`` so the sink ends."""

        def renew() -> None:
            while not stop.wait(RENEW_S):
                try:
                    renewed = self._change(self.holder, self.holder)
                except RedisError as error:  # Redis down: the TTL leaves room for retries
                    log.warning("could not renew the sink lease", extra={"error": str(error)})
                    continue
                if not renewed:
                    log.error("the sink lease was lost to another sink; stopping")
                    stop.set()

        thread = threading.Thread(target=renew, name="sink-lease", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        try:
            self._change(self.holder, "")
        except RedisError as error:  # it expires by itself
            log.warning("could not release the sink lease", extra={"error": str(error)})

    def _change(self, expected: str, new: str) -> bool:
        return bool(self._swap(keys=[LEASE_KEY], args=[expected, new, TTL_MS]))


def _gone_from_this_host(holder: str) -> bool:
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
