"""TerritoryIndex.locate: the smallest id among the territories containing each point."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraud.geo import FloatArray
from fraud.territory import Territory, contains
from fraud.territory_index import TerritoryIndex


def box(lon0: float, lat0: float, lon1: float, lat1: float) -> list[list[float]]:
    return [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]


def blob(rng: np.random.RandomState, lon0: float, lat0: float, radius: float) -> list[list[float]]:
    """A star-shaped ring of 8 to 60 vertices round a centre."""
    n = rng.randint(8, 61)
    angles = np.sort(rng.uniform(0.0, 2 * np.pi, n))
    radii = radius * rng.uniform(0.4, 1.0, n)
    ring = np.c_[lon0 + radii * np.cos(angles), lat0 + radii * np.sin(angles)]
    return [*ring.tolist(), ring[0].tolist()]


def world(seed: int) -> dict[str, Territory]:
    """A few hundred territories: blobs on a jittered grid (neighbours overlap), some with holes,
    some MultiPolygons, a pair split at the antimeridian, a polar cap and a large country."""
    rng = np.random.RandomState(seed)
    territories: dict[str, Territory] = {}
    for i in range(24):
        for j in range(12):
            lon, lat = -20 + 2.0 * i + rng.uniform(-0.5, 0.5), 30 + 2.0 * j + rng.uniform(-0.5, 0.5)
            rings = [blob(rng, lon, lat, rng.uniform(0.8, 1.8))]
            if rng.rand() < 0.2:
                rings.append(box(lon - 0.1, lat - 0.1, lon + 0.1, lat + 0.1)[::-1])  # inside
            document: dict[str, object] = {"type": "Polygon", "coordinates": rings}
            if rng.rand() < 0.1:
                far = blob(rng, lon + 90, lat - 60, 1.0)
                document = {"type": "MultiPolygon", "coordinates": [rings, [far]]}
            territories[f"t{rng.randint(10_000):04d}-{i}-{j}"] = Territory.from_geojson(document)
    pacific = {
        "type": "MultiPolygon",
        "coordinates": [[box(175, -20, 180, -10)], [box(-180, -20, -175, -10)]],
    }
    territories["pacific"] = Territory.from_geojson(pacific)
    territories["arctic"] = Territory.from_geojson(
        {"type": "Polygon", "coordinates": [box(-180, 80, 180, 90)]}
    )
    territories["big"] = Territory.from_geojson(
        {"type": "Polygon", "coordinates": [box(-10, 35, 15, 50), box(0, 40, 5, 45)[::-1]]}
    )
    return territories


def brute_force(
    territories: dict[str, Territory], lats: FloatArray, lons: FloatArray
) -> tuple[list[str | None], int]:
    """The smallest id containing each point, and how many points are in more than one."""
    names = sorted(territories)
    hits = np.array([contains([territories[n]] * len(lats), lats, lons) for n in names])
    first: list[int] = hits.argmax(axis=0).tolist()
    counts: list[int] = hits.sum(axis=0).tolist()
    found = [names[f] if count else None for f, count in zip(first, counts, strict=True)]
    return found, sum(count > 1 for count in counts)


@pytest.mark.parametrize("cell_deg", [0.25, 1.0, 3.0, 180.0])
def test_locate_equals_brute_force_contains(cell_deg: float) -> None:
    territories = world(seed=11)
    index = TerritoryIndex(territories, cell_deg=cell_deg)
    assert len(index) == len(territories)
    rng = np.random.RandomState(5)
    lats = np.r_[rng.uniform(25, 60, 3000), rng.uniform(-90, 90, 1000), rng.randint(28, 56, 200)]
    lons = np.r_[
        rng.uniform(-25, 30, 3000), rng.uniform(-180, 180, 1000), rng.randint(-22, 30, 200)
    ]
    lats = np.r_[lats, -15.0, -15.0, -15.0, 85.0, 89.999]
    lons = np.r_[lons, 179.5, -179.5, 180.0, 0.0, 180.0]
    expected, overlapping = brute_force(territories, lats, lons)
    assert index.locate(lats, lons) == expected
    assert expected[-5:] == ["pacific", "pacific", "pacific", "arctic", "arctic"]
    assert sum(e is not None for e in expected) > 1000
    assert overlapping > 100


def test_overlapping_territories_give_the_smallest_id() -> None:
    territories = {
        name: Territory.from_geojson({"type": "Polygon", "coordinates": [box(*corners)]})
        for name, corners in [("b", (0, 0, 10, 10)), ("a", (5, 5, 15, 15)), ("c", (4, 4, 6, 6))]
    }
    index = TerritoryIndex(territories)
    located = index.locate([1.0, 5.5, 4.5, 12.0, 20.0], [1.0, 5.5, 4.5, 12.0, 20.0])
    assert located == ["b", "a", "b", "a", None]


def test_nan_and_invalid_points_are_nowhere() -> None:
    index = TerritoryIndex(
        {
            "all": Territory.from_geojson(
                {"type": "Polygon", "coordinates": [box(-180, -90, 180, 90)]}
            )
        }
    )
    lats = [math.nan, 10.0, 10.0, 95.0, 10.0]
    lons = [10.0, math.nan, math.inf, 10.0, 10.0]
    assert index.locate(lats, lons) == [None, None, None, None, "all"]
    assert index.locate([], []) == []


def test_empty_index() -> None:
    index = TerritoryIndex({})
    assert len(index) == 0
    assert index.locate([1.0, math.nan], [2.0, 3.0]) == [None, None]


@pytest.mark.parametrize("cell_deg", [0.0, -1.0, math.nan, 181.0])
def test_cell_size_must_be_sensible(cell_deg: float) -> None:
    with pytest.raises(ValueError, match="cell_deg"):
        TerritoryIndex({}, cell_deg=cell_deg)
