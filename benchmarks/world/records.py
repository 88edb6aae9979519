"""The world's records: set-up steps, consumers, planned scans and their labels."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from benchmarks.world.geometry import Territory
from benchmarks.world.params import WorldParams
from codes import crockford

RESOLVER = "https://id.scanward.example"


class Label(StrEnum):
    HONEST = "honest"
    DIVERTED = "diverted"
    CLONED = "cloned"
    GUESSING = "guessing"
    FARM = "farm"
    HARVESTED = "harvested"
    ADDRESS_FARM = "address_farm"
    OVERSCANNED = "overscanned"


class Trait(StrEnum):
    """What makes an honest scan harder to tell from fraud; a scan may have several."""

    BORDER = "border"  # the person lives 0.5-3 km inside the territory's border
    SHARED_PHONE = "shared_phone"  # a household phone, 2-3 member ids on one device
    NAT = "nat"  # the person shares a public IP with others behind a router
    REPEAT = "repeat_scanner"  # the person scans each code 3-8 times
    FRIENDS = "friends"  # one bottle scanned by 2-5 phones at one table within minutes
    TRAVELLER = "traveller"  # goods bought at home, scanned on a trip in another territory


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
    traits: frozenset[Trait] = frozenset()


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
    traits: frozenset[Trait] = frozenset()  # honest scans only

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
