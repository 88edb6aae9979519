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

Honest people are labelled ``Label.HONEST``; what makes some of them look like fraud is in
their scans' ``traits`` (``Trait``, shares in ``WorldParams``): homes near a territory border,
household phones shared by 2-3 member ids, routers sharing one IP, repeat scanners, friends
scanning one bottle on 2-5 phones at a table, and travellers scanning goods bought at home in
another territory. A phone scans at most ``MAX_CODES_PER_PHONE`` distinct codes in the day, sends
only valid codes, and honest scans lie inside the territory the code was shipped to (travellers
apart, whom ``out_of_territory`` is right to flag). So any other fraud flag on an honest scan is a
false positive of the rules.
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
- harvested: codes of the never-shipped batch, scanned by consumers at home;
- address_farm: one address sending valid codes, each with a fresh device and member id, or
  with no device (nor location): the ids it sends cannot give it away, its address can;
- overscanned: one code scanned about 2,000 times with no device and no location, from a fresh
  address each time: only the code's own count gives it away.
"""

from __future__ import annotations

from benchmarks.world.build import build_world
from benchmarks.world.builder import IP_NETWORK, MAX_CODES_PER_PHONE
from benchmarks.world.fraud_plan import CLONE_MIN_KM, DIVERTED_MIN_KM
from benchmarks.world.geometry import (
    REGION,
    Floats,
    Territory,
    haversine_km,
    ring_contains,
    ring_distance_km,
)
from benchmarks.world.params import WorldParams
from benchmarks.world.records import (
    Aggregation,
    BatchPlan,
    CodeForm,
    CodeRef,
    CodeShipment,
    Consumer,
    Distributor,
    Forged,
    Label,
    Location,
    PlannedScan,
    RangeShipment,
    SetupStep,
    Trait,
    World,
    forge,
)
from benchmarks.world.supply import MAX_CODES_PER_SHIPMENT

__all__ = [
    "CLONE_MIN_KM",
    "DIVERTED_MIN_KM",
    "IP_NETWORK",
    "MAX_CODES_PER_PHONE",
    "MAX_CODES_PER_SHIPMENT",
    "REGION",
    "Aggregation",
    "BatchPlan",
    "CodeForm",
    "CodeRef",
    "CodeShipment",
    "Consumer",
    "Distributor",
    "Floats",
    "Forged",
    "Label",
    "Location",
    "PlannedScan",
    "RangeShipment",
    "SetupStep",
    "Territory",
    "Trait",
    "World",
    "WorldParams",
    "build_world",
    "forge",
    "haversine_km",
    "ring_contains",
    "ring_distance_km",
]
