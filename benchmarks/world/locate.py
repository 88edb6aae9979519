"""True scan points around their origins, and the GPS fixes phones report for them."""

from __future__ import annotations

import math

import numpy as np

from benchmarks.world.builder import Builder
from benchmarks.world.geometry import KM_PER_DEGREE, Floats, scatter
from benchmarks.world.records import Location, PlannedScan

_SIGMA_PER_ACCURACY = 1 / math.sqrt(-2 * math.log(0.32))  # accuracy_m is the 68 % radius


def _accuracy_m(rng: np.random.Generator, count: int) -> Floats:
    """Mostly 4-60 m outdoors (median 12 m); 15 % indoors, 100-1,500 m."""
    outdoors = np.clip(rng.lognormal(math.log(12.0), 0.6, size=count), 4.0, 60.0)
    indoors = np.exp(rng.uniform(math.log(100.0), math.log(1500.0), size=count))
    accuracy: Floats = np.where(rng.random(count) < 0.15, indoors, outdoors)
    return np.round(accuracy, 1)


def _gps_noise(
    rng: np.random.Generator, lon: Floats, lat: Floats, accuracy_m: Floats
) -> tuple[Floats, Floats]:
    """Reported points: displaced by a 2-D Gaussian whose 68 % radius is the accuracy."""
    dx, dy = rng.normal(0.0, 1.0, size=(2, lon.size)) * accuracy_m * _SIGMA_PER_ACCURACY / 1000
    reported_lon = lon + dx / (KM_PER_DEGREE * np.cos(np.radians(lat)))
    return np.round(reported_lon, 6), np.round(lat + dy / KM_PER_DEGREE, 6)


def locate(b: Builder) -> tuple[PlannedScan, ...]:
    """True points scattered around the drafts' origins, GPS fixes around those; time order."""
    drafts = sorted(b.drafts, key=lambda draft: draft.t_s)
    has_origin = np.array([d.origin is not None for d in drafts], dtype=np.bool_)
    origin = np.array([d.origin or (0.0, 0.0) for d in drafts], dtype=np.float64).reshape(-1, 2)
    lon, lat = origin[:, 0].copy(), origin[:, 1].copy()
    within = np.array([d.within or "" for d in drafts])
    spread = np.array([d.spread_km for d in drafts])
    for distributor in b.distributors:
        mine = np.flatnonzero(has_origin & (within == distributor.distributor_id))
        lon[mine], lat[mine] = scatter(
            b.rng, distributor.territory, lon[mine], lat[mine], spread[mine]
        )
    accuracy = _accuracy_m(b.rng, len(drafts))
    seen_lon, seen_lat = _gps_noise(b.rng, lon, lat, accuracy)
    scans = []
    for i, d in enumerate(drafts):
        location = None
        if has_origin[i]:
            location = Location(
                float(seen_lat[i]),
                float(seen_lon[i]),
                float(accuracy[i]),
                float(lat[i]),
                float(lon[i]),
            )
        scans.append(
            PlannedScan(
                d.t_s,
                d.label,
                d.actor,
                d.ip,
                d.code,
                d.form,
                d.device_id,
                d.member_id,
                location,
                d.clone_index,
                d.traits,
            )
        )
    return tuple(scans)
