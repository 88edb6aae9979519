"""Distributors and their territories, as stored in Redis (``{geo}`` tag) and cached in every
worker, which reloads them when the version counter moves."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from codes.commands import ChangeStream, LuaScript, ScriptCall
from fraud.errors import DistributorError
from fraud.territory import Territory

DISTRIBUTORS_KEY = "{geo}:distributors"
VERSION_KEY = "{geo}:version"
CHANGES = ChangeStream("{geo}:changes")
"""Each distributor's JSON as stored by every put."""
PUT_DISTRIBUTOR = LuaScript.load(__package__ or "fraud", "put_distributor.lua")
SNAPSHOT_DISTRIBUTORS = LuaScript.load(__package__ or "fraud", "snapshot_distributors.lua")

MAX_NAME_LENGTH = 200
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}"
"""Distributor ids: they go into Redis hash fields and the warehouse's rows."""
_ID = re.compile(ID_PATTERN)


def check_id(distributor_id: str) -> str:
    if not _ID.fullmatch(distributor_id):
        raise DistributorError(
            "a distributor id is 1 to 64 letters, digits, '_', '.' or '-', starting with a "
            "letter or digit"
        )
    return distributor_id


def snapshot(distributor_ids: Sequence[str]) -> ScriptCall:
    """Appends these distributors, as they are now, to ``CHANGES``; reply: how many there were."""
    return ScriptCall(
        SNAPSHOT_DISTRIBUTORS, (DISTRIBUTORS_KEY, *CHANGES.keys), tuple(distributor_ids)
    )


@dataclass(frozen=True, slots=True)
class Distributor:
    distributor_id: str
    name: str
    territory: Territory
    updated_ms: int

    @classmethod
    def create(
        cls, distributor_id: str, name: object, territory: object, updated_ms: int
    ) -> Distributor:
        """A validated distributor; ``DistributorError`` or ``TerritoryError`` otherwise."""
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            raise DistributorError("name must be a non-empty string of printable characters")
        if len(name) > MAX_NAME_LENGTH:
            raise DistributorError(f"name must be at most {MAX_NAME_LENGTH} characters")
        return cls(check_id(distributor_id), name, Territory.from_geojson(territory), updated_ms)

    def to_json(self) -> dict[str, object]:
        return {
            "distributor_id": self.distributor_id,
            "name": self.name,
            "territory": self.territory.geojson,
            "updated_ms": self.updated_ms,
        }

    def put(self) -> ScriptCall:
        return ScriptCall(
            PUT_DISTRIBUTOR,
            (DISTRIBUTORS_KEY, VERSION_KEY, *CHANGES.keys),
            (self.distributor_id, orjson.dumps(self.to_json())),
        )

    @classmethod
    def from_stored(cls, raw: bytes | str) -> Distributor:
        document = orjson.loads(raw)
        return cls(
            document["distributor_id"],
            document["name"],
            Territory.from_geojson(document["territory"], stored=True),
            document["updated_ms"],
        )
