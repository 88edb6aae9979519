"""Batches: contiguous ranges of global serials ordered by a packaging line.

This module validates orders and describes, as ``ScriptCall`` values, the Redis work that
reserves and revokes batches; ``ingest`` runs it.  Every key shares the ``{codes}`` hash tag.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

from codes import crockford
from codes.commands import ChangeStream, LuaScript, ScriptCall
from codes.digital_link import normalize_gtin
from codes.errors import BatchError, BatchIdTaken
from codes.signing import MAX_SERIAL

NEXT_SERIAL_KEY = "{codes}:serial:next"
BATCH_INDEX_KEY = "{codes}:batches"
INDEX_VERSION_KEY = "{codes}:batches:version"
CHANGES = ChangeStream("{codes}:changes")
"""Each batch's fields after each order and revocation."""
_BATCH_KEY_PREFIX = "{codes}:batch:"
_MAX_TEXT = 64

RESERVE_BATCH = LuaScript.load(
    __package__ or "codes",
    "reserve_batch.lua",
    {"SERIALS_EXHAUSTED": BatchError, "BATCH_EXISTS": BatchIdTaken},
)
REVOKE_BATCH = LuaScript.load(__package__ or "codes", "revoke_batch.lua")
SNAPSHOT_BATCHES = LuaScript.load(__package__ or "codes", "snapshot_batches.lua")


class BatchKind(StrEnum):
    UNIT = "unit"
    CASE = "case"
    PALLET = "pallet"


class BatchStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


def batch_key(batch_id: str) -> str:
    return _BATCH_KEY_PREFIX + batch_id


def new_batch_id() -> str:
    """``B`` and ten random Crockford characters (50 bits): unguessable, easy to read aloud."""
    return "B" + crockford.encode(secrets.randbits(50))[-10:]


@dataclass(frozen=True, slots=True)
class BatchOrder:
    """A validated request for a new batch."""

    sku: str
    gtin: str
    quantity: int
    kind: BatchKind
    line_id: str

    @classmethod
    def create(
        cls,
        sku: str,
        gtin: str,
        quantity: int,
        kind: str = "unit",
        line_id: str = "",
        *,
        max_quantity: int,
    ) -> BatchOrder:
        if not sku or len(sku) > _MAX_TEXT or not sku.isprintable():
            raise BatchError(f"sku must be 1 to {_MAX_TEXT} printable characters")
        if len(line_id) > _MAX_TEXT or not line_id.isprintable():
            raise BatchError(f"line_id must be at most {_MAX_TEXT} printable characters")
        canonical_gtin = normalize_gtin(gtin)
        if canonical_gtin is None:
            raise BatchError("gtin must be a GTIN-8, 12, 13 or 14 with a valid check digit")
        if not 1 <= quantity <= max_quantity:
            raise BatchError(f"quantity must be between 1 and {max_quantity}")
        try:
            batch_kind = BatchKind(kind)
        except ValueError:
            raise BatchError("kind must be one of: unit, case, pallet") from None
        return cls(sku, canonical_gtin, quantity, batch_kind, line_id)

    def reserve(self, batch_id: str, key_id: int, created_ms: int) -> ScriptCall:
        fields: dict[str, str | int] = {
            "batch_id": batch_id,
            "sku": self.sku,
            "gtin": self.gtin,
            "kind": self.kind.value,
            "line_id": self.line_id,
            "key_id": key_id,
            "created_ms": created_ms,
            "status": BatchStatus.ACTIVE.value,
        }
        pairs = [item for pair in fields.items() for item in pair]
        return ScriptCall(
            RESERVE_BATCH,
            (
                NEXT_SERIAL_KEY,
                batch_key(batch_id),
                BATCH_INDEX_KEY,
                INDEX_VERSION_KEY,
                *CHANGES.keys,
            ),
            (self.quantity, MAX_SERIAL, *pairs),
        )

    def reserved(self, batch_id: str, key_id: int, created_ms: int, first_serial: int) -> Batch:
        """The batch that ``reserve`` created, from the first serial the script returned."""
        return Batch(
            batch_id,
            self.sku,
            self.gtin,
            self.kind,
            self.line_id,
            key_id,
            first_serial,
            self.quantity,
            created_ms,
            BatchStatus.ACTIVE,
        )


def revoke(batch_id: str, now_ms: int | None = None) -> ScriptCall:
    revoked_ms = int(time.time() * 1000) if now_ms is None else now_ms
    keys = (batch_key(batch_id), INDEX_VERSION_KEY, *CHANGES.keys)
    return ScriptCall(REVOKE_BATCH, keys, (revoked_ms,))


def snapshot(batch_keys: Sequence[str]) -> ScriptCall:
    """Appends these batches, as they are now, to ``CHANGES``; reply: how many there were."""
    return ScriptCall(SNAPSHOT_BATCHES, (*CHANGES.keys, *batch_keys), ())


@dataclass(frozen=True, slots=True)
class Batch:
    batch_id: str
    sku: str
    gtin: str
    kind: BatchKind
    line_id: str
    key_id: int
    first_serial: int
    quantity: int
    created_ms: int
    status: BatchStatus

    @property
    def last_serial(self) -> int:
        return self.first_serial + self.quantity - 1

    @classmethod
    def from_redis(cls, fields: Mapping[str, str]) -> Batch:
        return cls(
            fields["batch_id"],
            fields["sku"],
            fields["gtin"],
            BatchKind(fields["kind"]),
            fields["line_id"],
            int(fields["key_id"]),
            int(fields["first_serial"]),
            int(fields["quantity"]),
            int(fields["created_ms"]),
            BatchStatus(fields["status"]),
        )

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "last_serial": self.last_serial}
