"""Geo maths and territories: validation, point in territory, distance to a territory."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fraud.errors import TerritoryError
from fraud.geo import EARTH_RADIUS_KM, FloatArray, haversine_km, normalise_points, wrap_lon
from fraud.territory import (
    MAX_POLYGONS,
    MAX_RING_VERTICES,
    MAX_TOTAL_VERTICES,
    Territory,
    contains,
    distances_km,
)

KM_PER_DEG = EARTH_RADIUS_KM * math.pi / 180


def box(lon0: float, lat0: float, lon1: float, lat1: float) -> list[list[float]]:
    """A closed counter-clockwise rectangular ring."""
    return [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]


def polygon(*rings: list[list[float]]) -> Territory:
    return Territory.from_geojson({"type": "Polygon", "coordinates": list(rings)})


def multipolygon(*polygons: list[list[list[float]]]) -> Territory:
    return Territory.from_geojson({"type": "MultiPolygon", "coordinates": list(polygons)})


def circle(n: int, lon0: float = 0.0, lat0: float = 0.0, radius: float = 1.0) -> list[list[float]]:
    """A closed ring of n positions (n - 1 distinct vertices) round a centre."""
    angles = np.linspace(0.0, 2 * np.pi, n - 1, endpoint=False)
    ring = [[lon0 + radius * math.cos(a), lat0 + radius * math.sin(a)] for a in angles]
    return [*ring, ring[0]]


def measure(territory: Territory, points: list[tuple[float, float]]) -> FloatArray:
    lats = [lat for lat, _ in points]
    lons = [lon for _, lon in points]
    return distances_km([territory] * len(points), lats, lons)


def inside(territory: Territory, points: list[tuple[float, float]]) -> list[bool]:
    lats = [lat for lat, _ in points]
    lons = [lon for _, lon in points]
    result: list[bool] = contains([territory] * len(points), lats, lons).tolist()
    return result


def test_haversine_known_distances_and_broadcasting() -> None:
    assert haversine_km(0.0, 0.0, 1.0, 0.0) == pytest.approx(KM_PER_DEG)
    # London to Paris
    assert haversine_km(51.5074, -0.1278, 48.8566, 2.3522) == pytest.approx(343.6, abs=0.5)
    assert haversine_km(0.0, 179.9, 0.0, -179.9) == pytest.approx(0.2 * KM_PER_DEG)
    assert haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    rows = haversine_km(np.array([[0.0], [60.0]]), 0.0, np.array([0.0, 0.0, 1.0]), 1.0)
    assert rows.shape == (2, 3)
    assert rows[1, 0] == pytest.approx(haversine_km(60.0, 0.0, 0.0, 1.0))


def test_wrap_lon_and_normalise_points() -> None:
    assert wrap_lon(181.0) == pytest.approx(-179.0)
    assert wrap_lon(-540.0) == -180.0
    assert wrap_lon(180.0) == -180.0
    assert wrap_lon(np.array([0.0, 359.0, -190.0])).tolist() == pytest.approx([0.0, -1.0, 170.0])
    lat, lon = normalise_points([10.0, 95.0, math.nan, 1.0, 2.0], [190.0, 0.0, 0.0, math.inf, 3.0])
    assert lat[[0, 4]].tolist() == [10.0, 2.0]
    assert lon[[0, 4]].tolist() == pytest.approx([-170.0, 3.0])
    assert np.isnan(lat[1:4]).all()
    assert np.isnan(lon[1:4]).all()


def test_square_inside_and_outside() -> None:
    square = polygon(box(0, 0, 10, 10))
    points = [(5.0, 5.0), (9.5, 0.5), (11.0, 5.0), (-1.0, 5.0), (5.0, 10.5), (20.0, 20.0)]
    assert inside(square, points) == [True, True, False, False, False, False]
    km = measure(square, points)
    assert km[:2].tolist() == [0.0, 0.0]
    assert km[2] == pytest.approx(KM_PER_DEG, rel=1e-9)  # due north of the top edge
    assert km[3] == pytest.approx(KM_PER_DEG, rel=1e-9)  # due south of the bottom edge
    assert km[4] == pytest.approx(haversine_km(5.0, 10.5, 5.0, 10.0), rel=1e-9)  # due east
    assert km[5] == pytest.approx(haversine_km(20.0, 20.0, 10.0, 10.0), rel=1e-9)  # the corner


def test_distance_due_north_of_an_east_west_edge_is_the_haversine() -> None:
    territory = polygon(box(10, 40, 14, 45))
    km = measure(territory, [(46.5, 12.0), (45.25, 11.0)])
    assert km.tolist() == pytest.approx(
        [haversine_km(46.5, 12.0, 45.0, 12.0), haversine_km(45.25, 11.0, 45.0, 11.0)], rel=1e-12
    )


def test_point_in_a_hole_is_outside_and_measures_to_the_hole() -> None:
    donut = polygon(box(0, 0, 10, 10), box(4, 4, 6, 6)[::-1])
    assert inside(donut, [(5.0, 5.0), (2.0, 2.0), (5.0, 6.5)]) == [False, True, True]
    km = measure(donut, [(5.0, 5.0), (5.0, 4.5)])
    # The hole's east and west edges, 1° of longitude away, are nearer than its north and south.
    assert km[0] == pytest.approx(haversine_km(5.0, 5.0, 5.0, 4.0), rel=1e-6)
    assert km[1] == pytest.approx(haversine_km(5.0, 4.5, 5.0, 4.0), rel=1e-6)


def test_multipolygon_point_in_the_second_polygon() -> None:
    islands = multipolygon([box(0, 0, 1, 1)], [box(20, 20, 21, 21)])
    assert inside(islands, [(20.5, 20.5), (0.5, 0.5), (10.0, 10.0)]) == [True, True, False]
    km = measure(islands, [(20.5, 20.5), (20.5, 22.0)])
    assert km.tolist() == pytest.approx([0.0, haversine_km(20.5, 22.0, 20.5, 21.0)], rel=1e-9)


def test_territory_split_at_the_antimeridian() -> None:
    pacific = multipolygon([box(179.9, -20, 180, 50)], [box(-180, -20, -170, 50)])
    points = [(40.0, 179.95), (40.0, -179.95), (40.0, 180.0), (40.0, 180.05), (40.0, 178.9)]
    assert inside(pacific, points) == [True, True, True, True, False]
    km = measure(pacific, points)
    assert km[:4].tolist() == [0.0] * 4
    assert km[4] == pytest.approx(math.cos(math.radians(40)) * KM_PER_DEG, rel=1e-3)


def test_distance_across_the_antimeridian_is_short() -> None:
    west_of_it = polygon(box(-179.9, -10, -170, 10))
    km = measure(west_of_it, [(0.0, 179.9), (60.0, 179.9)])
    assert km[0] == pytest.approx(0.2 * KM_PER_DEG, rel=1e-6)  # 22 km, not 40,000
    assert km[1] == pytest.approx(haversine_km(60.0, 179.9, 10.0, -179.9), rel=1e-9)  # corner


def test_band_round_the_globe() -> None:
    """Edges from -180 to 180 are allowed; a point below the band has two crossings north."""
    band = polygon(box(-180, 0, 180, 10))
    points = [(5.0, 100.0), (-5.0, 100.0), (15.0, -180.0), (5.0, 179.99)]
    assert inside(band, points) == [True, False, False, True]
    assert measure(band, points[1:3]).tolist() == pytest.approx([5 * KM_PER_DEG] * 2, rel=1e-9)


def test_distance_is_accurate_far_from_the_equator() -> None:
    """Against the minimum over densely sampled edges, around latitude 63, up to ~800 km."""
    ring = [[1.0, 61.5], [6.0, 63.5], [8.0, 66.0], [2.0, 65.0], [1.0, 61.5]]
    territory = polygon(ring)
    rng = np.random.RandomState(7)
    lats = rng.uniform(57.0, 69.0, 60)
    lons = rng.uniform(-5.0, 14.0, 60)
    t = np.linspace(0.0, 1.0, 20_001)
    vertices = np.array(ring)
    samples = np.concatenate([a + t[:, None] * (b - a) for a, b in itertools.pairwise(vertices)])
    expected = haversine_km(lats[:, None], lons[:, None], samples[:, 1], samples[:, 0]).min(axis=1)
    km = distances_km([territory] * 60, lats, lons)
    outside = km > 0
    assert 20 < outside.sum() < 60
    assert expected[outside].max() > 600
    near = outside & (expected < 300)
    assert np.allclose(km[near], expected[near], rtol=1e-3)
    assert np.allclose(km[outside], expected[outside], rtol=2e-3)
    assert (km[outside] >= expected[outside] * (1 - 1e-4)).all()  # to sampling precision


def test_large_batches_give_the_same_answers_as_single_points() -> None:
    """Batches are split into chunks of a few thousand (point, edge) pairs, one territory alone
    may exceed a chunk; the answers must not depend on the split."""
    big = polygon(circle(9_000, lon0=2.0, lat0=2.0, radius=3.0))
    small = polygon(box(0, 0, 1, 1), box(0.4, 0.4, 0.6, 0.6)[::-1])
    rng = np.random.RandomState(3)
    territories = [big if rng.rand() < 0.05 else small for _ in range(600)]
    lats = rng.uniform(-3.0, 6.0, 600)
    lons = rng.uniform(-3.0, 6.0, 600)
    km = distances_km(territories, lats, lons)
    hits = contains(territories, lats, lons)
    single = [
        distances_km([t], [a], [o])[0] for t, a, o in zip(territories, lats, lons, strict=True)
    ]
    assert km.tolist() == single
    assert hits.tolist() == (km == 0).tolist()
    assert 0 < hits.sum() < 600


def test_nan_and_invalid_points() -> None:
    square = polygon(box(0, 0, 10, 10))
    lats = [math.nan, 5.0, 5.0, 91.0, 5.0]
    lons = [5.0, math.nan, math.inf, 5.0, 5.0]
    assert contains([square] * 5, lats, lons).tolist() == [False] * 4 + [True]
    km = distances_km([square] * 5, lats, lons)
    assert np.isnan(km[:4]).all()
    assert km[4] == 0.0


def test_empty_batch_and_length_mismatch() -> None:
    square = polygon(box(0, 0, 10, 10))
    assert distances_km([], [], []).shape == (0,)
    assert contains([], [], []).shape == (0,)
    with pytest.raises(ValueError, match="2 territories for 1 points"):
        distances_km([square, square], [1.0], [1.0])


def test_from_geojson_normalises_and_exposes_arrays() -> None:
    territory = Territory.from_geojson(
        {
            "type": "MultiPolygon",
            "bbox": [0, 0, 5, 6],
            "coordinates": [
                [[(0, 0, 12.5), (2, 0, 12.5), (2, 2, 12.5), (0, 0, 12.5)]],
                [box(3, 4, 5, 6)],
            ],
        }
    )
    assert territory.geojson == {
        "type": "MultiPolygon",
        "coordinates": [[[[0, 0], [2, 0], [2, 2], [0, 0]]], [box(3, 4, 5, 6)]],
    }
    assert territory.bbox == (0.0, 0.0, 5.0, 6.0)
    assert territory.edges.shape == (7, 4)
    assert territory.edges[0].tolist() == [0.0, 0.0, 2.0, 0.0]
    assert territory.polygon_bboxes().tolist() == [[0, 0, 2, 2], [3, 4, 5, 6]]
    with pytest.raises(ValueError, match="read-only"):
        territory.edges[0, 0] = 1.0


def _document(coordinates: object, kind: str = "Polygon") -> dict[str, object]:
    return {"type": kind, "coordinates": coordinates}


SQUARE = box(0, 0, 1, 1)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param([SQUARE], "territory: expected a GeoJSON Polygon", id="not-an-object"),
        pytest.param(
            {"type": "Feature", "geometry": _document([SQUARE])},
            'territory.type: expected "Polygon" or "MultiPolygon", got "Feature"; give a single',
            id="feature",
        ),
        pytest.param({"type": "Point", "coordinates": [0, 0]}, "territory.type:", id="wrong-type"),
        pytest.param(
            {**_document([SQUARE]), "properties": {}},
            "territory.properties: unknown member",
            id="unknown-member",
        ),
        pytest.param({"type": "Polygon"}, "territory.coordinates: missing", id="no-coordinates"),
        pytest.param(
            {**_document([SQUARE]), "bbox": [0, 0, 1]}, "territory.bbox: expected", id="bad-bbox"
        ),
        pytest.param(
            _document([[[0, 0], [1, 0], [1, 1], [0, 1]]]),
            "territory.coordinates[0]: ring is not closed: its last position [0, 1] differs",
            id="open-ring",
        ),
        pytest.param(
            _document([[[0, 0], [1, 0], [0, 0]]]),
            "territory.coordinates[0]: a ring needs at least 4 positions",
            id="too-few-positions",
        ),
        pytest.param(
            _document([[[0, 0], [1, 0], [1, 1], [0, 95], [0, 0]]]),
            "territory.coordinates[0][3]: latitude 95 is outside -90..90",
            id="latitude-out-of-range",
        ),
        pytest.param(
            _document([SQUARE, [[0, 0], [180.5, 0], [1, 1], [0, 0]]]),
            "territory.coordinates[1][1]: longitude 180.5 is outside -180..180",
            id="longitude-out-of-range",
        ),
        pytest.param(
            _document([[[0, 0], [1, True], [1, 1], [0, 0]]]),
            "territory.coordinates[0][1]: latitude must be a number, got true",
            id="bool-coordinate",
        ),
        pytest.param(
            _document([[[0, 0], [1, 0], [math.nan, 1], [0, 0]]]),
            "territory.coordinates[0][2]: longitude nan is not finite",
            id="nan",
        ),
        pytest.param(
            _document([[[0, 0], [1, 0], ["1", 1], [0, 0]]]),
            'territory.coordinates[0][2]: longitude must be a number, got "1"',
            id="string-coordinate",
        ),
        pytest.param(
            _document([[[0, 0], [1, 0, 0, 0], [1, 1], [0, 0]]]),
            "territory.coordinates[0][1]: expected a position [lon, lat]",
            id="long-position",
        ),
        pytest.param(
            _document(SQUARE),
            "territory.coordinates[0]: expected a ring (an array of positions), got [0, 0]",
            id="nesting-too-shallow",
        ),
        pytest.param(
            _document([[SQUARE]]),
            "territory.coordinates[0][0]: expected a position [lon, lat]",
            id="nesting-too-deep",
        ),
        pytest.param(
            _document([SQUARE], "MultiPolygon"),
            "territory.coordinates[0][0]: expected a ring (an array of positions)",
            id="multipolygon-nesting",
        ),
        pytest.param(
            _document({"rings": []}), "territory.coordinates: expected an array", id="not-array"
        ),
        pytest.param(_document([]), "territory.coordinates: a polygon needs", id="no-rings"),
        pytest.param(
            _document([], "MultiPolygon"), "territory.coordinates: a MultiPolygon needs", id="none"
        ),
        pytest.param(
            _document([[[0, 0], [1, 1], [3, 3], [0, 0]]]),
            "territory.coordinates[0]: ring has zero area",
            id="zero-area",
        ),
        pytest.param(
            _document([SQUARE, [[2, 2], [2, 2], [2, 2], [2, 2]]]),
            "territory.coordinates[1]: ring has zero area",
            id="repeated-position",
        ),
        pytest.param(
            _document([[[170, 0], [-170, 0], [-170, 10], [170, 10], [170, 0]]]),
            "territory.coordinates[0][0]: the edge to the next position spans 340 degrees",
            id="unsplit-antimeridian",
        ),
        pytest.param(
            _document([circle(MAX_RING_VERTICES + 1)]),
            f"territory.coordinates[0]: ring has {MAX_RING_VERTICES + 1} positions, more than",
            id="ring-too-long",
        ),
        pytest.param(
            _document(
                [[circle(MAX_RING_VERTICES, lon0=4.0 * i)] for i in range(2)], "MultiPolygon"
            ),
            "territory.coordinates[1][0]: this ring brings the territory to "
            f"{2 * MAX_RING_VERTICES} positions, more than {MAX_TOTAL_VERTICES}",
            id="too-many-vertices",
        ),
        pytest.param(
            _document([[SQUARE]] * (MAX_POLYGONS + 1), "MultiPolygon"),
            f"territory.coordinates: {MAX_POLYGONS + 1} polygons, more than {MAX_POLYGONS}",
            id="too-many-polygons",
        ),
    ],
)
def test_invalid_geojson_names_the_problem(document: object, message: str) -> None:
    with pytest.raises(TerritoryError) as caught:
        Territory.from_geojson(document)
    assert str(caught.value).startswith(message)


def test_haversine_of_floats_matches_the_array_path() -> None:
    single = haversine_km(31.23, 121.47, 39.90, 116.40)
    [array] = haversine_km(np.array([31.23]), np.array([121.47]), 39.90, 116.40)
    assert isinstance(single, float)
    assert single == pytest.approx(float(array), rel=1e-12)
