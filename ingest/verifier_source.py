"""A ``Verifier`` that follows the keyring file and the batches in Redis."""

from __future__ import annotations

from codes.verify import Verifier
from ingest.batch_store import BatchStore
from ingest.keyring_source import KeyringSource


class VerifierSource:
    def __init__(self, keyrings: KeyringSource, batches: BatchStore) -> None:
        self._keyrings = keyrings
        self._batches = batches
        self._verifier: Verifier | None = None

    async def current(self) -> Verifier:
        keyring, index = self._keyrings.current(), await self._batches.index()
        verifier = self._verifier
        if verifier is None or verifier.keyring is not keyring or verifier.batches is not index:
            verifier = self._verifier = Verifier(keyring, index)
        return verifier
