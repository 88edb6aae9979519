"""A synthetic world with ground truth for the fraud rules (issue 4): pure, no I/O.

``build_world(seed, params)`` is deterministic from ``numpy.random.default_rng(seed)`` and holds:

- distributors whose territories tile the region lon 100-122, lat 22-40 (GeoJSON ``[lon, lat]``):
  irregular Voronoi cells; a city distributor's territory is an enclave, a hole in the cell
  around it; the first distributor is a MultiPolygon, its cell plus an exclave (another hole) in
  the cell farthest away;
- the set-up requests in order: distributors, batch orders, case aggregations, shipments of
  cases and of serial ranges; one batch is never shipped (the source of harvested codes);
- one simulated day of scans in time order, honest and fraudulent interleaved, each labelled.

Codes exist only once the batches are ordered, so set-up steps and scans name a code by batch
name and index in the batch (``CodeRef``); the evaluation resolves them after downloading.

Honest traffic stays clear of the default rule thresholds by construction: a consumer scans at
most ``MAX_CODES_PER_CONSUMER`` distinct codes with at most one member id, sends only valid
codes, and every code is scanned by one person only, at or near home inside the territory the
code was shipped to. So a fraud flag on an honest scan is a false positive of the rules.
Injected fraud, each scan labelled (``Label``) with its actor (the device, or the guesser):

- diverted: whole cases shipped to distributor A, their units scanned by consumers living at
  least ``DIVERTED_MIN_KM`` outside A's territory;
- cloned: a genuine code scanned by its owner (``clone_index`` 0), then within the hour by 3-6
  other devices in places at least ``CLONE_MIN_KM`` from each other and from the owner. They stay
  inside the territory the code was shipped to, so that only the clone rule can catch them;
- guessing: devices sending invalid codes (random, malformed, or real serials with a bad
  signature); half of them change device id on every attempt, so only their IP gives them away;
- farm: a device scanning hundreds of distinct genuine codes at one place, cycling member ids
  (the first farm keeps one member id: only its volume gives it away);
- harvested: codes of the never-shipped batch, scanned by consumers at home.
"""

from __future__ import annotations

import ipaddress
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property

import numpy as np
import numpy.typing as npt

from codes import crockford, signing
from codes.digital_link import gtin_check_digit

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

REGION = (100.0, 22.0, 122.0, 40.0)  # west, south, east, north
KM_PER_DEGREE = 6371.0088 * math.pi / 180
RESOLVER = "https://id.scanward.example"
IP_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")  # benchmarking addresses: never routed here
DAY_S = 86_400.0

MAX_CODES_PER_SHIPMENT = 10_000
MAX_HONEST_CODES = 30  # distinct codes of honest scans per consumer
MAX_CODES_PER_CONSUMER = 40  # with diverted, harvested and cloned codes: under 60 per hour
DIVERTED_MIN_KM = 100.0
CLONE_MIN_KM = 100.0
CITY_RADIUS_KM = 35.0
EXCLAVE_RADIUS_KM = 25.0
REPEAT_P = 0.15  # chance that a person scans the same code once more
NO_LOCATION_P = 0.03
MEMBER_P = 0.7
SUPPLY_SLACK = 1.25  # codes shipped per code scanned
_SIGMA_PER_ACCURACY = 1 / math.sqrt(-2 * math.log(0.32))  # accuracy_m is the 68 % radius


class Label(StrEnum):
    HONEST = "honest"
    DIVERTED = "diverted"
    CLONED = "cloned"
    GUESSING = "guessing"
    FARM = "farm"
    HARVESTED = "harvested"


class CodeForm(StrEnum):
    """How the consumer sends the code: the QR's Digital Link URL, or typed from under the cap."""

    URL = "url"
    BARE = "bare"
    TYPED = "typed"  # lower case in hyphenated groups of four

    def render(self, code: str, gtin: str) -> str:
        if self is CodeForm.URL:
            return f"{RESOLVER}/01/{gtin}/21/{code}"
        if self is CodeForm.TYPED:
            return "-".join(code[i : i + 4] for i in range(0, len(code), 4)).lower()
        return code


# --- geometry ---------------------------------------------------------------------------------

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

    def outside_km(self, lon: Floats, lat: Floats) -> Floats:
        """How far each point lies outside the territory: 0 inside, else to the nearest edge."""
        rings = [ring for polygon in self._arrays for ring in polygon]
        nearest = np.min([ring_distance_km(ring, lon, lat) for ring in rings], axis=0)
        distance: Floats = np.where(self.contains(lon, lat), 0.0, nearest)
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


def _territories(rng: np.random.Generator, count: int) -> list[Territory]:
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


def _uniform_inside(
    rng: np.random.Generator, territory: Territory, count: int
) -> tuple[Floats, Floats]:
    west, south, east, north = territory.bounds
    lons: list[Floats] = []
    lats: list[Floats] = []
    found = 0
    while found < count:
        lon = rng.uniform(west, east, size=4 * count + 16)
        lat = rng.uniform(south, north, size=lon.size)
        inside = territory.contains(lon, lat)
        lons.append(lon[inside])
        lats.append(lat[inside])
        found += int(inside.sum())
    return np.concatenate(lons)[:count], np.concatenate(lats)[:count]


def _scatter(
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


# --- the world's records ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CodeRef:
    """A code by its batch and index in the batch; known once the batch is ordered."""

    batch: str
    index: int


@dataclass(frozen=True, slots=True)
class Forged:
    """A real code (key id and serial) with its tag XORed with ``mask``: a bad signature."""

    batch: str
    index: int
    mask: int


def forge(code: str, mask: int) -> str:
    value = crockford.decode(code)
    if value is None:
        raise ValueError(f"not a code: {code!r}")
    return crockford.encode(value ^ mask)


@dataclass(frozen=True, slots=True)
class Distributor:
    distributor_id: str
    name: str
    territory: Territory

    def body(self) -> dict[str, object]:
        return {"name": self.name, "territory": self.territory.geojson()}


@dataclass(frozen=True, slots=True)
class BatchPlan:
    name: str
    sku: str
    gtin: str
    quantity: int
    kind: str
    line_id: str

    def body(self) -> dict[str, object]:
        return {
            "sku": self.sku,
            "gtin": self.gtin,
            "quantity": self.quantity,
            "kind": self.kind,
            "line_id": self.line_id,
        }


@dataclass(frozen=True, slots=True)
class Aggregation:
    """A case and the consecutive units packed in it."""

    case: CodeRef
    units_batch: str
    first_unit: int
    count: int

    def children(self) -> tuple[CodeRef, ...]:
        first = self.first_unit
        return tuple(CodeRef(self.units_batch, i) for i in range(first, first + self.count))


@dataclass(frozen=True, slots=True)
class CodeShipment:
    """Cases (with their aggregated units) shipped to a distributor."""

    distributor_id: str
    codes: tuple[CodeRef, ...]


@dataclass(frozen=True, slots=True)
class RangeShipment:
    """Units ``first``..``last`` (indices in the batch, inclusive) shipped to a distributor."""

    distributor_id: str
    batch: str
    first: int
    last: int


SetupStep = Distributor | BatchPlan | Aggregation | CodeShipment | RangeShipment


@dataclass(frozen=True, slots=True)
class Consumer:
    consumer_id: str
    distributor_id: str
    lon: float
    lat: float
    device_id: str
    member_id: str | None
    ip: str


@dataclass(frozen=True, slots=True)
class Location:
    """What the phone reports, and the true point before GPS noise (ground truth)."""

    lat: float
    lon: float
    accuracy_m: float
    true_lat: float
    true_lon: float


@dataclass(frozen=True, slots=True)
class PlannedScan:
    t_s: float  # simulated seconds since the day began (a repeat may be after midnight)
    label: Label
    actor: str  # the device, or the guesser when it changes device ids
    ip: str  # sent as X-Forwarded-For
    code: CodeRef | Forged | str  # a str is sent as it is
    form: CodeForm
    device_id: str | None
    member_id: str | None
    location: Location | None
    clone_index: int | None = None  # cloned: 0 for the owner's genuine scan, then 1, 2, ...

    def body(self, code: str, scan_id: str, id_prefix: str = "") -> dict[str, object]:
        """The JSON of ``POST /v1/scans``; ``id_prefix`` keeps ids of separate runs apart."""
        body: dict[str, object] = {"code": code, "scan_id": id_prefix + scan_id}
        if self.location is not None:
            body["lat"] = self.location.lat
            body["lon"] = self.location.lon
            body["accuracy_m"] = self.location.accuracy_m
        if self.device_id is not None:
            body["device_id"] = id_prefix + self.device_id
        if self.member_id is not None:
            body["member_id"] = id_prefix + self.member_id
        return body


@dataclass(frozen=True, slots=True)
class WorldParams:
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

    def __post_init__(self) -> None:
        if not 4 <= self.distributors <= 40:
            raise ValueError("distributors must be between 4 and 40")
        if not 1 <= self.consumers <= 200_000 or not 0 <= self.honest_scans <= 2_000_000:
            raise ValueError("consumers must be 1-200,000 and honest_scans 0-2,000,000")
        if not 2 <= self.units_per_case <= 100 or not 0.0 <= self.cased_share <= 1.0:
            raise ValueError("units_per_case must be 2-100 and cased_share 0-1")
        counts = (self.diverted_cases, self.clones, self.guessers, self.farms)
        if min(counts) < 0 or not 0 <= self.harvested_scans <= 100_000 or max(counts) > 10_000:
            raise ValueError("fraud counts must be between 0 and 10,000")

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
        )


@dataclass(frozen=True)
class World:
    seed: int
    params: WorldParams
    setup: tuple[SetupStep, ...]
    consumers: tuple[Consumer, ...]
    scans: tuple[PlannedScan, ...]

    @property
    def distributors(self) -> tuple[Distributor, ...]:
        return tuple(step for step in self.setup if isinstance(step, Distributor))

    @property
    def batches(self) -> tuple[BatchPlan, ...]:
        return tuple(step for step in self.setup if isinstance(step, BatchPlan))


# --- building ---------------------------------------------------------------------------------

BOTTLES, CASES, CANS, UNSHIPPED = "bottles", "cases", "cans", "cans-unshipped"


def _gtin(body: str) -> str:
    return body + str(gtin_check_digit(body))


@dataclass
class _Draft:
    """A scan before its true point and GPS fix are drawn."""

    t_s: float
    label: Label
    actor: str
    ip: str
    code: CodeRef | Forged | str
    form: CodeForm
    device_id: str | None
    member_id: str | None
    origin: tuple[float, float] | None  # (lon, lat) the true point is drawn around; None: none
    within: str | None  # the distributor whose territory holds the true point
    spread_km: float
    clone_index: int | None = None


@dataclass(frozen=True, slots=True)
class _Clone:
    owner: Consumer
    points: Floats  # (k, 2) lon, lat of the clone scans, far from each other and the owner


@dataclass(frozen=True, slots=True)
class _Diversion:
    shipped_to: str
    consumers: list[Consumer]


@dataclass(frozen=True, slots=True)
class _Farm:
    distributor_id: str
    lon: float
    lat: float
    codes: int
    members: int


@dataclass
class _Builder:
    rng: np.random.Generator
    params: WorldParams
    distributors: list[Distributor]
    addresses: Iterator[int]  # offsets into IP_NETWORK, each used once
    consumers: list[Consumer] = field(default_factory=list)
    honest_codes: list[int] = field(default_factory=list)  # per consumer
    load: dict[str, int] = field(default_factory=dict)  # distinct codes per consumer
    towns: dict[str, Floats] = field(default_factory=dict)
    pools: dict[str, list[CodeRef]] = field(default_factory=dict)  # shipped, not yet scanned
    diverted_units: list[list[CodeRef]] = field(default_factory=list)
    setup: list[SetupStep] = field(default_factory=list)
    drafts: list[_Draft] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @cached_property
    def territory(self) -> dict[str, Territory]:
        return {d.distributor_id: d.territory for d in self.distributors}

    @property
    def city(self) -> Distributor:
        return self.distributors[-1]

    def new_id(self, prefix: str) -> str:
        self.counters[prefix] += 1
        return f"{prefix}-{self.counters[prefix]:05d}"

    def new_ip(self) -> str:
        return str(IP_NETWORK.network_address + next(self.addresses))

    def take(self, distributor_id: str, count: int) -> list[CodeRef]:
        pool = self.pools[distributor_id]
        if len(pool) < count:
            raise RuntimeError(f"the supply of {distributor_id} ran out")  # a bug, not input
        taken = pool[len(pool) - count :]
        del pool[len(pool) - count :]
        return taken

    def quantity(self, batch: str) -> int:
        return next(s.quantity for s in self.setup if isinstance(s, BatchPlan) and s.name == batch)

    def form(self) -> CodeForm:
        """Most people scan the QR code; some type the code printed under it."""
        draw = self.rng.random()
        return CodeForm.URL if draw < 0.85 else CodeForm.BARE if draw < 0.95 else CodeForm.TYPED


def build_world(seed: int, params: WorldParams | None = None) -> World:
    params = params or WorldParams()
    rng = np.random.default_rng(seed)
    distributors = [
        Distributor(f"s{seed}-d{i + 1:02d}", f"Distributor {i + 1:02d}", territory)
        for i, territory in enumerate(_territories(rng, params.distributors))
    ]
    addresses = iter(rng.permutation(IP_NETWORK.num_addresses).tolist())
    builder = _Builder(rng, params, distributors, addresses)
    _add_consumers(builder)
    clones = _plan_clones(builder)
    farms = _plan_farms(builder)
    diversions = _plan_diversions(builder)
    _add_supply(builder, clones, farms, diversions)
    _honest_scans(builder)
    _clone_scans(builder, clones)
    _farm_scans(builder, farms)
    _diverted_scans(builder, diversions)
    _harvested_scans(builder)
    _guesser_scans(builder)
    scans = _locate(builder)
    return World(seed, params, tuple(builder.setup), tuple(builder.consumers), scans)


# --- consumers and the fraud to come -----------------------------------------------------------


def _add_consumers(b: _Builder) -> None:
    """Consumers at home around towns, more where territories are larger; the city is dense."""
    rng, params = b.rng, b.params
    for d in b.distributors[:-1]:
        count = int(rng.integers(2, 6))
        b.towns[d.distributor_id] = np.column_stack(_uniform_inside(rng, d.territory, count))
    city_ring = np.array(b.city.territory.polygons[0][0][:-1])
    b.towns[b.city.distributor_id] = city_ring.mean(axis=0)[None, :]
    areas = np.array([d.territory.area_km2() for d in b.distributors[:-1]])
    weights = np.append(areas, 1.5 * areas.mean())
    homes = rng.choice(len(b.distributors), size=params.consumers, p=weights / weights.sum())
    activity = rng.lognormal(0.0, 0.8, size=params.consumers)
    codes_wanted = params.honest_scans * (1 - REPEAT_P)  # a code gets 1 / (1 - p) scans
    codes = np.clip(np.round(activity / activity.sum() * codes_wanted), 1, MAX_HONEST_CODES)
    for index, distributor in enumerate(b.distributors):
        mine = np.flatnonzero(homes == index)
        towns = b.towns[distributor.distributor_id]
        centres = towns[rng.integers(len(towns), size=mine.size)]
        spread = np.full(mine.size, 8.0 if distributor is b.city else 15.0)
        lon, lat = _scatter(rng, distributor.territory, centres[:, 0], centres[:, 1], spread)
        for consumer, x, y in zip(mine, lon, lat, strict=True):
            member = b.new_id("mem") if rng.random() < MEMBER_P else None
            b.consumers.append(
                Consumer(
                    b.new_id("consumer"),
                    distributor.distributor_id,
                    float(x),
                    float(y),
                    b.new_id("dev"),
                    member,
                    b.new_ip(),
                )
            )
            b.honest_codes.append(int(codes[consumer]))
            b.load[b.consumers[-1].consumer_id] = int(codes[consumer])


def _has_room(b: _Builder, consumer: Consumer, codes: int) -> bool:
    return b.load[consumer.consumer_id] + codes <= MAX_CODES_PER_CONSUMER


def _plan_clones(b: _Builder) -> list[_Clone]:
    """Owners (not in the small city) with room for 2-6 clone scans far apart in their territory."""
    clones: list[_Clone] = []
    for index in b.rng.permutation(len(b.consumers)):
        if len(clones) == b.params.clones:
            break
        owner = b.consumers[int(index)]
        if owner.distributor_id == b.city.distributor_id or not _has_room(b, owner, 1):
            continue
        points = _far_points(b, owner, int(b.rng.integers(3, 7)))
        if len(points) >= 2:
            clones.append(_Clone(owner, points))
            b.load[owner.consumer_id] += 1
    return clones


def _far_points(b: _Builder, owner: Consumer, count: int) -> Floats:
    """Up to ``count`` points of the owner's territory, far from each other and from home."""
    lon, lat = _uniform_inside(b.rng, b.territory[owner.distributor_id], 200)
    chosen = [(owner.lon, owner.lat)]
    for x, y in zip(lon, lat, strict=True):
        others = np.array(chosen)
        gaps = haversine_km(others[:, 0], others[:, 1], np.array(x), np.array(y))
        if gaps.min() >= CLONE_MIN_KM + 10:  # + 10 km: room for the scatter around each point
            chosen.append((float(x), float(y)))
            if len(chosen) > count:
                break
    return np.array(chosen[1:]).reshape(-1, 2)


def _plan_farms(b: _Builder) -> list[_Farm]:
    farms = []
    for number in range(b.params.farms):
        distributor = b.distributors[int(b.rng.integers(len(b.distributors)))]
        towns = b.towns[distributor.distributor_id]
        lon, lat = towns[int(b.rng.integers(len(towns)))]
        members = 1 if number == 0 else int(b.rng.integers(8, 31))
        codes = int(b.rng.integers(150, 401))
        farms.append(_Farm(distributor.distributor_id, float(lon), float(lat), codes, members))
    return farms


def _plan_diversions(b: _Builder) -> list[_Diversion]:
    """For each diverted case: where it is shipped, and 1-4 neighbours far away who scan it."""
    lon = np.array([c.lon for c in b.consumers])
    lat = np.array([c.lat for c in b.consumers])
    distance = {d.distributor_id: d.territory.outside_km(lon, lat) for d in b.distributors}
    upc = b.params.units_per_case
    diversions = []
    for _ in range(b.params.diverted_cases):
        shipped_to = b.distributors[int(b.rng.integers(len(b.distributors)))].distributor_id
        far = [
            b.consumers[i]
            for i in np.flatnonzero(distance[shipped_to] >= DIVERTED_MIN_KM)
            if _has_room(b, b.consumers[i], upc)
        ]
        if not far:
            raise ValueError("no consumer lives far enough from a distributor to divert to")
        region = far[int(b.rng.integers(len(far)))].distributor_id
        local = [c for c in far if c.distributor_id == region]
        size = min(len(local), int(b.rng.integers(1, 5)))
        chosen = [local[int(i)] for i in b.rng.choice(len(local), size=size, replace=False)]
        for consumer in chosen:
            b.load[consumer.consumer_id] += upc
        diversions.append(_Diversion(shipped_to, chosen))
    return diversions


# --- batches and shipments --------------------------------------------------------------------


def _add_supply(
    b: _Builder, clones: list[_Clone], farms: list[_Farm], diversions: list[_Diversion]
) -> None:
    """Distributors, batches, aggregations and shipments covering what the scans will need."""
    need: dict[str, int] = defaultdict(int)
    for consumer, codes in zip(b.consumers, b.honest_codes, strict=True):
        need[consumer.distributor_id] += codes
    for clone in clones:
        need[clone.owner.distributor_id] += 1
    for farm in farms:
        need[farm.distributor_id] += farm.codes
    upc = b.params.units_per_case
    cases: dict[str, int] = {}
    cans: dict[str, int] = {}
    for d in b.distributors:
        supply = math.ceil(need[d.distributor_id] * SUPPLY_SLACK) + 10
        cases[d.distributor_id] = max(1, math.ceil(supply * b.params.cased_share / upc))
        cans[d.distributor_id] = max(1, supply - cases[d.distributor_id] * upc)
    total_cases = sum(cases.values()) + len(diversions)
    b.setup.extend(b.distributors)
    b.setup.extend(_batches(b.params, total_cases, sum(cans.values())))
    b.setup.extend(
        Aggregation(CodeRef(CASES, case), BOTTLES, case * upc, upc) for case in range(total_cases)
    )
    diverted_to = defaultdict(list)
    for number, diversion in enumerate(diversions):
        diverted_to[diversion.shipped_to].append(number)
    b.diverted_units = [[] for _ in diversions]
    first_case = first_can = 0
    for d in b.distributors:
        mine = diverted_to[d.distributor_id]
        case_block = range(first_case, first_case + cases[d.distributor_id] + len(mine))
        can_block = range(first_can, first_can + cans[d.distributor_id])
        _ship(b, d.distributor_id, case_block, mine, can_block)
        first_case, first_can = case_block.stop, can_block.stop


def _batches(params: WorldParams, cases: int, cans: int) -> list[BatchPlan]:
    unshipped = max(100, 2 * params.harvested_scans)
    bottle, case, can = _gtin("690123400001"), _gtin("1690123400001"), _gtin("690123400002")
    return [
        BatchPlan(BOTTLES, "LAGER-500ML", bottle, cases * params.units_per_case, "unit", "L1"),
        BatchPlan(CASES, "LAGER-500ML-X12", case, cases, "case", "L1"),
        BatchPlan(CANS, "LAGER-330CAN", can, cans, "unit", "L2"),
        BatchPlan(UNSHIPPED, "LAGER-330CAN", can, unshipped, "unit", "L2"),
    ]


def _case_units(case: int, upc: int) -> list[CodeRef]:
    return [CodeRef(BOTTLES, case * upc + unit) for unit in range(upc)]


def _ship(
    b: _Builder, distributor_id: str, cases: range, diversions: list[int], cans: range
) -> None:
    """Ships cases and cans; random cases of the block go astray, the rest feed the pool."""
    upc = b.params.units_per_case
    astray = sorted(
        int(case) for case in b.rng.choice(np.array(cases), size=len(diversions), replace=False)
    )
    for number, case in zip(diversions, astray, strict=True):
        b.diverted_units[number] = _case_units(case, upc)
    per_shipment = MAX_CODES_PER_SHIPMENT // (upc + 1)  # a case ships its units too
    for start in range(cases.start, cases.stop, per_shipment):
        chunk = range(start, min(start + per_shipment, cases.stop))
        b.setup.append(CodeShipment(distributor_id, tuple(CodeRef(CASES, c) for c in chunk)))
    for start in range(cans.start, cans.stop, MAX_CODES_PER_SHIPMENT):
        last = min(start + MAX_CODES_PER_SHIPMENT, cans.stop) - 1
        b.setup.append(RangeShipment(distributor_id, CANS, start, last))
    kept = set(cases) - set(astray)
    pool = [unit for case in sorted(kept) for unit in _case_units(case, upc)]
    pool += [CodeRef(CANS, index) for index in cans]
    b.pools[distributor_id] = [pool[int(i)] for i in b.rng.permutation(len(pool))]


# --- scans ------------------------------------------------------------------------------------


def _person_scan(
    b: _Builder,
    consumer: Consumer,
    code: CodeRef,
    t_s: float,
    label: Label,
    form: CodeForm,
    *,
    located: bool | None = None,
) -> _Draft:
    """A scan by a consumer at or near home; ``located`` None: a few scans come without a fix."""
    if located is None:
        located = b.rng.random() >= NO_LOCATION_P
    return _Draft(
        t_s,
        label,
        consumer.device_id,
        consumer.ip,
        code,
        form,
        consumer.device_id,
        consumer.member_id,
        (consumer.lon, consumer.lat) if located else None,
        consumer.distributor_id,
        1.0,
    )


def _honest_scans(b: _Builder) -> None:
    """Each code once, some again later (same person, same QR), at random hours of the day."""
    for consumer, count in zip(b.consumers, b.honest_codes, strict=True):
        for code in b.take(consumer.distributor_id, count):
            first = float(b.rng.uniform(0.0, DAY_S))
            again = int(b.rng.geometric(1 - REPEAT_P)) - 1
            times = [first, *np.sort(first + b.rng.uniform(60.0, 4 * 3600.0, size=again))]
            form = b.form()
            for t_s in times:
                b.drafts.append(_person_scan(b, consumer, code, float(t_s), Label.HONEST, form))


def _clone_scans(b: _Builder, clones: list[_Clone]) -> None:
    """The owner's genuine scan, then copies of its QR scanned far away within the hour."""
    for clone in clones:
        owner = clone.owner
        [code] = b.take(owner.distributor_id, 1)
        start = float(b.rng.uniform(0.0, DAY_S - 3600.0))
        scan = _person_scan(b, owner, code, start, Label.CLONED, CodeForm.URL, located=True)
        scan.clone_index = 0
        b.drafts.append(scan)
        times = start + np.sort(b.rng.uniform(120.0, 3600.0, size=len(clone.points)))
        for number, ((lon, lat), t_s) in enumerate(zip(clone.points, times, strict=True), 1):
            device = b.new_id("dev")
            member = b.new_id("mem") if b.rng.random() < MEMBER_P else None
            b.drafts.append(
                _Draft(
                    float(t_s),
                    Label.CLONED,
                    device,
                    b.new_ip(),
                    code,
                    CodeForm.URL,
                    device,
                    member,
                    (float(lon), float(lat)),
                    owner.distributor_id,
                    0.5,
                    clone_index=number,
                )
            )


def _farm_scans(b: _Builder, farms: list[_Farm]) -> None:
    """One device at one table, a genuine code every 5-25 s, member ids in turn."""
    for farm in farms:
        device, ip = b.new_id("dev"), b.new_ip()
        members = [b.new_id("mem") for _ in range(farm.members)]
        t_s = float(b.rng.uniform(0.0, DAY_S - 3 * 3600.0))
        for number, code in enumerate(b.take(farm.distributor_id, farm.codes)):
            t_s += float(b.rng.uniform(5.0, 25.0))
            member = members[number % len(members)]
            origin = (farm.lon, farm.lat)
            b.drafts.append(
                _Draft(
                    t_s,
                    Label.FARM,
                    device,
                    ip,
                    code,
                    CodeForm.URL,
                    device,
                    member,
                    origin,
                    farm.distributor_id,
                    0.02,
                )
            )


def _diverted_scans(b: _Builder, diversions: list[_Diversion]) -> None:
    """About three quarters of the units of each diverted case, scanned at the buyers' homes."""
    for diversion, units in zip(diversions, b.diverted_units, strict=True):
        for unit in units:
            if b.rng.random() < 0.75:
                buyer = diversion.consumers[int(b.rng.integers(len(diversion.consumers)))]
                t_s = float(b.rng.uniform(0.0, DAY_S))
                scan = _person_scan(b, buyer, unit, t_s, Label.DIVERTED, b.form(), located=True)
                b.drafts.append(scan)


def _harvested_scans(b: _Builder) -> None:
    """Codes of the never-shipped batch, each scanned once by some consumer at home."""
    indices = b.rng.permutation(b.quantity(UNSHIPPED))[: b.params.harvested_scans]
    people = list(b.consumers)
    for index in indices:
        while True:
            if not people:
                raise ValueError("too many harvested scans for the consumers")
            pick = int(b.rng.integers(len(people)))
            if _has_room(b, people[pick], 1):
                break
            people.pop(pick)
        b.load[people[pick].consumer_id] += 1
        code, t_s = CodeRef(UNSHIPPED, int(index)), float(b.rng.uniform(0.0, DAY_S))
        b.drafts.append(_person_scan(b, people[pick], code, t_s, Label.HARVESTED, b.form()))


def _guesser_scans(b: _Builder) -> None:
    """Bursts of invalid codes; odd-numbered guessers change device id on every attempt."""
    west, south, east, north = REGION
    for number in range(b.params.guessers):
        rotating = number % 2 == 1
        device, ip = b.new_id("dev"), b.new_ip()
        actor = b.new_id("guesser") if rotating else device
        attempts = int(b.rng.integers(150, 351) if rotating else b.rng.integers(20, 81))
        origin = None
        if b.rng.random() < 0.5:
            origin = (float(b.rng.uniform(west, east)), float(b.rng.uniform(south, north)))
        t_s = float(b.rng.uniform(0.0, DAY_S - 3600.0))
        for _ in range(attempts):
            t_s += float(b.rng.uniform(1.0, 8.0))
            code, form = _guess(b)
            sent_device = b.new_id("dev") if rotating else device
            draft = _Draft(
                t_s, Label.GUESSING, actor, ip, code, form, sent_device, None, origin, None, 0.0
            )
            b.drafts.append(draft)


def _guess(b: _Builder) -> tuple[Forged | str, CodeForm]:
    """40 % real serials with a bad signature, 40 % random codes, 20 % malformed."""
    draw = b.rng.random()
    if draw < 0.4:
        batch = BOTTLES if b.rng.random() < 0.5 else CANS
        index = int(b.rng.integers(b.quantity(batch)))
        forged = Forged(batch, index, int(b.rng.integers(1, 1 << signing.TAG_BITS)))
        return forged, CodeForm.URL if b.rng.random() < 0.5 else CodeForm.BARE
    alphabet = crockford.ALPHABET
    if draw < 0.8:
        return "".join(alphabet[i] for i in b.rng.integers(32, size=20)), CodeForm.BARE
    length = int(b.rng.choice([12, 16, 19, 21, 24]))
    text = "".join(alphabet[i] for i in b.rng.integers(32, size=length))
    return (text if b.rng.random() < 0.5 else text[:7] + "U" + text[8:]), CodeForm.BARE


def _locate(b: _Builder) -> tuple[PlannedScan, ...]:
    """True points scattered around the drafts' origins, GPS fixes around those; time order."""
    drafts = sorted(b.drafts, key=lambda draft: draft.t_s)
    has_origin = np.array([d.origin is not None for d in drafts], dtype=np.bool_)
    origin = np.array([d.origin or (0.0, 0.0) for d in drafts], dtype=np.float64).reshape(-1, 2)
    lon, lat = origin[:, 0].copy(), origin[:, 1].copy()
    within = np.array([d.within or "" for d in drafts])
    spread = np.array([d.spread_km for d in drafts])
    for distributor in b.distributors:
        mine = np.flatnonzero(has_origin & (within == distributor.distributor_id))
        lon[mine], lat[mine] = _scatter(
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
            )
        )
    return tuple(scans)
