"""Progress of a long benchmark on standard error: one line per phase, and a bar that fills with
the seconds of a timed phase. Bars show only on a terminal (tqdm's ``disable=None``)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

_TICK_S = 0.25


class Progress:
    def __init__(self) -> None:
        self._started = time.monotonic()

    @contextmanager
    def phase(self, name: str, seconds: float | None = None) -> Iterator[None]:
        """``name`` announced; with ``seconds``, a bar filling over that time meanwhile."""
        elapsed = time.monotonic() - self._started
        print(f"[{elapsed:6.0f} s] {name}", file=sys.stderr, flush=True)
        if seconds is None:
            yield
            return
        done = threading.Event()
        bar = tqdm(total=round(seconds), unit="s", leave=False, disable=None, file=sys.stderr)
        ticker = threading.Thread(target=_tick, args=(bar, seconds, done), daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()
            bar.close()


def _tick(bar: tqdm[None], seconds: float, done: threading.Event) -> None:
    started = time.monotonic()
    while not done.wait(_TICK_S):
        bar.n = min(round(seconds), round(time.monotonic() - started))
        bar.refresh()
