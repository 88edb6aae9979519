"""Where a micro-batch's scans happened against where their codes were shipped: the
``no_location``, ``not_shipped`` and ``out_of_territory`` rules, vectorised with numpy.

Distances that decide are computed here and stored with the event, so analysts see the
number the decision was made on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from fraud.policy import FraudPolicy
from fraud.reference import ReferenceData
from fraud.shipments import NOT_SHIPPED
from fraud.territory import contains, distances_km

NO_SERIAL = -1


class Placement(NamedTuple):
    flags: tuple[dict[str, object], ...]
    distributor_id: str  # shipped to; "" when not shipped or not a valid code
    surfaced_in: str  # the territory the scan lies in: its own when inside it, the one it lies
    # in when out of territory, "" otherwise (not shipped, no location, outside every territory)
    distance_km: float  # outside the shipped-to territory by this much; NaN when not measured


def place(
    serials: Sequence[int],
    lats: Sequence[float],
    lons: Sequence[float],
    accuracies_m: Sequence[float],
    reference: ReferenceData,
    policy: FraudPolicy,
) -> list[Placement]:
    """One ``Placement`` per scan. ``serials`` hold NO_SERIAL for codes that did not verify;
    coordinates and accuracies are NaN when not sent."""
    lat, lon = np.asarray(lats, dtype=np.float64), np.asarray(lons, dtype=np.float64)
    accuracy = np.asarray(accuracies_m, dtype=np.float64)
    located = _plausible(lat, lon, accuracy, policy)
    owners = reference.shipments.distributor_numbers(np.asarray(serials, dtype=np.int64))
    distance = _distances(owners, lat, lon, located, reference)
    tolerance = policy.territory_tolerance_km + policy.territory_accuracy_factor / 1000 * (
        np.nan_to_num(accuracy)
    )
    outside = distance > tolerance  # NaN (not measured) is never outside
    surfaced = _surfaced(outside, lat, lon, reference)
    names = reference.shipments.distributors
    placements = []
    # plain lists: indexing numpy arrays one scalar at a time costs more than the rules
    for serial, owner, is_located, is_outside, km, allowed_km, where, latitude, acc in zip(
        serials,
        owners.tolist(),
        located.tolist(),
        outside.tolist(),
        distance.tolist(),
        tolerance.tolist(),
        surfaced,
        lat.tolist(),
        accuracy.tolist(),
        strict=True,
    ):
        shipped_to = names[owner] if owner != NOT_SHIPPED else ""
        flags: list[dict[str, object]] = []
        if not is_located:
            flags.append(_no_location(latitude, acc, policy))
        if serial != NO_SERIAL and not shipped_to:
            flags.append({"flag": "not_shipped"})
        if is_outside:
            flags.append(
                {
                    "flag": "out_of_territory",
                    "distributor": shipped_to,
                    "distance_km": round(km, 1),
                    "tolerance_km": round(allowed_km, 1),
                    "surfaced_in": where,
                }
            )
        inside = km == 0.0
        placements.append(
            Placement(tuple(flags), shipped_to, shipped_to if inside else where or "", km)
        )
    return placements


def _surfaced(
    outside: npt.NDArray[np.bool_],
    lat: npt.NDArray[np.float64],
    lon: npt.NDArray[np.float64],
    reference: ReferenceData,
) -> list[str | None]:
    """The territory each scan outside its own lies in (the grid index is asked only for
    those, usually few); None for the others."""
    surfaced: list[str | None] = [None] * len(outside)
    away = np.flatnonzero(outside)
    if len(away):
        found = reference.territories.locate(lat[away], lon[away])
        for at, where in zip(away.tolist(), found, strict=True):
            surfaced[at] = where
    return surfaced


def _plausible(
    lat: npt.NDArray[np.float64],
    lon: npt.NDArray[np.float64],
    accuracy: npt.NDArray[np.float64],
    policy: FraudPolicy,
) -> npt.NDArray[np.bool_]:
    """A fix to judge territory on: present, precise enough, and not (0, 0), where phones
    without a fix put their default."""
    with np.errstate(invalid="ignore"):
        precise = ~(accuracy > policy.max_accuracy_m)
    plausible: npt.NDArray[np.bool_] = (
        ~np.isnan(lat) & ~np.isnan(lon) & precise & ~((lat == 0) & (lon == 0))
    )
    return plausible


def _no_location(lat: float, accuracy: float, policy: FraudPolicy) -> dict[str, object]:
    if math.isnan(lat):
        return {"flag": "no_location", "reason": "missing"}
    if accuracy > policy.max_accuracy_m:
        return {"flag": "no_location", "reason": "inaccurate", "accuracy_m": float(accuracy)}
    return {"flag": "no_location", "reason": "implausible"}


def _distances(
    owners: npt.NDArray[np.int32],
    lat: npt.NDArray[np.float64],
    lon: npt.NDArray[np.float64],
    located: npt.NDArray[np.bool_],
    reference: ReferenceData,
) -> npt.NDArray[np.float64]:
    """Km outside the shipped-to territory (0 inside); NaN where there is nothing to measure:
    no location, not shipped, or a distributor without a territory. Most scans are inside:
    the cheaper containment test goes first, and only the others are measured."""
    distance = np.full(len(owners), np.nan)
    names, known = reference.shipments.distributors, reference.distributors
    owner_list = owners.tolist()
    measured = [
        i
        for i in np.flatnonzero(located & (owners != NOT_SHIPPED)).tolist()
        if names[owner_list[i]] in known
    ]
    if not measured:
        return distance
    territories = [known[names[owner_list[i]]].territory for i in measured]
    inside = contains(territories, lat[measured], lon[measured])
    distance[measured] = 0.0
    away = [i for i, is_inside in zip(measured, inside.tolist(), strict=True) if not is_inside]
    if away:
        territories = [t for t, is_inside in zip(territories, inside, strict=True) if not is_inside]
        distance[away] = distances_km(territories, lat[away], lon[away])
    return distance
