"""Distributor territories: validated GeoJSON polygons, and batch point-in-territory and distance.

A territory is a GeoJSON Polygon or MultiPolygon in lon/lat, holes allowed. Inside means inside by
the even-odd rule over all its rings, so a hole is outside. One that crosses the antimeridian
comes as RFC 7946 says, as a MultiPolygon split at ±180.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeGuard, cast

import numpy as np
import numpy.typing as npt

from fraud.errors import TerritoryError
from fraud.geo import (
    BoolArray,
    FloatArray,
    edge_columns,
    ends_on_other,
    haversine_km,
    nearest_on_edges,
    nearest_position,
    normalise_points,
    overlap_count,
    overlapping_pairs,
    ray_crossings,
    run_starts,
    segments_meet,
)

# Size limits: a territory is validated when it is saved, and again (without the limits and the
# crossing check) by every worker that loads it, on its event loop; the largest one allowed
# takes about 20-40 ms of CPU for each (docs/architecture.md).
MAX_RING_VERTICES = 20_000
MAX_TOTAL_VERTICES = 30_000
MAX_POLYGONS = 200
MAX_EDGE_PAIRS = 200_000  # pairs of edges side by side that the crossing check will test
# Longer edges are almost always a territory across the antimeridian that was not split, which
# would otherwise silently mean "the rest of the world". Edges running from -180 to 180 (a band
# round the globe) are allowed.
MAX_EDGE_SPAN_DEG = 180.0

# (point, edge) pairs per numpy pass: about 10k keeps a pass's arrays in the CPU cache; passes
# of 15k and more took three times as long per point on the development machine.
_CHUNK_PAIRS = 8192

_ROOT = "territory"
_MEMBERS = ("type", "coordinates", "bbox")


@dataclass(frozen=True, slots=True, eq=False)
class Territory:
    """A validated territory; build it with `from_geojson`.

    `edges` holds every ring edge of every polygon, exterior rings and holes alike, as
    (lon1, lat1, lon2, lat2) rows; `edge_columns` is the same, precomputed for the kernels of
    `fraud.geo`. Both arrays are read-only.
    """

    geojson: dict[str, object]  # normalised: type and coordinates only, altitudes dropped
    edges: FloatArray  # (E, 4) float64
    bbox: tuple[float, float, float, float]  # min_lon, min_lat, max_lon, max_lat
    edge_columns: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        edges = np.array(self.edges, dtype=np.float64, order="C")
        if edges.ndim != 2 or edges.shape[1] != 4 or len(edges) == 0:
            raise ValueError(f"edges must be a non-empty (E, 4) array, got shape {edges.shape}")
        columns = edge_columns(edges)
        edges.flags.writeable = False
        columns.flags.writeable = False
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "edge_columns", columns)

    @classmethod
    def from_geojson(cls, document: object, *, stored: bool = False) -> Territory:
        """Validate a GeoJSON Polygon or MultiPolygon geometry object and build the territory.

        Only geometry objects are accepted, not Features. Each position is [lon, lat] with an
        optional altitude, which is dropped. Raises TerritoryError naming the offending member or
        position for anything else: see the module constants for the size limits. No ring may
        cross itself or another ring of its polygon; each hole lies inside its polygon's exterior
        and outside its other holes, and rings that touch do so at single points that leave the
        polygon in one piece.

        ``stored``: a territory read back from Redis, validated when it was saved; the size
        limits and the crossing check, which a territory saved by an earlier version may not
        meet, are not applied again.
        """
        if not isinstance(document, dict):
            raise TerritoryError(
                f"{_ROOT}: expected a GeoJSON Polygon or MultiPolygon object, "
                f"got {_describe(document)}"
            )
        kind = document.get("type")
        if kind not in ("Polygon", "MultiPolygon"):
            hint = ""
            if kind in ("Feature", "FeatureCollection", "GeometryCollection"):
                hint = "; give a single Polygon or MultiPolygon geometry object"
            raise TerritoryError(
                f'{_ROOT}.type: expected "Polygon" or "MultiPolygon", got {_describe(kind)}{hint}'
            )
        for name in document:
            if name not in _MEMBERS:
                raise TerritoryError(
                    f"{_ROOT}.{name}: unknown member; a territory has only type, coordinates "
                    "and bbox"
                )
        if "bbox" in document:
            _check_bbox(document["bbox"])
        if "coordinates" not in document:
            raise TerritoryError(f"{_ROOT}.coordinates: missing")

        parser = _Parser(checks_limits=not stored)
        path = f"{_ROOT}.coordinates"
        coordinates = document["coordinates"]
        normalised: list[object]
        if kind == "Polygon":
            normalised = parser.polygon(coordinates, path)
        else:
            polygons = _array(coordinates, path, "an array of polygons")
            if not polygons:
                raise TerritoryError(f"{path}: a MultiPolygon needs at least one polygon")
            if not stored and len(polygons) > MAX_POLYGONS:
                raise TerritoryError(f"{path}: {len(polygons)} polygons, more than {MAX_POLYGONS}")
            normalised = [parser.polygon(p, f"{path}[{i}]") for i, p in enumerate(polygons)]
        if not stored:
            _check_crossings(parser.rings, parser.ring_polygons, parser.ring_paths)

        edges = np.concatenate([np.concatenate([r[:-1], r[1:]], axis=1) for r in parser.rings])
        low = edges[:, :2].min(axis=0)
        high = edges[:, :2].max(axis=0)
        bbox = (float(low[0]), float(low[1]), float(high[0]), float(high[1]))
        return cls({"type": kind, "coordinates": normalised}, edges, bbox)

    def polygon_bboxes(self) -> FloatArray:
        """(P, 4) min_lon, min_lat, max_lon, max_lat of each polygon.

        Tighter than `bbox` for a MultiPolygon: one split at the antimeridian has a bbox spanning
        all longitudes, while its polygons sit at either edge of the map.
        """
        coordinates = self.geojson["coordinates"]
        polygons = cast(
            "list[list[list[list[float]]]]",
            [coordinates] if self.geojson["type"] == "Polygon" else coordinates,
        )
        bboxes = np.empty((len(polygons), 4), dtype=np.float64)
        for i, polygon in enumerate(polygons):
            positions = np.array([p for ring in polygon for p in ring], dtype=np.float64)
            bboxes[i, :2] = positions.min(axis=0)
            bboxes[i, 2:] = positions.max(axis=0)
        return bboxes


def contains(
    territories: Sequence[Territory], lats: npt.ArrayLike, lons: npt.ArrayLike
) -> BoolArray:
    """Point i in territories[i]? False for a NaN (or otherwise invalid) point."""
    lat, lon = normalise_points(lats, lons)
    inside = np.zeros(len(lat), dtype=np.bool_)
    for chunk, counts in _chunks(territories, len(lat)):
        columns, starts = _gather(territories[chunk], counts)
        pair_lat, pair_lon = np.repeat(lat[chunk], counts), np.repeat(lon[chunk], counts)
        inside[chunk] = np.logical_xor.reduceat(ray_crossings(pair_lat, pair_lon, columns), starts)
    return inside


def distances_km(
    territories: Sequence[Territory], lats: npt.ArrayLike, lons: npt.ArrayLike
) -> FloatArray:
    """Point i against territories[i]: 0.0 where the point is inside (even-odd over all rings, so
    holes are outside), else the great-circle distance in km to the nearest edge; NaN for a NaN
    (or otherwise invalid) point.

    The nearest point of each edge is found in a local projection centred on the point (see
    `fraud.geo.nearest_on_edges`); the distance to the nearest of those is then a haversine: within
    0.1% of the true distance up to 300 km at latitude 60. Each chunk of the batch goes through
    one numpy pass.
    """
    lat, lon = normalise_points(lats, lons)
    km = np.empty(len(lat), dtype=np.float64)
    for chunk, counts in _chunks(territories, len(lat)):
        km[chunk] = _distances(territories[chunk], counts, lat[chunk], lon[chunk])
    return km


def _distances(
    territories: Sequence[Territory],
    counts: npt.NDArray[np.intp],
    lat: FloatArray,
    lon: FloatArray,
) -> FloatArray:
    columns, starts = _gather(territories, counts)
    pair_lat = np.repeat(lat, counts)
    pair_lon = np.repeat(lon, counts)
    inside = np.logical_xor.reduceat(ray_crossings(pair_lat, pair_lon, columns), starts)
    cos_lat = np.repeat(np.cos(np.radians(lat)), counts)
    squared, t = nearest_on_edges(pair_lat, pair_lon, cos_lat, columns)

    # The first pair of each point that reaches the point's minimum (NaN points have none).
    nearest = np.flatnonzero(squared == np.repeat(np.minimum.reduceat(squared, starts), counts))
    owner = np.searchsorted(starts, nearest, side="right") - 1
    first = run_starts(owner)
    nearest, owner = nearest[first], owner[first]

    near_lat, near_lon = nearest_position(columns, nearest, t[nearest])
    km = np.full(len(lat), np.nan)
    km[owner] = haversine_km(lat[owner], lon[owner], near_lat, near_lon)
    km[inside] = 0.0
    return km


def _chunks(
    territories: Sequence[Territory], n_points: int
) -> Iterator[tuple[slice, npt.NDArray[np.intp]]]:
    """Consecutive slices of the batch with about _CHUNK_PAIRS (point, edge) pairs each (more
    only for a point whose territory alone has more edges), and their points' edge counts."""
    if len(territories) != n_points:
        raise ValueError(f"{len(territories)} territories for {n_points} points")
    if n_points == 0:
        return
    counts = np.fromiter((len(t.edges) for t in territories), dtype=np.intp, count=n_points)
    ends = np.cumsum(counts)
    cuts = np.searchsorted(ends, np.arange(_CHUNK_PAIRS, ends[-1], _CHUNK_PAIRS), side="right")
    bounds: list[int] = np.unique(np.r_[0, cuts, n_points]).tolist()
    for start, stop in itertools.pairwise(bounds):
        yield slice(start, stop), counts[start:stop]


def _gather(
    territories: Sequence[Territory], counts: npt.NDArray[np.intp]
) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """Edge columns of territories[0], territories[1], ... side by side, and where each
    territory's edges start."""
    columns = np.concatenate([t.edge_columns for t in territories], axis=1)
    return columns, np.cumsum(counts) - counts


class _Parser:
    """Walks the coordinates of one document, keeping its rings and the running vertex count."""

    def __init__(self, checks_limits: bool) -> None:
        self.rings: list[FloatArray] = []
        self.ring_polygons: list[int] = []  # the number of each ring's polygon
        self.ring_paths: list[str] = []
        self.polygons = 0
        self.total = 0
        self.checks_limits = checks_limits

    def polygon(self, value: object, path: str) -> list[object]:
        rings = _array(value, path, "an array of rings")
        if not rings:
            raise TerritoryError(f"{path}: a polygon needs at least one ring (its exterior)")
        self.polygons += 1
        return [self.ring(r, f"{path}[{i}]") for i, r in enumerate(rings)]

    def ring(self, value: object, path: str) -> list[object]:
        items = _array(value, path, "a ring (an array of positions)")
        if items and not isinstance(items[0], list | tuple):
            raise TerritoryError(
                f"{path}: expected a ring (an array of positions), got {_describe(value)}; "
                "check the nesting depth"
            )
        self.total += len(items)
        if self.checks_limits and len(items) > MAX_RING_VERTICES:
            raise TerritoryError(
                f"{path}: ring has {len(items)} positions, more than {MAX_RING_VERTICES}"
            )
        if self.checks_limits and self.total > MAX_TOTAL_VERTICES:
            raise TerritoryError(
                f"{path}: this ring brings the territory to {self.total} positions, "
                f"more than {MAX_TOTAL_VERTICES}"
            )
        # Positions before their count, so that a ring one level too deep reads as such.
        checked = _valid_positions(items)
        positions: list[object]
        if checked is None:  # something is wrong: find it, position by position
            positions = [_position(p, f"{path}[{i}]") for i, p in enumerate(items)]
            ring = np.array(positions, dtype=np.float64)
        else:
            ring, positions = checked
        if len(positions) < 4:
            raise TerritoryError(
                f"{path}: a ring needs at least 4 positions (the last repeating the first), "
                f"got {len(positions)}"
            )
        if positions[0] != positions[-1]:
            raise TerritoryError(
                f"{path}: ring is not closed: its last position {_describe(positions[-1])} "
                f"differs from its first {_describe(positions[0])}"
            )
        _check_area(ring, path)
        _check_edge_spans(ring, path)
        self.rings.append(ring)
        self.ring_polygons.append(self.polygons - 1)
        self.ring_paths.append(path)
        return positions


def _valid_positions(items: Sequence[object]) -> tuple[FloatArray, list[object]] | None:
    """The (n, 2) lon/lat array and the [lon, lat] positions of a ring whose every position is
    valid (as `_position` says), checked mostly in C: ten times faster than position by
    position. None otherwise."""
    kinds = set(map(type, items))
    if not kinds <= {list, tuple}:
        return None
    positions = cast("Sequence[Sequence[object]]", items)
    widths = set(map(len, positions))
    if widths not in ({2}, {3}):
        return None
    if not set(map(type, itertools.chain.from_iterable(positions))) <= {int, float}:
        return None  # no bools, strings, nulls or arrays
    [width] = widths
    try:
        flat = itertools.chain.from_iterable(positions)
        array = np.fromiter(flat, np.float64, count=width * len(positions)).reshape(-1, width)
    except OverflowError:  # an int too large for a float
        return None
    lon_lat = np.ascontiguousarray(array[:, :2])
    if not (
        np.isfinite(array).all()
        and (np.abs(lon_lat[:, 0]) <= 180).all()
        and (np.abs(lon_lat[:, 1]) <= 90).all()
    ):
        return None
    if width == 2 and kinds == {list}:
        return lon_lat, list(positions)
    return lon_lat, [[p[0], p[1]] for p in positions]


def _position(value: object, path: str) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) not in (2, 3):
        raise TerritoryError(f"{path}: expected a position [lon, lat], got {_describe(value)}")
    names = ("longitude", "latitude", "altitude")
    for name, x, limit in zip(names, value, (180, 90, math.inf), strict=False):
        if not _is_number(x):
            raise TerritoryError(f"{path}: {name} must be a number, got {_describe(x)}")
        if isinstance(x, float) and not math.isfinite(x):
            raise TerritoryError(f"{path}: {name} {x} is not finite")
        if not -limit <= x <= limit:
            raise TerritoryError(f"{path}: {name} {x} is outside -{limit}..{limit}")
    return cast("list[float]", [value[0], value[1]])


def _check_area(ring: FloatArray, path: str) -> None:
    # Shoelace formula relative to the first vertex; "zero" is relative to the ring's extent.
    x = ring[:, 0] - ring[0, 0]
    y = ring[:, 1] - ring[0, 1]
    twice_area = float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))  # np.dot's BLAS: 1000x slower
    extent = float(max(np.ptp(x), np.ptp(y)))
    if abs(twice_area) <= 1e-12 * extent * extent:
        raise TerritoryError(
            f"{path}: ring has zero area (its positions are collinear or repeated)"
        )


def _check_edge_spans(ring: FloatArray, path: str) -> None:
    lon = ring[:, 0]
    span = np.abs(np.diff(lon))
    band = (np.abs(lon[:-1]) == 180) & (np.abs(lon[1:]) == 180)
    too_long = np.flatnonzero((span > MAX_EDGE_SPAN_DEG) & ~band)
    if too_long.size:
        i = int(too_long[0])
        raise TerritoryError(
            f"{path}[{i}]: the edge to the next position spans {span[i]:g} degrees of longitude, "
            f"more than {MAX_EDGE_SPAN_DEG:g}; add a vertex in between, or split a territory that "
            "crosses the antimeridian into a MultiPolygon at ±180 (RFC 7946)"
        )


def _check_crossings(
    rings: Sequence[FloatArray], polygon_of_ring: Sequence[int], paths: Sequence[str]
) -> None:
    """Refuse a ring that meets itself other than where consecutive edges join (a bow-tie, a
    touch, an edge doubling back), rings of one polygon that cross or run along one another or
    touch in a loop (`_check_touches`), and a hole outside its exterior or inside another hole
    (`_check_holes`). Polygons of a MultiPolygon may overlap.

    Only pairs of edges of one polygon whose extents overlap along an axis are tested, along the
    axis with fewer such pairs (counted first, in O(n log n)); more than MAX_EDGE_PAIRS of them
    (rings of long criss-crossing edges) is refused too, so the check of the largest territory
    stays within milliseconds.
    """
    edges, ring_of, start_of, length_of = _ring_edges(rings)
    # Consecutive edges of a ring (its last and first too) meet at a position: only an edge
    # doubling back along the one before is wrong there.
    same = ring_of[:-1] == ring_of[1:]
    following = np.flatnonzero(same)
    before = np.r_[following, np.flatnonzero(np.r_[~same, True])]  # ... and each ring's last
    after = np.r_[following + 1, np.flatnonzero(np.r_[True, ~same])]  # ... and its first
    _, _, back = segments_meet(edges[before], edges[after])
    if back.any():
        k = int(before[np.argmax(back)])
        raise TerritoryError(
            f"{paths[ring_of[k]]}: the ring crosses itself: it turns back along its own edge at "
            f"position {start_of[k] + 1}"
        )
    # Each polygon's edges shifted 1000 degrees from the last one's: no pairs across polygons.
    # (Rounding is monotonic, so shifted extents that touch still touch.)
    shift = np.asarray(polygon_of_ring, dtype=np.float64)[ring_of] * 1000.0
    low_x = np.minimum(edges[:, 0], edges[:, 2]) + shift
    high_x = np.maximum(edges[:, 0], edges[:, 2]) + shift
    low_y = np.minimum(edges[:, 1], edges[:, 3]) + shift
    high_y = np.maximum(edges[:, 1], edges[:, 3]) + shift
    by_x, by_y = overlap_count(low_x, high_x), overlap_count(low_y, high_y)
    if min(by_x, by_y) > MAX_EDGE_PAIRS:
        raise TerritoryError(
            f"{_ROOT}.coordinates: {min(by_x, by_y)} pairs of edges lie side by side, more than "
            f"{MAX_EDGE_PAIRS}: too many long edges criss-crossing to check that none cross; "
            "give fewer, shorter edges"
        )
    if by_x <= by_y:
        first, second = overlapping_pairs(low_x, high_x)
        keep = (low_y[first] <= high_y[second]) & (low_y[second] <= high_y[first])
    else:
        first, second = overlapping_pairs(low_y, high_y)
        keep = (low_x[first] <= high_x[second]) & (low_x[second] <= high_x[first])
    same_ring = ring_of[first] == ring_of[second]
    gap = np.abs(first - second)
    keep &= ~(same_ring & ((gap == 1) | (gap == length_of[first] - 1)))  # consecutive edges
    first, second, same_ring = first[keep], second[keep], same_ring[keep]
    crossing, touching, overlapping = segments_meet(edges[first], edges[second])
    wrong = crossing | overlapping | (same_ring & touching)
    if wrong.any():
        i = int(np.argmax(wrong))
        a, b = sorted((int(first[i]), int(second[i])))
        if ring_of[a] == ring_of[b]:
            raise TerritoryError(
                f"{paths[ring_of[b]]}: the ring crosses itself: its edges from position "
                f"{start_of[a]} and from position {start_of[b]} meet"
            )
        raise TerritoryError(
            f"{paths[ring_of[b]]}: the ring crosses ring {paths[ring_of[a]]}: its edge from "
            f"position {start_of[b]} meets that ring's edge from position {start_of[a]}"
        )
    between = touching & ~same_ring
    first, second = first[between], second[between]
    touches = _check_touches(
        edges[first], edges[second], ring_of[first], ring_of[second], len(rings), paths
    )
    axis = 0 if by_x <= by_y else 1  # the one along which few edges lie side by side
    _check_holes(rings, polygon_of_ring, paths, edges, ring_of, shift, touches, axis)


def _check_touches(
    first: FloatArray,
    second: FloatArray,
    first_ring: npt.NDArray[np.intp],
    second_ring: npt.NDArray[np.intp],
    n_rings: int,
    paths: Sequence[str],
) -> set[tuple[float, float]]:
    """Refuse touches between rings (edges ``first[i]`` and ``second[i]``, of different rings
    of one polygon) that close a loop: a hole touching its exterior at two points, or rings
    touching one another round an area, cut the polygon apart. The points where rings touch.

    Rings and the points where they touch make a graph with an edge from each ring to each of
    its touch points; the polygon is in one piece when that graph has no cycle.
    """
    pair, end = np.nonzero(ends_on_other(first, second))
    ends = np.stack([first[:, :2], first[:, 2:], second[:, :2], second[:, 2:]], axis=1)
    points = ends[pair, end]
    links = np.unique(
        np.column_stack(
            [np.r_[first_ring[pair], second_ring[pair]], np.concatenate([points, points])]
        ),
        axis=0,
    )
    touch_points, point_of = np.unique(links[:, 1:], axis=0, return_inverse=True)
    parent = list(range(n_rings + len(touch_points)))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    # A graph without cycles has fewer links than nodes: the loop ends within n_rings + points.
    for (ring, x, y), point in zip(links.tolist(), point_of.reshape(-1).tolist(), strict=True):
        ring_root, point_root = root(int(ring)), root(n_rings + point)
        if ring_root == point_root:
            raise TerritoryError(
                f"{paths[int(ring)]}: the ring touches the other rings of its polygon in a loop "
                f"(closed at [{x:g}, {y:g}]), which cuts the polygon apart; rings may touch at "
                "one point, and not round an area"
            )
        parent[ring_root] = point_root
    return {(x, y) for x, y in touch_points.tolist()}


def _check_holes(
    rings: Sequence[FloatArray],
    polygon_of_ring: Sequence[int],
    paths: Sequence[str],
    edges: FloatArray,
    ring_of: npt.NDArray[np.intp],
    shift: FloatArray,
    touches: set[tuple[float, float]],
    axis: int,
) -> None:
    """Refuse a hole outside its polygon's exterior ring or inside another of its holes: once
    rings neither cross nor touch in a loop, a hole lies wholly inside or outside each other
    ring, so one of its positions that touches no ring says which.

    That position is tested by the even-odd rule against the polygon's other rings, with a ray
    along ``axis``'s perpendicular, crossing only edges whose extent along ``axis`` holds it:
    as many (position, edge) pairs as there are pairs of edges side by side along it at most.
    """
    polygon_of = np.asarray(polygon_of_ring, dtype=np.intp)
    is_hole = np.r_[False, polygon_of[1:] == polygon_of[:-1]]
    holes = np.flatnonzero(is_hole)
    if not holes.size:
        return
    exterior_of = np.flatnonzero(~is_hole)[polygon_of[holes]]
    positions = []
    for hole in holes.tolist():
        free = next((p for p in map(tuple, rings[hole].tolist()) if p not in touches), None)
        if free is None:
            raise TerritoryError(f"{paths[hole]}: every position of the hole touches another ring")
        positions.append(free)
    points = np.array(positions, dtype=np.float64)
    # Along the axis: the edges' extents and the points, each polygon shifted as in the caller.
    at = points[:, axis] + polygon_of[holes] * 1000.0
    low = np.r_[np.minimum(edges[:, axis], edges[:, axis + 2]) + shift, at]
    high = np.r_[np.maximum(edges[:, axis], edges[:, axis + 2]) + shift, at]
    a, b = overlapping_pairs(low, high)
    n_edges = len(edges)
    mixed = (a < n_edges) != (b < n_edges)
    edge = np.where(a < n_edges, a, b)[mixed]
    point = np.where(a < n_edges, b, a)[mixed] - n_edges
    other = ring_of[edge] != holes[point]
    edge, point = edge[other], point[other]
    # A "northward" ray in coordinates with the axis first (x, y or y, x).
    order = [axis, 1 - axis]
    columns = edge_columns(edges[edge][:, [*order, *(i + 2 for i in order)]])
    crosses = ray_crossings(points[point, order[1]], points[point, order[0]], columns)
    on_exterior = ring_of[edge] == exterior_of[point]
    inside_exterior = np.bincount(point[crosses & on_exterior], minlength=len(holes)) % 2 == 1
    inside = np.bincount(point[crosses], minlength=len(holes)) % 2 == 1
    wrong = ~inside_exterior | ~inside
    if wrong.any():
        i = int(np.argmax(wrong))
        if not inside_exterior[i]:
            raise TerritoryError(
                f"{paths[holes[i]]}: the hole lies outside its polygon's exterior ring (an area "
                "of its own is a polygon of a MultiPolygon)"
            )
        raise TerritoryError(f"{paths[holes[i]]}: the hole lies inside another hole of its polygon")


def _ring_edges(
    rings: Sequence[FloatArray],
) -> tuple[FloatArray, npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The edges (x1, y1, x2, y2) of the rings, zero-length ones (a repeated position) left
    out, with each edge's ring, the position it starts at and its ring's edge count."""
    positions = np.concatenate(rings)
    ends = np.cumsum([len(ring) for ring in rings])
    is_last = np.zeros(len(positions), dtype=np.bool_)
    is_last[ends - 1] = True
    starts = np.flatnonzero(~is_last[:-1] & (positions[1:] != positions[:-1]).any(axis=1))
    ring_of = np.searchsorted(ends, starts, side="right")
    edges = np.concatenate([positions[starts], positions[starts + 1]], axis=1)
    length_of = np.bincount(ring_of, minlength=len(rings))[ring_of]
    start_of = starts - np.r_[0, ends[:-1]][ring_of]
    return edges, ring_of, start_of, length_of


def _check_bbox(value: object) -> None:
    if not (
        isinstance(value, list | tuple)
        and len(value) in (4, 6)
        and all(_is_number(x) and math.isfinite(x) for x in value)
    ):
        raise TerritoryError(
            f"{_ROOT}.bbox: expected an array of 4 or 6 numbers, got {_describe(value)}"
        )


def _array(value: object, path: str, what: str) -> list[object] | tuple[object, ...]:
    if not isinstance(value, list | tuple):
        raise TerritoryError(f"{path}: expected {what}, got {_describe(value)}")
    return value


def _is_number(x: object) -> TypeGuard[int | float]:
    """JSON numbers only: bools are ints to Python but not numbers to GeoJSON; huge ints are
    allowed here and fail the range checks."""
    return isinstance(x, int | float) and not isinstance(x, bool)


def _describe(value: object, depth: int = 0) -> str:
    """The value as JSON (true, null, "text"), shortened for error messages: arrays and objects
    two levels deep at most, whatever their nesting (deeper ones show as [...] and {...})."""
    if isinstance(value, list | tuple | dict):
        if depth == 2:
            text = "{...}" if isinstance(value, dict) else "[...]"
        elif isinstance(value, dict):
            members = itertools.islice(value.items(), 8)
            text = "{" + ", ".join(f"{_describe(k)}: {_describe(v, depth + 1)}" for k, v in members)
            text += ", ...}" if len(value) > 8 else "}"
        else:
            text = "[" + ", ".join(_describe(v, depth + 1) for v in value[:8])
            text += ", ...]" if len(value) > 8 else "]"
    else:
        try:
            text = json.dumps(value, allow_nan=True)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
