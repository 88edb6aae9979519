"""A ``Verifier`` that follows the keyring file and the batches in Redis."""

from __future__ import annotations

import time

from codes.verify import Verifier
from ingest.store.batches import BatchStore
from ingest.store.keyring import KeyringSource


class VerifierSource:
    def __init__(self, keyrings: KeyringSource, batches: BatchStore) -> None:
        self._keyrings = keyrings
        self._batches = batches
        self._verifier: Verifier | None = None
        self._checked_at = 0.0

    async def current(self, max_age_s: float = 0.0) -> Verifier:
        """A verifier at most ``max_age_s`` behind the batches (the scan path allows a little,
        to ask Redis for the batch version once per interval rather than once per scan)."""
        verifier, now = self._verifier, time.monotonic()
        if verifier is not None and now - self._checked_at < max_age_s:
            return verifier
        keyring, index = self._keyrings.current(), await self._batches.index()
        self._checked_at = now
        if verifier is None or verifier.keyring is not keyring or verifier.batches is not index:
            verifier = self._verifier = Verifier(keyring, index)
        return verifier
