"""Verification of a scanned string: a bare code or a GS1 Digital Link URL. CPU only."""

from __future__ import annotations

from codes import crockford, digital_link, signing
from codes.batch_index import BatchIndex
from codes.batches import Batch
from codes.errors import CodeError
from codes.keyring import Keyring

_MAX_CACHED_SIGNERS = 100_000


class VerifiedCode(tuple[int, Batch]):
    """``(value, batch)``; a plain tuple subclass because it is built once per scan and
    ``tuple.__new__`` costs a third of a NamedTuple's generated constructor."""

    __slots__ = ()

    @property
    def value(self) -> int:
        return self[0]

    @property
    def batch(self) -> Batch:
        return self[1]

    @property
    def serial(self) -> int:
        return (self.value >> signing.TAG_BITS) & signing.MAX_SERIAL

    @property
    def canonical(self) -> str:
        return crockford.encode(self.value)


class Verifier:
    """Checks codes against a keyring and the batches known at the time it was built.

    Build a new one when either changes; signers are cached per batch.
    """

    def __init__(self, keyring: Keyring, batches: BatchIndex) -> None:
        self.keyring = keyring
        self.batches = batches
        self._signers: dict[str, signing.Signer] = {}
        self._active_key_ids = frozenset(k.key_id for k in keyring.keys if k.active)

    def signer(self, batch: Batch) -> signing.Signer:
        signer = self._signers.get(batch.batch_id)
        if signer is None:
            if len(self._signers) >= _MAX_CACHED_SIGNERS:
                self._signers.clear()
            signer = self._signers[batch.batch_id] = self.keyring.signer(
                batch.key_id, batch.batch_id
            )
        return signer

    def verify(self, scanned: str) -> VerifiedCode:
        """The code and its batch, or ``CodeError`` whose reason is the counterfeit flag."""
        gtin = None
        if digital_link.looks_like_url(scanned):
            link = digital_link.parse(scanned)
            scanned, gtin = link.serial, link.gtin
        value = crockford.decode(scanned)
        if value is None:
            raise CodeError("malformed", "a code is 20 characters of Crockford base32")
        if value >> signing.KEY_ID_SHIFT not in self._active_key_ids:
            raise CodeError("unknown_key", "the code's key is unknown or retired")
        serial = (value >> signing.TAG_BITS) & signing.MAX_SERIAL
        batch = self.batches.find(serial)
        if batch is None:
            raise CodeError("unknown_serial", "no batch holds this serial")
        signer = self._signers.get(batch.batch_id) or self.signer(batch)
        if not signer.matches(value):
            raise CodeError("bad_signature", "the code's signature does not match")
        if gtin is not None and gtin != batch.gtin:
            raise CodeError("gtin_mismatch", "the URL's GTIN is not the GTIN of the code's batch")
        return VerifiedCode((value, batch))
