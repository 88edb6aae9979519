"""Territories as polygons: Voronoi cells with an enclave and an exclave, point tests, sampling.

The world keeps its own point-in-polygon and distances rather than using ``fraud.territory``:
its ground truth must not come from the code it evaluates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

REGION = (100.0, 22.0, 122.0, 40.0)  # west, south, east, north
KM_PER_DEGREE = 6371.0088 * math.pi / 180
CITY_RADIUS_KM = 35.0
EXCLAVE_RADIUS_KM = 25.0

Ring = tuple[tuple[float, float], ...]  # closed: first point == last point, [lon, lat]
Polygon = tuple[Ring, ...]  # outer ring (counter-clockwise), then holes (clockwise)


def haversine_km(lon1: Floats, lat1: Floats, lon2: Floats, lat2: Floats) -> Floats:
    lon1, lat1, lon2, lat2 = (np.radians(x) for x in (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2) ** 2
    a = a + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    distance: Floats = 2 * 6371.0088 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return distance


def ring_contains(ring: Floats, lon: Floats, lat: Floats) -> Bools:
    """Ray casting: which points lie inside the closed ring (an ``(m, 2)`` array)."""
    x, y = lon[:, None], lat[:, None]
    x1, y1, x2, y2 = ring[:-1, 0], ring[:-1, 1], ring[1:, 0], ring[1:, 1]
    straddles = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    inside: Bools = np.count_nonzero(straddles & (x < x_cross), axis=1) % 2 == 1
    return inside


def ring_distance_km(ring: Floats, lon: Floats, lat: Floats) -> Floats:
    """Distance from each point to the ring's edges, in a local equirectangular projection."""
    scale = np.cos(np.radians(lat))[:, None] * KM_PER_DEGREE
    ax = (ring[:-1, 0] - lon[:, None]) * scale
    bx = (ring[1:, 0] - lon[:, None]) * scale
    ay = (ring[:-1, 1] - lat[:, None]) * KM_PER_DEGREE
    by = (ring[1:, 1] - lat[:, None]) * KM_PER_DEGREE
    dx, dy = bx - ax, by - ay
    length2 = np.maximum(dx * dx + dy * dy, 1e-12)
    t = np.clip(-(ax * dx + ay * dy) / length2, 0.0, 1.0)
    distance: Floats = np.hypot(ax + t * dx, ay + t * dy).min(axis=1)
    return distance


@dataclass(frozen=True)
class Territory:
    """A Polygon or MultiPolygon, with the point tests the world needs."""

    polygons: tuple[Polygon, ...]

    def geojson(self) -> dict[str, object]:
        def coordinates(polygon: Polygon) -> list[list[list[float]]]:
            return [[list(point) for point in ring] for ring in polygon]

        if len(self.polygons) == 1:
            return {"type": "Polygon", "coordinates": coordinates(self.polygons[0])}
        return {"type": "MultiPolygon", "coordinates": [coordinates(p) for p in self.polygons]}

    @cached_property
    def _arrays(self) -> tuple[tuple[Floats, ...], ...]:
        return tuple(tuple(np.array(ring, dtype=np.float64) for ring in p) for p in self.polygons)

    @cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        points = np.concatenate([polygon[0] for polygon in self._arrays])
        west, south = points.min(axis=0)
        east, north = points.max(axis=0)
        return float(west), float(south), float(east), float(north)

    def contains(self, lon: Floats, lat: Floats) -> Bools:
        inside = np.zeros(lon.shape, dtype=np.bool_)
        for outer, *holes in self._arrays:
            within = ring_contains(outer, lon, lat)
            for hole in holes:
                within &= ~ring_contains(hole, lon, lat)
            inside |= within
        return inside

    def edge_km(self, lon: Floats, lat: Floats) -> Floats:
        """How far each point lies from the nearest edge (holes' edges included), either side."""
        rings = [ring for polygon in self._arrays for ring in polygon]
        nearest: Floats = np.min([ring_distance_km(ring, lon, lat) for ring in rings], axis=0)
        return nearest

    def outside_km(self, lon: Floats, lat: Floats) -> Floats:
        """How far each point lies outside the territory: 0 inside, else to the nearest edge."""
        distance: Floats = np.where(self.contains(lon, lat), 0.0, self.edge_km(lon, lat))
        return distance

    def area_km2(self) -> float:
        return sum(
            sign * _ring_area_km2(ring)
            for polygon in self._arrays
            for sign, ring in zip([1.0] + [-1.0] * (len(polygon) - 1), polygon, strict=True)
        )


def _ring_area_km2(ring: Floats) -> float:
    x = ring[:, 0] * math.cos(math.radians(float(ring[:, 1].mean()))) * KM_PER_DEGREE
    y = ring[:, 1] * KM_PER_DEGREE
    return abs(float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))) / 2


def _closed(points: Floats) -> Ring:
    ring = [(round(float(lon), 6), round(float(lat), 6)) for lon, lat in points]
    return (*ring, ring[0])


def _clip(polygon: Floats, normal: Floats, offset: float) -> Floats:
    """The part of a convex polygon (open ring) where ``point @ normal <= offset``."""
    side = polygon @ normal - offset
    kept: list[Floats] = []
    for i in range(len(polygon)):
        j = (i + 1) % len(polygon)
        if side[i] <= 0:
            kept.append(polygon[i])
        if (side[i] < 0 < side[j]) or (side[j] < 0 < side[i]):
            kept.append(polygon[i] + (polygon[j] - polygon[i]) * (side[i] / (side[i] - side[j])))
    return np.array(kept)


def _voronoi_cells(seeds: Floats) -> list[Floats]:
    """Each seed's Voronoi cell within REGION, as an open counter-clockwise ring."""
    west, south, east, north = REGION
    box = np.array([[west, south], [east, south], [east, north], [west, north]])
    cells = []
    for i, seed in enumerate(seeds):
        cell = box
        for j, other in enumerate(seeds):
            if j != i:
                cell = _clip(cell, other - seed, float((other - seed) @ (other + seed) / 2))
        cells.append(cell)
    return cells


def _spread_points(rng: np.random.Generator, count: int) -> Floats:
    """Best-candidate sampling: points spread evenly but irregularly over REGION."""
    west, south, east, north = REGION
    points = np.empty((0, 2))
    for _ in range(count):
        candidates = rng.uniform((west, south), (east, north), size=(12, 2))
        if len(points):
            gaps = np.linalg.norm(candidates[:, None, :] - points[None, :, :], axis=2).min(axis=1)
            candidates = candidates[[int(np.argmax(gaps))]]
        points = np.vstack([points, candidates[:1]])
    return points


def _blob(rng: np.random.Generator, centre: Floats, radius_km: float) -> Floats:
    """An irregular star-shaped polygon around a point, as an open counter-clockwise ring."""
    lon, lat = float(centre[0]), float(centre[1])
    angles = np.linspace(0, 2 * math.pi, 13)[:-1]
    radii = radius_km * rng.uniform(0.7, 1.0, size=angles.size)
    dlon = radii * np.cos(angles) / (KM_PER_DEGREE * math.cos(math.radians(lat)))
    dlat = radii * np.sin(angles) / KM_PER_DEGREE
    return np.column_stack([lon + dlon, lat + dlat])


def _room_km(cell: Floats, lon: float, lat: float) -> float:
    closed = np.vstack([cell, cell[:1]])
    return float(ring_distance_km(closed, np.array([lon]), np.array([lat]))[0])


def territories(rng: np.random.Generator, count: int) -> list[Territory]:
    """``count - 1`` Voronoi cells and a city enclave; the first cell also gets an exclave."""
    cells = _voronoi_cells(_spread_points(rng, count - 1))
    centres = [cell.mean(axis=0) for cell in cells]
    room = [
        _room_km(cell, float(c[0]), float(c[1])) for cell, c in zip(cells, centres, strict=True)
    ]
    city_host = max(range(1, len(cells)), key=lambda i: room[i])
    distance_from_first = [float(np.linalg.norm(c - centres[0])) for c in centres]
    exclave_host = max(
        (i for i in range(1, len(cells)) if i != city_host), key=lambda i: distance_from_first[i]
    )
    if room[city_host] < CITY_RADIUS_KM + 20 or room[exclave_host] < EXCLAVE_RADIUS_KM + 20:
        raise ValueError(f"{count} distributors leave no room for the enclaves")
    city = _blob(rng, centres[city_host], CITY_RADIUS_KM)
    exclave = _blob(rng, centres[exclave_host], EXCLAVE_RADIUS_KM)
    holes = {city_host: city, exclave_host: exclave}
    polygons: list[list[Polygon]] = [
        [(_closed(cell), _closed(holes[i][::-1])) if i in holes else (_closed(cell),)]
        for i, cell in enumerate(cells)
    ]
    polygons[0].append((_closed(exclave),))
    polygons.append([(_closed(city),)])
    return [Territory(tuple(p)) for p in polygons]


def uniform_inside(
    rng: np.random.Generator, territory: Territory, count: int
) -> tuple[Floats, Floats]:
    return _sample(rng, territory, count, 4 * count + 16, _everywhere)


def inside_near_edge(
    rng: np.random.Generator, territory: Territory, count: int, min_km: float, max_km: float
) -> tuple[Floats, Floats]:
    """Points spread evenly over the band inside the territory ``min_km``-``max_km`` from its
    edge."""

    def in_band(lon: Floats, lat: Floats) -> Bools:
        edge = territory.edge_km(lon, lat)
        band: Bools = (edge >= min_km) & (edge <= max_km)
        return band

    return _sample(rng, territory, count, 2_000, in_band)


def _everywhere(lon: Floats, lat: Floats) -> Bools:
    return np.ones(lon.size, dtype=np.bool_)


def _sample(
    rng: np.random.Generator,
    territory: Territory,
    count: int,
    draws: int,
    keep: Callable[[Floats, Floats], Bools],
) -> tuple[Floats, Floats]:
    """``count`` uniform points inside the territory that ``keep`` accepts (rejection
    sampling over its bounds, ``draws`` points a round)."""
    west, south, east, north = territory.bounds
    lons: list[Floats] = []
    lats: list[Floats] = []
    found = 0
    while found < count:
        lon = rng.uniform(west, east, size=draws)
        lat = rng.uniform(south, north, size=lon.size)
        inside = territory.contains(lon, lat)
        lon, lat = lon[inside], lat[inside]
        kept = keep(lon, lat)
        lons.append(lon[kept])
        lats.append(lat[kept])
        found += int(kept.sum())
    return np.concatenate(lons)[:count], np.concatenate(lats)[:count]


def scatter(
    rng: np.random.Generator, territory: Territory, lon0: Floats, lat0: Floats, sigma_km: Floats
) -> tuple[Floats, Floats]:
    """Points near the origins (which lie inside), redrawn until inside the territory too."""
    lon, lat = lon0.copy(), lat0.copy()
    todo = np.arange(lon0.size)
    for _ in range(30):
        if todo.size == 0:
            break
        dx, dy = rng.normal(0.0, 1.0, size=(2, todo.size)) * sigma_km[todo]
        lon_try = lon0[todo] + dx / (KM_PER_DEGREE * np.cos(np.radians(lat0[todo])))
        lat_try = lat0[todo] + dy / KM_PER_DEGREE
        inside = territory.contains(lon_try, lat_try)
        lon[todo[inside]], lat[todo[inside]] = lon_try[inside], lat_try[inside]
        todo = todo[~inside]
    return lon, lat  # what is left after 30 draws stays at its origin
