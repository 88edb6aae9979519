"""Batches, case aggregations and shipments covering what the scans will need."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from benchmarks.world.builder import Builder
from benchmarks.world.fraud_plan import AddressFarm, Clone, Diversion, Farm
from benchmarks.world.params import WorldParams
from benchmarks.world.records import Aggregation, BatchPlan, CodeRef, CodeShipment, RangeShipment
from codes.digital_link import gtin_check_digit

MAX_CODES_PER_SHIPMENT = 10_000
SUPPLY_SLACK = 1.25  # codes shipped per code scanned

BOTTLES, CASES, CANS, UNSHIPPED = "bottles", "cases", "cans", "cans-unshipped"


def _gtin(body: str) -> str:
    return body + str(gtin_check_digit(body))


def add_supply(
    b: Builder,
    clones: list[Clone],
    farms: list[Farm],
    diversions: list[Diversion],
    address_farms: list[AddressFarm],
) -> None:
    """Distributors, batches, aggregations and shipments covering what the scans will need."""
    need: dict[str, int] = defaultdict(int)
    for consumer, codes in zip(b.consumers, b.honest_codes, strict=True):
        need[consumer.distributor_id] += codes
    for clone in clones:
        need[clone.owner.distributor_id] += 1
    for farm in farms:
        need[farm.distributor_id] += farm.codes
    for address_farm in address_farms:
        need[address_farm.distributor_id] += b.params.address_farm_codes
    for number in range(b.params.overscanned_codes):  # the overscanned codes' territories
        need[b.distributors[number % len(b.distributors)].distributor_id] += 1
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
    b: Builder, distributor_id: str, cases: range, diversions: list[int], cans: range
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
