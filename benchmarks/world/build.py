"""build_world: one deterministic world from a seed."""

from __future__ import annotations

import numpy as np

from benchmarks.world.builder import IP_NETWORK, Builder
from benchmarks.world.fraud_plan import (
    plan_address_farms,
    plan_clones,
    plan_diversions,
    plan_farms,
)
from benchmarks.world.fraud_scans import (
    address_farm_scans,
    clone_scans,
    diverted_scans,
    farm_scans,
    guesser_scans,
    harvested_scans,
    overscanned_scans,
)
from benchmarks.world.geometry import territories
from benchmarks.world.honest import honest_scans
from benchmarks.world.locate import locate
from benchmarks.world.params import WorldParams
from benchmarks.world.people import add_consumers
from benchmarks.world.records import Distributor, World
from benchmarks.world.supply import add_supply


def build_world(seed: int, params: WorldParams | None = None) -> World:
    params = params or WorldParams()
    rng = np.random.default_rng(seed)
    distributors = [
        Distributor(f"s{seed}-d{i + 1:02d}", f"Distributor {i + 1:02d}", territory)
        for i, territory in enumerate(territories(rng, params.distributors))
    ]
    addresses = iter(rng.permutation(IP_NETWORK.num_addresses).tolist())
    builder = Builder(rng, params, distributors, addresses)
    add_consumers(builder)
    clones = plan_clones(builder)
    farms = plan_farms(builder)
    diversions = plan_diversions(builder)
    address_farms = plan_address_farms(builder)
    add_supply(builder, clones, farms, diversions, address_farms)
    honest_scans(builder)
    clone_scans(builder, clones)
    farm_scans(builder, farms)
    diverted_scans(builder, diversions)
    harvested_scans(builder)
    guesser_scans(builder)
    address_farm_scans(builder, address_farms)
    overscanned_scans(builder)
    scans = locate(builder)
    return World(seed, params, tuple(builder.setup), tuple(builder.consumers), scans)
