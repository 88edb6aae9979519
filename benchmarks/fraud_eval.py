"""The fraud rules against a synthetic world with ground truth (issue 4).

Builds ``benchmarks.world`` for ``--seed``, drives it through the HTTP API (the set-up,
then every scan in the world's order with bounded concurrency; a scan waits for the previous scan
of its code and of its actor) and prints one JSON document, also saved under
``benchmarks/results/fraud-eval-<seed>-<timestamp>.json``.

Without ``--url`` it starts its own stack (``scanward up`` on a free loopback port in a temporary
folder, with ``SCANWARD_TRUSTED_PROXIES=127.0.0.1``) and stops it by PID at the end, also on
Ctrl-C. With ``--url`` it targets a running stack on this machine, which must trust 127.0.0.1 as
a proxy (``SCANWARD_TRUSTED_PROXIES=127.0.0.1``): each simulated person's address (from
198.18.0.0/15, a string only) travels in ``X-Forwarded-For``, so that guessers' addresses do not
block honest people. All traffic goes to the loopback address.

Figures, with the server's default thresholds in mind:

- recall of each fraud type, the share of its scans that carry its flag: ``cloned`` over clone
  scans from the second on (``clone_index >= 2``), ``out_of_territory`` over diverted scans,
  ``not_shipped`` over harvested scans; farms per device (flagged ``device_farm`` at least once
  after passing 60 distinct codes or 5 member ids) and per scan after that point; guessers per
  actor (a ``guessing`` flag or a 429); address farms per address (flagged ``address_farm`` at
  least once after passing the address thresholds: 300 valid scans, 20 devices or 20 scans
  without a device) and per scan after that point; ``overscanned`` over the scans of a code
  after its 50th;
- precision of each flag: flagged scans whose label is that type / all scans with the flag;
- false positives: honest scans with any flag other than ``no_location``, or a 429, / honest scans,
  travellers excluded (their goods really are outside the territory: ``out_of_territory`` is
  right about them, and the product cannot tell them from diverted goods); travellers are counted
  apart, and the false positives are broken down by the honest scans' traits (border dwellers,
  shared phones, ...) with a few examples and the numbers the rules gave.

Goals: cloned recall >= 0.99, diverted >= 0.95, harvested >= 0.99, farm devices >= 0.95,
address farms >= 0.95, overscanned >= 0.99, honest false-positive rate <= 0.001.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import itertools
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from benchmarks.report import provenance, publish
from benchmarks.world import (
    Aggregation,
    BatchPlan,
    CodeRef,
    CodeShipment,
    Distributor,
    Forged,
    Label,
    PlannedScan,
    RangeShipment,
    SetupStep,
    Trait,
    World,
    WorldParams,
    build_world,
    forge,
)
from fraud.policy import FraudPolicy
from ingest.ops import local_services
from ingest.ops.server import wait_until_serving

FLAG_OF = {
    Label.CLONED: "cloned",
    Label.DIVERTED: "out_of_territory",
    Label.HARVESTED: "not_shipped",
    Label.FARM: "device_farm",
    Label.GUESSING: "guessing",
    Label.ADDRESS_FARM: "address_farm",
    Label.OVERSCANNED: "overscanned",
}
BENIGN_FLAGS = frozenset({"no_location"})
TRAVELLERS_EXCLUDED = (
    "honest_fp_rate excludes travellers: their goods really are outside the territory"
)
FALSE_POSITIVE_EXAMPLES = 5
DEFAULTS = FraudPolicy()  # the server's default thresholds: a farm is "over" past one of them
GOALS: dict[str, tuple[str, float]] = {
    "cloned_recall": (">=", 0.99),
    "diverted_recall": (">=", 0.95),
    "harvested_recall": (">=", 0.99),
    "farm_device_recall": (">=", 0.95),
    "address_farm_recall": (">=", 0.95),
    "overscanned_recall": (">=", 0.99),
    "honest_false_positive_rate": ("<=", 0.001),
}
Progress = Callable[[str, int, int], None]  # phase, done, total


class EvalError(Exception):
    """The stack could not be started or refused a set-up request: no figures."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    verdict: str | None
    flags: frozenset[str]
    details: tuple[Mapping[str, object], ...] = ()  # the flags with the numbers behind them


@dataclass(frozen=True, slots=True)
class Rate:
    hits: int
    total: int

    @property
    def value(self) -> float | None:
        return self.hits / self.total if self.total else None

    def to_json(self) -> dict[str, object]:
        value = self.value
        return {
            "value": None if value is None else round(value, 5),
            "hits": self.hits,
            "total": self.total,
        }


@dataclass(frozen=True)
class EvalReport:
    seed: int
    scans_by_label: dict[str, int]
    statuses: dict[str, int]
    recall: dict[str, Rate]  # per fraud type (_RECALL_KEY), farm_scans, address_farm_scans
    precision: dict[str, Rate]  # per fraud type, of its flag
    honest_false_positives: Rate  # travellers excluded
    honest_flags: dict[str, int]  # travellers excluded
    honest_by_trait: dict[str, Rate]  # false positives among the scans with each trait
    false_positive_examples: list[dict[str, object]]
    travellers: Rate  # flagged out_of_territory / traveller scans
    traveller_flags: dict[str, int]
    flags_by_label: dict[str, dict[str, int]]
    statuses_by_label: dict[str, dict[str, int]]
    setup_s: float
    scans_s: float

    def goal_values(self) -> dict[str, float | None]:
        return {
            "cloned_recall": self.recall["cloned"].value,
            "diverted_recall": self.recall["diverted"].value,
            "harvested_recall": self.recall["harvested"].value,
            "farm_device_recall": self.recall["farm_devices"].value,
            "address_farm_recall": self.recall["address_farms"].value,
            "overscanned_recall": self.recall["overscanned"].value,
            "honest_false_positive_rate": self.honest_false_positives.value,
        }

    def goals(self) -> dict[str, dict[str, object]]:
        """Each goal with its value and whether it is met (None: nothing to measure)."""
        result: dict[str, dict[str, object]] = {}
        for name, value in self.goal_values().items():
            direction, bound = GOALS[name]
            met = None if value is None else value >= bound if direction == ">=" else value <= bound
            result[name] = {"value": value, "goal": f"{direction} {bound}", "met": met}
        return result

    def fraud_json(self, label: Label) -> dict[str, object]:
        """Recall and precision of one fraud type (recall per actor for farms and guessers)."""
        counted = {Label.FARM: "devices", Label.GUESSING: "actors", Label.ADDRESS_FARM: "addresses"}
        figures: dict[str, object] = {
            "flag": FLAG_OF[label],
            "recall": self.recall[_RECALL_KEY[label]].to_json(),
            "recall_counts": counted.get(label, "scans"),
            "precision": self.precision[label.value].to_json(),
        }
        if label is Label.FARM:
            figures["recall_scans_after_threshold"] = self.recall["farm_scans"].to_json()
        if label is Label.ADDRESS_FARM:
            figures["recall_scans_after_threshold"] = self.recall["address_farm_scans"].to_json()
        return figures

    def to_json(self) -> dict[str, object]:
        total = sum(self.scans_by_label.values())
        goals = self.goals()
        return {
            "benchmark": "fraud_eval",
            "seed": self.seed,
            "scans": {
                "total": total,
                "by_label": self.scans_by_label,
                "http": self.statuses,
                "http_by_label": self.statuses_by_label,
            },
            "duration_s": {"setup": round(self.setup_s, 2), "scans": round(self.scans_s, 2)},
            "scans_per_s": round(total / self.scans_s) if self.scans_s else None,
            "honest": {
                "false_positive_rate": self.honest_false_positives.to_json(),
                "note": TRAVELLERS_EXCLUDED,
                "flags": self.honest_flags,
                "false_positives_by_trait": {
                    trait: rate.to_json() for trait, rate in self.honest_by_trait.items()
                },
                "false_positive_examples": self.false_positive_examples,
            },
            "travellers": {
                "scans": self.travellers.total,
                "flagged_out_of_territory": self.travellers.hits,
                "flags": self.traveller_flags,
            },
            "fraud": {label.value: self.fraud_json(label) for label in FLAG_OF},
            "flags_by_label": self.flags_by_label,
            "goals": goals,
            "goals_met": all(goal["met"] is not False for goal in goals.values()),
        }


_RECALL_KEY = {
    Label.CLONED: "cloned",
    Label.DIVERTED: "diverted",
    Label.HARVESTED: "harvested",
    Label.FARM: "farm_devices",
    Label.GUESSING: "guessers",
    Label.ADDRESS_FARM: "address_farms",
    Label.OVERSCANNED: "overscanned",
}


# --- scoring (pure) ---------------------------------------------------------------------------


def farm_over_threshold(scans: Iterable[PlannedScan]) -> list[bool]:
    """Per scan: a farm scan made after its device passed the default farm thresholds."""
    codes: dict[str, set[object]] = defaultdict(set)
    members: dict[str, set[str]] = defaultdict(set)
    over = []
    for scan in scans:
        codes[scan.actor].add(scan.code)
        if scan.member_id is not None:
            members[scan.actor].add(scan.member_id)
        passed = len(codes[scan.actor]) > DEFAULTS.farm_codes_per_hour
        passed = passed or len(members[scan.actor]) > DEFAULTS.farm_members_per_day
        over.append(scan.label is Label.FARM and passed)
    return over


def address_over_threshold(scans: Iterable[PlannedScan]) -> list[bool]:
    """Per scan: an address farm's scan made after its address passed a default threshold
    (valid scans, devices with a valid scan, valid scans without a device)."""
    valid: Counter[str] = Counter()
    without_device: Counter[str] = Counter()
    devices: dict[str, set[str]] = defaultdict(set)
    over = []
    for scan in scans:
        if isinstance(scan.code, CodeRef):  # valid: neither forged nor typed at random
            valid[scan.ip] += 1
            if scan.device_id is None:
                without_device[scan.ip] += 1
            else:
                devices[scan.ip].add(scan.device_id)
        passed = (
            valid[scan.ip] > DEFAULTS.address_flag_valid_per_day
            or len(devices[scan.ip]) > DEFAULTS.address_flag_devices_per_day
            or without_device[scan.ip] > DEFAULTS.address_flag_no_device_per_day
        )
        over.append(scan.label is Label.ADDRESS_FARM and passed)
    return over


def overscan_over_threshold(scans: Iterable[PlannedScan]) -> list[bool]:
    """Per scan: an overscanned code's scan past the default count of a code's scans."""
    seen: Counter[object] = Counter()
    over = []
    for scan in scans:
        seen[scan.code] += 1
        over.append(scan.label is Label.OVERSCANNED and seen[scan.code] > DEFAULTS.code_max_scans)
    return over


def _per_actor(hits: Iterable[tuple[str, bool]]) -> Rate:
    """Actors with at least one hit / actors."""
    any_hit: dict[str, bool] = {}
    for actor, hit in hits:
        any_hit[actor] = any_hit.get(actor, False) or hit
    return Rate(sum(any_hit.values()), len(any_hit))


def _rate(hits: Iterable[bool]) -> Rate:
    values = list(hits)
    return Rate(sum(values), len(values))


def _false_positive(outcome: Outcome) -> bool:
    return bool(outcome.flags - BENIGN_FLAGS) or outcome.status == 429


def _flag_counts(outcomes: Iterable[Outcome]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for outcome in outcomes:
        counts.update(outcome.flags)
    return dict(sorted(counts.items()))


def evaluate(
    world: World, outcomes: list[Outcome], setup_s: float = 0.0, scans_s: float = 0.0
) -> EvalReport:
    """The figures of one run: ``outcomes[i]`` is the answer to ``world.scans[i]``."""
    pairs = list(zip(world.scans, outcomes, strict=True))
    over = farm_over_threshold(world.scans)

    def of(label: Label) -> list[tuple[PlannedScan, Outcome]]:
        return [(scan, outcome) for scan, outcome in pairs if scan.label is label]

    farm = [pair for pair, passed in zip(pairs, over, strict=True) if passed]
    address_farm = [
        pair
        for pair, passed in zip(pairs, address_over_threshold(world.scans), strict=True)
        if passed
    ]
    overscanned = [
        pair
        for pair, passed in zip(pairs, overscan_over_threshold(world.scans), strict=True)
        if passed
    ]
    recall = {
        "cloned": _rate(
            "cloned" in o.flags for s, o in of(Label.CLONED) if (s.clone_index or 0) >= 2
        ),
        "diverted": _rate("out_of_territory" in o.flags for _, o in of(Label.DIVERTED)),
        "harvested": _rate("not_shipped" in o.flags for _, o in of(Label.HARVESTED)),
        "farm_devices": _per_actor((s.actor, "device_farm" in o.flags) for s, o in farm),
        "farm_scans": _rate("device_farm" in o.flags for _, o in farm),
        "guessers": _per_actor(
            (s.actor, "guessing" in o.flags or o.status == 429) for s, o in of(Label.GUESSING)
        ),
        "address_farms": _per_actor((s.ip, "address_farm" in o.flags) for s, o in address_farm),
        "address_farm_scans": _rate("address_farm" in o.flags for _, o in address_farm),
        "overscanned": _rate("overscanned" in o.flags for _, o in overscanned),
    }
    precision = {
        label.value: _rate(s.label is label for s, o in pairs if flag in o.flags)
        for label, flag in FLAG_OF.items()
    }
    honest = [(s, o) for s, o in of(Label.HONEST) if Trait.TRAVELLER not in s.traits]
    travellers = [(s, o) for s, o in of(Label.HONEST) if Trait.TRAVELLER in s.traits]
    false_positives = _rate(_false_positive(o) for _, o in honest)
    by_trait = {
        trait.value: _rate(_false_positive(o) for s, o in honest if trait in s.traits)
        for trait in Trait
        if trait is not Trait.TRAVELLER
    }
    examples = [
        {
            "scan": index,
            "traits": sorted(s.traits),
            "status": o.status,
            "flags": [dict(detail) for detail in o.details],
        }
        for index, (s, o) in enumerate(pairs)
        if s.label is Label.HONEST and Trait.TRAVELLER not in s.traits and _false_positive(o)
    ][:FALSE_POSITIVE_EXAMPLES]
    flags: dict[str, Counter[str]] = defaultdict(Counter)
    statuses: dict[str, Counter[str]] = defaultdict(Counter)
    for scan, outcome in pairs:
        flags[scan.label.value].update(outcome.flags)
        statuses[scan.label.value][str(outcome.status)] += 1
    return EvalReport(
        seed=world.seed,
        scans_by_label=dict(Counter(scan.label.value for scan in world.scans)),
        statuses={str(k): v for k, v in sorted(Counter(o.status for o in outcomes).items())},
        recall=recall,
        precision=precision,
        honest_false_positives=false_positives,
        honest_flags=_flag_counts(o for _, o in honest),
        honest_by_trait=by_trait,
        false_positive_examples=examples,
        travellers=_rate("out_of_territory" in o.flags for _, o in travellers),
        traveller_flags=_flag_counts(o for _, o in travellers),
        flags_by_label={label: dict(sorted(c.items())) for label, c in sorted(flags.items())},
        statuses_by_label={label: dict(sorted(c.items())) for label, c in sorted(statuses.items())},
        setup_s=setup_s,
        scans_s=scans_s,
    )


def predecessors(scans: Iterable[PlannedScan]) -> list[tuple[int, ...]]:
    """Per scan, the earlier scans it must wait for: the last one of its actor and of its code."""
    last_of_actor: dict[str, int] = {}
    last_of_code: dict[object, int] = {}
    waits = []
    for index, scan in enumerate(scans):
        before = {last_of_actor.get(scan.actor), last_of_code.get(scan.code)}
        waits.append(tuple(sorted(i for i in before if i is not None)))
        last_of_actor[scan.actor] = last_of_code[scan.code] = index
    return waits


# --- driving the API --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ordered:
    batch_id: str
    first_serial: int
    gtin: str
    codes: list[str]


class _Api:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, admin_token: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.headers = {
            "Authorization": f"Bearer {admin_token}",
            "Content-Type": "application/json",
        }
        self.batches: dict[str, _Ordered] = {}

    async def send(self, method: str, path: str, body: Mapping[str, object]) -> dict[str, Any]:
        """A set-up request, which must succeed; its JSON answer."""
        url = self.base_url + path
        async with self.session.request(
            method, url, data=orjson.dumps(body), headers=self.headers
        ) as reply:
            payload = await reply.read()
        if reply.status not in (200, 201):
            raise EvalError(f"{method} {path} answered {reply.status}: {payload[:500]!r}")
        answer: dict[str, Any] = orjson.loads(payload)
        return answer

    async def order(self, plan: BatchPlan) -> None:
        batch = await self.send("POST", "/v1/batches", plan.body())
        path = f"/v1/batches/{batch['batch_id']}/codes?offset=0&limit={plan.quantity}"
        async with self.session.get(self.base_url + path, headers=self.headers) as reply:
            text = await reply.text()
        codes = text.split()
        if reply.status != 200 or len(codes) != plan.quantity:
            raise EvalError(f"GET {path} answered {reply.status} with {len(codes)} codes")
        self.batches[plan.name] = _Ordered(
            batch["batch_id"], int(batch["first_serial"]), batch["gtin"], codes
        )

    def code(self, ref: CodeRef) -> str:
        return self.batches[ref.batch].codes[ref.index]

    def scanned_text(self, scan: PlannedScan) -> str:
        """What the scan sends as ``code``: a literal guess, or a resolved code in its form."""
        if isinstance(scan.code, str):
            return scan.code
        code = self.batches[scan.code.batch].codes[scan.code.index]
        if isinstance(scan.code, Forged):
            code = forge(code, scan.code.mask)
        return scan.form.render(code, self.batches[scan.code.batch].gtin)

    async def set_up(self, step: SetupStep) -> None:
        if isinstance(step, BatchPlan):
            await self.order(step)
        else:
            await self.send(*self.request(step))

    def request(
        self, step: Distributor | Aggregation | CodeShipment | RangeShipment
    ) -> tuple[str, str, dict[str, object]]:
        """Method, path and body of a set-up step, its codes resolved."""
        match step:
            case Distributor():
                return "PUT", f"/v1/distributors/{step.distributor_id}", step.body()
            case Aggregation():
                children = [self.code(child) for child in step.children()]
                return (
                    "POST",
                    "/v1/aggregations",
                    {
                        "parent": self.code(step.case),
                        "children": children,
                    },
                )
            case CodeShipment():
                codes = [self.code(ref) for ref in step.codes]
                return (
                    "POST",
                    "/v1/shipments",
                    {
                        "distributor_id": step.distributor_id,
                        "codes": codes,
                    },
                )
            case RangeShipment():
                batch = self.batches[step.batch]
                return (
                    "POST",
                    "/v1/shipments",
                    {
                        "distributor_id": step.distributor_id,
                        "batch_id": batch.batch_id,
                        "serial_from": batch.first_serial + step.first,
                        "serial_to": batch.first_serial + step.last,
                    },
                )

    async def scan(self, scan: PlannedScan, scan_id: str, id_prefix: str) -> Outcome:
        body = scan.body(self.scanned_text(scan), scan_id, id_prefix)
        headers = {"Content-Type": "application/json", "X-Forwarded-For": scan.ip}
        async with self.session.post(
            self.base_url + "/v1/scans", data=orjson.dumps(body), headers=headers
        ) as reply:
            payload = await reply.read()
        if reply.status != 200:
            return Outcome(reply.status, None, frozenset())
        answer = orjson.loads(payload)
        details = tuple(answer.get("flags", ()))
        flags = frozenset(str(flag["flag"]) for flag in details)
        return Outcome(200, answer.get("verdict"), flags, details)


def _phase(step: SetupStep) -> str:
    match step:
        case Distributor():
            return "distributors"
        case BatchPlan():
            return "batches"
        case Aggregation():
            return "aggregations"
        case CodeShipment() | RangeShipment():
            return "shipments"


async def _run_all(jobs: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Runs the jobs as tasks; the first failure cancels the rest and is raised as it is."""
    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(job)
    except ExceptionGroup as failures:
        raise failures.exceptions[0] from None


async def _set_up(api: _Api, world: World, concurrency: int, progress: Progress) -> None:
    """The set-up steps, phase after phase."""
    for phase, steps in itertools.groupby(world.setup, key=_phase):
        await _set_up_phase(api, f"set-up {phase}", list(steps), concurrency, progress)


async def _set_up_phase(
    api: _Api, phase: str, steps: list[SetupStep], concurrency: int, progress: Progress
) -> None:
    """The steps of one phase, concurrently."""
    semaphore = asyncio.Semaphore(concurrency)
    done = 0

    async def one(step: SetupStep) -> None:
        nonlocal done
        async with semaphore:
            await api.set_up(step)
        done += 1
        progress(phase, done, len(steps))

    await _run_all(one(step) for step in steps)


async def _scan_all(
    api: _Api, world: World, concurrency: int, id_prefix: str, progress: Progress
) -> list[Outcome]:
    """Every scan in order by ``concurrency`` workers; a scan waits for its predecessors."""
    scans = world.scans
    waits = predecessors(scans)
    finished = [asyncio.Event() for _ in scans]
    outcomes: list[Outcome] = [Outcome(0, None, frozenset())] * len(scans)
    queue = iter(range(len(scans)))
    done = 0

    async def worker() -> None:
        nonlocal done
        for index in queue:
            for earlier in waits[index]:
                await finished[earlier].wait()
            outcomes[index] = await api.scan(scans[index], f"w{world.seed}-{index}", id_prefix)
            finished[index].set()
            done += 1
            progress("scans", done, len(scans))

    await _run_all(worker() for _ in range(concurrency))
    return outcomes


def _no_progress(phase: str, done: int, total: int) -> None:
    """Progress reports are dropped."""


async def run_world(
    session: aiohttp.ClientSession,
    base_url: str,
    world: World,
    admin_token: str,
    *,
    concurrency: int = 32,
    id_prefix: str = "",
    progress: Progress = _no_progress,
) -> EvalReport:
    """Sets the world up through the API at ``base_url``, sends its scans, scores the answers.

    The server must trust the peer's ``X-Forwarded-For`` (127.0.0.1 for a local test server).
    ``id_prefix`` goes before device, member and scan ids so that runs on one stack stay apart.
    """
    api = _Api(session, base_url, admin_token)
    started = time.monotonic()
    await _set_up(api, world, concurrency, progress)
    scanning = time.monotonic()
    outcomes = await _scan_all(api, world, concurrency, id_prefix, progress)
    finished = time.monotonic()
    return evaluate(world, outcomes, scanning - started, finished - scanning)


# --- the command ------------------------------------------------------------------------------


class StderrProgress:
    """One line on stderr per phase, rewritten at most twice a second."""

    def __init__(self) -> None:
        self._shown = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._shown < 0.5:
            return
        self._shown = now
        end = "\n" if done == total else ""
        sys.stderr.write(f"\r{phase}: {done:,}/{total:,}{end}")
        sys.stderr.flush()


@contextlib.contextmanager
def own_stack(workers: int) -> Iterator[tuple[str, str]]:
    """``scanward up`` on a free loopback port in a temporary folder: (URL, admin token).

    Inherited ``SCANWARD_*`` variables are dropped so that it starts its own Redis and
    ClickHouse; it runs in its own session and is stopped by its PID.
    """
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="scanward-fraud-eval-") as folder:
        port = local_services.free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCANWARD_")}
        env |= {
            "SCANWARD_KEYRING_SECRET": secrets.token_urlsafe(24),
            "SCANWARD_ADMIN_TOKEN": token,
            "SCANWARD_TRUSTED_PROXIES": "127.0.0.1",
        }
        log_path = Path(folder) / "up.log"
        argv = [sys.executable, "-m", "ingest.cli", "up", "--data-dir", folder]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            _wait_for_stack(process, url, log_path)
            yield url, token
        finally:
            _stop(process)


def _wait_for_stack(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while not wait_until_serving(url, 1.0):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise EvalError(f"'scanward up' did not serve {url}:\n{tail}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _loopback_url(text: str) -> str:
    parts = urlsplit(text)
    try:
        loopback = parts.scheme == "http" and ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise argparse.ArgumentTypeError("must be http://<loopback address>:<port>")
    return text.rstrip("/")


async def _drive(url: str, token: str, world: World, args: argparse.Namespace) -> EvalReport:
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with (
        aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
        asyncio.timeout(args.time_limit),
    ):
        return await run_world(
            session,
            url,
            world,
            token,
            concurrency=args.concurrency,
            id_prefix=f"{time.time_ns() // 1_000_000:x}:",
            progress=StderrProgress(),
        )


def _exit_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fraud_eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=1, help="the world's seed (default 1)")
    parser.add_argument(
        "--url",
        type=_loopback_url,
        help="a running stack on this machine that trusts 127.0.0.1 as a proxy "
        "(default: start one)",
    )
    parser.add_argument("--admin-token", help="its admin token (required with --url)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="world size factor (1: ~20,000 honest scans)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--workers", type=int, default=1, help="API workers of its own stack")
    parser.add_argument(
        "--time-limit", type=float, default=900, help="seconds before the run is abandoned"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.url is not None and not args.admin_token:
        parser.error("--url needs --admin-token")
    if not (0 < args.scale <= 20 and 1 <= args.concurrency <= 256):
        parser.error("--scale must be in (0, 20] and --concurrency in 1..256")
    signal.signal(signal.SIGTERM, _exit_on_signal)  # so that the stack it started is stopped
    params = WorldParams().scaled(args.scale)
    world = build_world(args.seed, params)
    stack = (
        contextlib.nullcontext((args.url, args.admin_token))
        if args.url is not None
        else own_stack(args.workers)
    )
    try:
        with stack as (url, token):
            report = asyncio.run(_drive(url, token, world, args))
    except EvalError as error:
        sys.exit(f"fraud_eval: {error}")
    except TimeoutError:
        sys.exit(f"\nfraud_eval: abandoned after --time-limit {args.time_limit:g} s")
    except KeyboardInterrupt:
        sys.exit("\nfraud_eval: interrupted")
    result = {
        **report.to_json(),
        **provenance(),
        "target": "url" if args.url is not None else f"own stack, {args.workers} worker(s)",
        "concurrency": args.concurrency,
        "world": asdict(params),
    }
    publish(result, f"fraud-eval-{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}")


if __name__ == "__main__":
    main()
