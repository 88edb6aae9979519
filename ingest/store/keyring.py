"""The keyring file as the server sees it: reloaded when `scanward keys` changes it."""

from __future__ import annotations

import time
from pathlib import Path

from codes.keyring import Keyring

_RECHECK_S = 1.0


class KeyringSource:
    def __init__(self, path: Path, secret: str) -> None:
        self._path = path
        self._secret = secret
        self._mtime = path.stat().st_mtime_ns
        self._keyring = Keyring.load(path, secret)
        self._checked = time.monotonic()

    def current(self) -> Keyring:
        """The keyring on disk, looked at no more than once a second."""
        now = time.monotonic()
        if now - self._checked >= _RECHECK_S:
            self._checked = now
            mtime = self._path.stat().st_mtime_ns
            if mtime != self._mtime:
                self._keyring, self._mtime = Keyring.load(self._path, self._secret), mtime
        return self._keyring
