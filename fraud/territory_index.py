"""Which territory a point lies in, among thousands: a lat/lon grid over their polygons."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from fraud.geo import (
    FloatArray,
    IntArray,
    concatenated_ranges,
    normalise_points,
    ray_crossings,
    run_starts,
)
from fraud.territory import Territory


class TerritoryIndex:
    """Which territory a point lies in, fast with thousands of territories: a grid of cell_deg
    cells, each listing the territories whose bbox overlaps it; candidates tested with the
    vectorised crossing test.

    The grid registers each *polygon*'s bbox rather than the territory's, so that a territory
    split at the antimeridian only occupies cells at both edges of the map. A point's candidates
    are the polygons of its cell whose bbox holds it; the point is then tested against all the
    edges of each candidate territory (even-odd over all its rings, exactly as `contains`).
    """

    def __init__(self, territories: Mapping[str, Territory], cell_deg: float = 1.0) -> None:
        if not (math.isfinite(cell_deg) and 0 < cell_deg <= 180):
            raise ValueError(f"cell_deg must be in (0, 180], got {cell_deg}")
        self._cell_deg = cell_deg
        self._n_lat = math.ceil(180 / cell_deg)
        self._n_lon = math.ceil(360 / cell_deg)
        ids = sorted(territories)
        # Indexed by territory rank (position in ids, so the smallest id wins by rank) ...
        self._ids = np.array([*ids, None], dtype=object)  # [-1] is None: "no territory"
        counts = np.array([len(territories[i].edges) for i in ids], dtype=np.intp)
        self._edge_count = counts
        self._edge_start = np.cumsum(counts) - counts
        self._columns: FloatArray = (
            np.concatenate([territories[i].edge_columns for i in ids], axis=1)
            if ids
            else np.zeros((0, 0))
        )
        # ... and by polygon, numbered in territory rank order.
        bboxes = [territories[i].polygon_bboxes() for i in ids]
        self._polygon_territory = np.repeat(
            np.arange(len(ids), dtype=np.intp), [len(b) for b in bboxes]
        )
        self._polygon_bbox: FloatArray = np.concatenate(bboxes) if bboxes else np.zeros((0, 4))
        self._cell_start, self._cell_polygons = self._grid()

    def __len__(self) -> int:
        return len(self._edge_count)

    def locate(self, lats: npt.ArrayLike, lons: npt.ArrayLike) -> list[str | None]:
        """For each point the id of the territory containing it (if several overlap, the smallest
        id), None outside all and for NaN coordinates. Vectorised over the batch: build (point,
        candidate territory) pairs, then one crossing pass over all their edges."""
        lat, lon = normalise_points(lats, lons)
        found = np.full(len(lat), -1, dtype=np.intp)
        points = np.flatnonzero(~np.isnan(lat))
        cells = self._cells(lat[points], lon[points])

        # (point, polygon) candidates, sorted by point then polygon, kept when in the polygon's bbox
        starts = self._cell_start[cells]
        counts = self._cell_start[cells + 1] - starts
        point = np.repeat(points, counts)
        polygon = self._cell_polygons[concatenated_ranges(starts, counts)]
        bbox = self._polygon_bbox[polygon]
        plat, plon = lat[point], lon[point]
        keep = (bbox[:, 0] <= plon) & (plon <= bbox[:, 2]) & (bbox[:, 1] <= plat)
        keep &= plat <= bbox[:, 3]
        point, territory = point[keep], self._polygon_territory[polygon[keep]]

        # One pair per (point, territory): two polygons of a territory may both be candidates.
        distinct = run_starts(point) | run_starts(territory)
        point, territory = point[distinct], territory[distinct]
        if len(point):
            counts = self._edge_count[territory]
            columns = self._columns[:, concatenated_ranges(self._edge_start[territory], counts)]
            crossings = ray_crossings(
                np.repeat(lat[point], counts), np.repeat(lon[point], counts), columns
            )
            inside = np.logical_xor.reduceat(crossings, np.cumsum(counts) - counts)
            # Pairs run in territory rank order within a point: its first hit is the smallest id.
            point, territory = point[inside], territory[inside]
            first = run_starts(point)
            found[point[first]] = territory[first]
        located: list[str | None] = self._ids[found].tolist()
        return located

    def _cells(self, lat: FloatArray, lon: FloatArray) -> IntArray:
        """Grid cell of each (finite) point; the last row and column take lat 90 and lon 180."""
        row = np.minimum(((lat + 90) / self._cell_deg).astype(np.intp), self._n_lat - 1)
        col = np.minimum(((lon + 180) / self._cell_deg).astype(np.intp), self._n_lon - 1)
        cells: IntArray = row * self._n_lon + col
        return cells

    def _grid(self) -> tuple[IntArray, IntArray]:
        """Cell start offsets (n_cells + 1) into the polygons of each cell, in polygon order.

        A polygon is listed in every cell its bbox touches, computed with `_cells` so that a point
        in the bbox always finds it.
        """
        low = self._cells(self._polygon_bbox[:, 1], self._polygon_bbox[:, 0])
        high = self._cells(self._polygon_bbox[:, 3], self._polygon_bbox[:, 2])
        cells: list[IntArray] = []
        for lo, hi in zip(low.tolist(), high.tolist(), strict=True):
            rows = np.arange(lo // self._n_lon, hi // self._n_lon + 1)
            cols = np.arange(lo % self._n_lon, hi % self._n_lon + 1)
            cells.append((rows[:, None] * self._n_lon + cols).ravel())
        polygons = np.repeat(np.arange(len(cells), dtype=np.intp), [len(c) for c in cells])
        flat = np.concatenate(cells) if cells else np.zeros(0, dtype=np.intp)
        order = np.argsort(flat, kind="stable")  # stable: polygon order within a cell
        per_cell = np.bincount(flat, minlength=self._n_lat * self._n_lon)
        cell_start = np.zeros(len(per_cell) + 1, dtype=np.intp)
        np.cumsum(per_cell, out=cell_start[1:])
        return cell_start, polygons[order]
