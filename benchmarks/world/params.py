"""The size of a world and the shares of its kinds of people and fraud."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class WorldParams:
    """Counts scale with ``scaled``; the honest shares do not.

    The honest shares are all labelled honest; each scan carries its ``Trait``s:

    - ``border_share``: consumers whose home lies 0.5-3 km inside their territory's border
      (about 5 %: territories follow administrative lines that run through towns);
    - ``shared_phone_share``: consumers in a household of 2-3 using one phone, each with their
      own member id (about 6 %); such a phone is held to one person's count of codes;
    - ``nat_share``: other consumers sharing a public IP with 1-7 others behind a household or
      office router (about 25 %; mobile carriers' NAT is left out);
    - ``repeat_scanner_share``: consumers who scan each of their codes 3-8 times over the day
      instead of now and then once more (about 3 %);
    - ``friends_share``: honest codes scanned at a table by 2-5 phones (the owner's and friends'
      from nearby homes) within ten minutes (about 1 %; tables of 5 are the rarest);
    - ``traveller_share``: honest scans made on a trip, at least 50 km outside the territory the
      goods were shipped to (about 0.5 %). These are honest, but the product cannot tell them from
      diverted goods: they are scored apart.

    Attacks that do not rely on ids: ``address_farms`` addresses each sending
    ``address_farm_codes`` valid codes, every one with a fresh device and member id (even-numbered
    farms) or with no device at all (odd-numbered); ``overscanned_codes`` codes each scanned
    ``overscan_scans`` times with no device and no location, from a fresh address every time.
    """

    distributors: int = 12
    consumers: int = 2_500
    honest_scans: int = 20_000  # about; repeat scans included
    units_per_case: int = 12
    cased_share: float = 0.6  # of a distributor's units; the rest ship by serial range
    diverted_cases: int = 40
    clones: int = 60
    guessers: int = 10
    farms: int = 4
    harvested_scans: int = 300
    address_farms: int = 2
    address_farm_codes: int = 66
    overscanned_codes: int = 1
    overscan_scans: int = 2_000
    border_share: float = 0.05
    shared_phone_share: float = 0.06
    nat_share: float = 0.25
    repeat_scanner_share: float = 0.03
    friends_share: float = 0.01
    traveller_share: float = 0.005

    def __post_init__(self) -> None:
        if not 4 <= self.distributors <= 40:
            raise ValueError("distributors must be between 4 and 40")
        if not 1 <= self.consumers <= 200_000 or not 0 <= self.honest_scans <= 2_000_000:
            raise ValueError("consumers must be 1-200,000 and honest_scans 0-2,000,000")
        if not 2 <= self.units_per_case <= 100 or not 0.0 <= self.cased_share <= 1.0:
            raise ValueError("units_per_case must be 2-100 and cased_share 0-1")
        counts = (
            self.diverted_cases,
            self.clones,
            self.guessers,
            self.farms,
            self.address_farms,
            self.address_farm_codes,
            self.overscanned_codes,
            self.overscan_scans,
        )
        if min(counts) < 0 or not 0 <= self.harvested_scans <= 100_000 or max(counts) > 10_000:
            raise ValueError("fraud counts must be between 0 and 10,000")
        shares = (
            self.border_share,
            self.shared_phone_share,
            self.nat_share,
            self.repeat_scanner_share,
            self.friends_share,
            self.traveller_share,
        )
        if not all(0.0 <= share <= 1.0 for share in shares):
            raise ValueError("honest shares must be between 0 and 1")

    def scaled(self, factor: float) -> WorldParams:
        """Every count times ``factor`` (at least 1 where it was), the geography unchanged."""

        def times(count: int) -> int:
            return max(min(count, 1), round(count * factor))

        return replace(
            self,
            consumers=times(self.consumers),
            honest_scans=times(self.honest_scans),
            diverted_cases=times(self.diverted_cases),
            clones=times(self.clones),
            guessers=times(self.guessers),
            farms=times(self.farms),
            harvested_scans=times(self.harvested_scans),
            address_farms=times(self.address_farms),
            overscanned_codes=times(self.overscanned_codes),
        )
