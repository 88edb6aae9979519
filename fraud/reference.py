"""The reference data the per-scan rules consult: distributors with their territories and the
shipment index, one immutable snapshot that workers swap when Redis has something newer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fraud.distributors import Distributor
from fraud.shipments import LoggedShipment, ShipmentIndex
from fraud.territory_index import TerritoryIndex


@dataclass(frozen=True, slots=True)
class ReferenceData:
    distributors: Mapping[str, Distributor]
    territories: TerritoryIndex
    shipments: ShipmentIndex
    distributors_version: int

    @classmethod
    def empty(cls) -> ReferenceData:
        return cls({}, TerritoryIndex({}), ShipmentIndex.empty(), -1)

    def with_distributors(
        self, distributors: Mapping[str, Distributor], version: int
    ) -> ReferenceData:
        territories = TerritoryIndex({d.distributor_id: d.territory for d in distributors.values()})
        return ReferenceData(distributors, territories, self.shipments, version)

    def with_shipments(self, shipments: Iterable[LoggedShipment], log_length: int) -> ReferenceData:
        extended = self.shipments.extended(shipments, log_length)
        return ReferenceData(
            self.distributors, self.territories, extended, self.distributors_version
        )
