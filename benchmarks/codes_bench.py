"""Codes generated and verified per second, with the HMAC alone as the same-run ceiling.

Prints one JSON document.  Goals (issue 2, this 2-core machine): >= 1,000,000 codes/s generated
with all cores, >= 400,000 verifications/s per core.  Every rate comes with its ratio to
``hmac_ceiling_per_s``: the rate of the two SHA-256 compressions each code needs and nothing else,
measured in the same run, so figures compare across machines that drift.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import orjson

from codes.batch_index import BatchIndex
from codes.batches import Batch, BatchOrder
from codes.crockford import CODE_LENGTH
from codes.keyring import Keyring
from codes.verify import Verifier

CHUNK = 8192
_KEYRING = Keyring.new()


def _batch(quantity: int) -> Batch:
    order = BatchOrder.create("BENCH", "4006381333931", quantity, max_quantity=quantity)
    return order.reserved("BBENCH", 0, 0, 1)


def _best_rate(count: int, work: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return count / best


def hmac_ceiling(count: int) -> float:
    signer = _KEYRING.signer(0, "BBENCH")
    inner, outer = signer._inner, signer._outer  # the HMAC states, on purpose: this is the floor
    message = bytes(6)

    def work() -> None:
        for _ in range(count):
            first = inner.copy()
            first.update(message)
            second = outer.copy()
            second.update(first.digest())
            second.digest()

    return _best_rate(count, work)


def _generate(first_serial: int, count: int) -> int:
    """Generate ``count`` codes in printer-sized chunks; returns the bytes produced."""
    batch = _batch(first_serial + count)
    signer = _KEYRING.signer(batch.key_id, batch.batch_id)
    produced = 0
    for start in range(first_serial, first_serial + count, CHUNK):
        produced += len(signer.sign_range(start, min(CHUNK, first_serial + count - start)))
    return produced


def generate_one_core(count: int) -> float:
    return _best_rate(count, lambda: _generate(1, count))


def generate_all_cores(count: int, workers: int) -> float:
    share = count // workers
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_generate, [1], [CHUNK]))  # start the workers before timing

        def work() -> None:
            produced = sum(
                pool.map(_generate, [1 + i * share for i in range(workers)], [share] * workers)
            )
            assert produced == share * workers * CODE_LENGTH

        return _best_rate(share * workers, work)


def _verify(count: int) -> float:
    batch = _batch(count)
    verifier = Verifier(_KEYRING, BatchIndex([batch]))
    text = verifier.signer(batch).sign_range(batch.first_serial, count).decode()
    codes = [text[i : i + CODE_LENGTH] for i in range(0, len(text), CODE_LENGTH)]
    verify = verifier.verify

    def work() -> None:
        for code in codes:
            verify(code)

    return _best_rate(count, work)


def verify_all_cores(count: int, workers: int) -> float:
    """Sum of the rates of ``workers`` processes verifying at the same time."""
    with ProcessPoolExecutor(workers) as pool:
        return sum(pool.map(_verify, [count] * workers))


def measure(codes: int, verifications: int) -> dict[str, Any]:
    """Every rate of this benchmark: ``codes`` per generation run, ``verifications`` per
    verification run."""
    workers = os.cpu_count() or 1
    ceiling = hmac_ceiling(verifications)
    one_core = generate_one_core(codes)
    all_cores = generate_all_cores(codes, workers)
    verify_one = _verify(verifications)
    verify_all = verify_all_cores(verifications, workers)
    return {
        "benchmark": "codes",
        "cores": workers,
        "hmac_ceiling_per_s": round(ceiling),
        "generated_per_s_one_core": round(one_core),
        "generated_per_s_all_cores": round(all_cores),
        "verified_per_s_one_core": round(verify_one),
        "verified_per_s_all_cores": round(verify_all),
        "ratio_to_hmac_ceiling": {
            "generate_one_core": round(one_core / ceiling, 3),
            "verify_one_core": round(verify_one / ceiling, 3),
        },
        "goals": {
            "generated_per_s_all_cores": {"goal": 1_000_000, "met": all_cores >= 1_000_000},
            "verified_per_s_one_core": {"goal": 400_000, "met": verify_one >= 400_000},
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--codes", type=int, default=1_000_000, help="codes per generation run")
    parser.add_argument("--verify", type=int, default=200_000, help="codes per verification run")
    args = parser.parse_args(argv)
    report = measure(args.codes, args.verify)
    sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()
