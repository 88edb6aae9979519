"""Runs the stack's processes (API workers sharing a port, the sink) and stops them in order.

Each child is a ``scanward`` command started with this interpreter; the supervisor passes the
settings it resolved through ``SCANWARD_*`` variables. A child that dies is started again after a
pause that grows while it keeps dying. On SIGINT or SIGTERM the API workers stop first (each
answers the scans it has queued), then the sink (it inserts what it has read), so nothing that
was acknowledged is left behind.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 20.0
_POLL_S = 0.2
_FIRST_RESTART_DELAY_S, _MAX_RESTART_DELAY_S = 0.5, 10.0
_STEADY_S = 60.0
_PARENT_CHECK_S = 1.0


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    stop_group: int  # lower groups stop first
    process: subprocess.Popen[bytes] | None = None
    restart_delay_s: float = _FIRST_RESTART_DELAY_S
    restart_at: float = field(default=0.0)
    started_at: float = field(default=0.0)

    def start(self, env: Mapping[str, str]) -> None:
        command = [sys.executable, "-m", "ingest.cli", *self.argv]
        # its own session: a terminal's Ctrl-C reaches the supervisor only, which stops the
        # children in order
        self.process = subprocess.Popen(command, env=dict(env), start_new_session=True)
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)


class Supervisor:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = {**os.environ, **env}
        self._children: list[Child] = []
        self._stopping = False

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Children run in their own sessions: whatever happens here, they are stopped."""
        self.stop()

    def add(self, name: str, argv: Sequence[str], stop_group: int) -> None:
        child = Child(name, argv, stop_group)
        child.start(self._env)
        self._children.append(child)

    def run(self) -> None:
        """Keep the children running until SIGINT or SIGTERM, then stop them in order."""
        previous = {
            s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            while not self._stopping:
                self._restart_dead()
                time.sleep(_POLL_S)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.stop()

    def stop(self) -> None:
        """Stop group by group; stopping twice is harmless."""
        for group in sorted({c.stop_group for c in self._children}):
            members = [c for c in self._children if c.stop_group == group]
            for child in members:
                if child.process is not None and child.process.poll() is None:
                    child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for child in members:
                if child.process is None:
                    continue
                try:
                    child.process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.error("%s did not stop in %.0f s; killing it", child.name, STOP_TIMEOUT_S)
                    child.process.kill()
                    child.process.wait()

    def _request_stop(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _restart_dead(self) -> None:
        now = time.monotonic()
        for child in self._children:
            process = child.process
            if process is None or process.poll() is None:
                continue
            if child.restart_at == 0.0:
                log.error("%s exited with status %s", child.name, process.returncode)
                if now - child.started_at > _STEADY_S:  # it had been running well: not a loop
                    child.restart_delay_s = _FIRST_RESTART_DELAY_S
                child.restart_at = now + child.restart_delay_s
            elif now >= child.restart_at:
                child.start(self._env)
                child.restart_at = 0.0
                child.restart_delay_s = min(child.restart_delay_s * 2, _MAX_RESTART_DELAY_S)


def when_orphaned(callback: Callable[[], object]) -> None:
    """Calls ``callback`` (from a daemon thread) once this process's parent is gone: a child
    whose supervisor died, even by SIGKILL, stops instead of running on alone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_S)
        callback()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
