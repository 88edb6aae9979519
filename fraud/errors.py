"""Errors of the fraud package: each names its case with a stable ``code`` (``CodedError``)."""

from __future__ import annotations

from codes.errors import CodedError


class FraudError(CodedError):
    """Base class of everything the fraud package raises on purpose."""


class TerritoryError(FraudError):
    """Invalid GeoJSON territory; str(error) is a clear message naming where, e.g.
    'territory.coordinates[0][3]: latitude 95 is outside -90..90'."""

    code = "invalid_territory"


class DistributorError(FraudError):
    """A distributor the API cannot accept; the message says why."""

    code = "validation_failed"


class PolicyError(FraudError, ValueError):
    """A fraud policy that cannot be used; a ``ValueError`` too, as the settings' parsers
    report any value they cannot read."""

    code = "invalid_policy"


class ShipmentConflict(FraudError):
    """A shipment or aggregation script refused the request: ``reason`` is the prefix of its
    error reply, ``serial`` names the code at fault and ``other`` the other party, if any."""

    def __init__(self, reason: str, details: str = "", code: str | None = None) -> None:
        super().__init__(f"{reason} {details}".rstrip(), code or reason.lower())
        serial, _, other = details.partition(" ")
        self.reason = reason
        self.serial = int(serial) if serial else None
        self.other = other or None


class ShipmentDuplicate(ShipmentConflict):
    """A serial is in a shipment twice (alone and in a case?): a fault of the request, not a
    conflict with what was shipped before."""

    def __init__(self, details: str) -> None:
        super().__init__("SHIP_DUPLICATE", details, "listed_twice")
