"""The documented analytics queries on a large table: raw ``scans``/``draws`` against the rollups.

Starts its own ClickHouse, applies the migrations, then generates ``--rows`` synthetic scans over
30 days (2026-01-10 to 2026-02-08, so the week the documented queries ask about is full) and a
tenth as many prize draws straight into ClickHouse with ``INSERT ... SELECT FROM
system.numbers`` (not through HTTP); the materialized views fill the rollups as they would from
the sink. Then it times every query of ``docs/analytics.md`` (the best of ``--repeats``) and,
for those that read a rollup, the same question asked of the raw table. Prints one JSON
document. Goal (issue 7): every dashboard-style query answers in under 1 s from the rollups.

``--shards N [--replicas R]`` runs the same on a local cluster (``ingest.ops.clickhouse_cluster``,
the cluster migrations): the same rows, each shard holding its share, and every question asked
unchanged of the Distributed tables. Each shard's first replica generates its own share (the
numbers with ``number % N`` = its index) into its local tables, all shards at once: 18.16 cannot
insert ``scans`` through its Distributed table (the remote insert names the MATERIALIZED ``flags``
and is refused, Code 44; sent asynchronously, the rows never arrive), and generating on the shards
spreads the work over their servers. The mirrors go whole to every shard. ``--compare-single``
first loads the same rows into one server and reports, per question, whether the cluster answers as
it does. Goal (issue 17): every documented query under 1 s on 2 shards, with the one server's
answers.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import analytics_warehouse
from benchmarks.analytics_warehouse import Warehouse
from benchmarks.report import provenance, publish

DAYS = 30
START_MS = 1_768_003_200_000  # 2026-01-10 00:00 UTC
DOCUMENT = Path(__file__).parent.parent / "docs" / "analytics.md"
GOAL_S = 1.0
QUESTION = re.compile(r"^## (\d+)\. (.+?)$.*?```sql\n(.*?)\n```", re.DOTALL | re.MULTILINE)

# Scans: 4 SKUs, 200 batches shipped to 30 distributors, 2% counterfeit, 1% suspicious, 5% seen
# outside their territory, 10% without a location, a quarter without a member.
_SCANS = """
INSERT INTO {table} (date, time, time_ms, scan_id, code, serial, key_id, batch_id, sku, gtin,
    verdict, genuine, first_scan, scan_count, distinct_devices, flag_list, lat, lon, accuracy_m,
    has_location, member_id, device_id, ip, latency_us, risk, distributor_id, surfaced_in,
    distance_km, stream_partition, stream_ms, stream_seq, stream_index)
SELECT toDate(time) AS date, toDateTime(intDiv(time_ms, 1000)) AS time, time_ms,
    concat('s', toString(number)), concat('C', toString(serial)), serial, 1,
    concat('B', toString(intDiv(serial, 100000))) AS batch_id,
    ['BEER-500', 'COLA-330', 'TEA-250', 'WATER-550'][number % 4 + 1], '04006381333931',
    multiIf(number % 50 = 1, 'counterfeit', number % 97 = 0, 'suspicious', 'genuine') AS verdict,
    verdict = 'genuine', number % 3 != 0, 1 + number % 3, 1 + number % 2,
    multiIf(number % 50 = 1, 'unknown_serial', number % 97 = 0, 'device_farm', ''),
    if(number % 10 = 0, nan, 22 + (number % 1000) / 100),
    if(number % 10 = 0, nan, 110 + (intDiv(number, 1000) % 1000) / 100), 15,
    number % 10 != 0,
    if(number % 4 = 0, '', concat('m', toString(number % 2000000))),
    concat('d', toString(number % 5000000)), '198.18.0.1', 500 + number % 3000, number % 3,
    concat('D', toString(intDiv(serial, 100000) % 30)) AS distributor_id,
    if(number % 20 = 0, concat('D', toString(number % 30)), distributor_id) AS surfaced_in,
    if(surfaced_in != distributor_id, 50, 0),
    number % 16, time_ms, number, 0
FROM (
    SELECT number, {start_ms} + intDiv(number * {ms_per_row_x1000}, 1000) AS time_ms,
        1000000 + (number * 7919) % 20000000 AS serial
    FROM {numbers}
)
"""
_DRAWS = """
INSERT INTO {table} (date, time, time_ms, campaign_id, day, seq, scan_id, member_id, code, serial,
    tier, won, prize_id, prize_kind, prize_value)
SELECT toDate(time) AS date, toDateTime(intDiv(time_ms, 1000)) AS time, time_ms,
    concat('C', toString(number % 3)), date, number, concat('s', toString(number)),
    concat('m', toString(number % 2000000)), concat('C', toString(number)), number, number % 5,
    number % 9 = 0 AS won, if(won, concat('p', toString(number % 4)), ''),
    if(won, ['cash', 'points'][number % 2 + 1], ''), if(won, 100 + number % 900, 0)
FROM (
    SELECT number, {start_ms} + intDiv(number * {ms_per_row_x1000}, 1000) AS time_ms
    FROM {numbers}
)
"""
# The mirrored reference data of those scans: batch k holds serials k * 100,000 to the next
# 99,999, is shipped whole to distributor D(k mod 30), and every fiftieth batch is revoked.
_MIRRORS = (
    """
INSERT INTO distributors (distributor_id, name, territory, updated, updated_ms)
SELECT concat('D', toString(number)), concat('Distributor ', toString(number)),
    '{{"type": "Polygon", "coordinates": []}}', toDateTime(intDiv({start_ms}, 1000)), {start_ms}
FROM system.numbers LIMIT 30
""",
    """
INSERT INTO batches (batch_id, sku, gtin, kind, line_id, key_id, first_serial, last_serial,
    quantity, created, created_ms, status, revoked_ms)
SELECT concat('B', toString(k)), ['BEER-500', 'COLA-330', 'TEA-250', 'WATER-550'][k % 4 + 1],
    '04006381333931', 'unit', 'L1', 1, k * 100000, k * 100000 + 99999, 100000,
    toDateTime(intDiv({start_ms}, 1000)), {start_ms}, if(k % 50 = 0, 'revoked', 'active'),
    if(k % 50 = 0, {start_ms} + 86400000 * 20, 0)
FROM (SELECT number + 10 AS k FROM system.numbers LIMIT 200)
""",
    """
INSERT INTO shipments (date, time, time_ms, shipment_id, distributor_id, first_serial,
    last_serial, codes)
SELECT toDate(toDateTime(intDiv({start_ms}, 1000))), toDateTime(intDiv({start_ms}, 1000)),
    {start_ms}, concat('S', toString(k)), concat('D', toString(k % 30)), k * 100000,
    k * 100000 + 99999, 100000
FROM (SELECT number + 10 AS k FROM system.numbers LIMIT 200)
""",
)
ROLLUPS = (
    "scans_hourly",
    "scanners_daily",
    "diversion_daily",
    "counterfeits_daily",
    "awards_daily",
)


def _raw_sql(sql: str) -> str | None:
    """The rollup query ``sql`` rewritten to aggregate the raw rows, or None if it reads none."""
    replacements = [
        (r"FROM scans_hourly", "FROM scans"),
        (r"sum\(scans\) AS scans", "count() AS scans"),
        (r"sum\(first_scans\)", "sum(first_scan)"),
        (r"sum\(scans\) AS all_scans", "count() AS all_scans"),
        (r"sumIf\(scans, verdict = 'counterfeit'\)", "countIf(verdict = 'counterfeit')"),
        (r"sumIf\(scans, hour >= ", "countIf(toStartOfHour(time) >= "),
        (r"GROUP BY hour,", "GROUP BY toStartOfHour(time) AS hour,"),
        (r"SELECT hour,", "SELECT toStartOfHour(time) AS hour,"),
        (r"FROM scanners_daily", "FROM scans"),
        (r"uniqIfMerge\(members\)", "uniqIf(member_id, member_id != '')"),
        (r"uniqIfMerge\(devices\)", "uniqIf(device_id, device_id != '')"),
        (
            r"FROM diversion_daily\nWHERE",
            "FROM scans\nWHERE distributor_id != '' AND has_location = 1 AND",
        ),
        (r"sum\(scans\) AS located_scans", "count() AS located_scans"),
        (r"sum\(outside\)", "countIf(distance_km > 0)"),
        (
            r"SELECT cell_lat / 10 AS south, cell_lon / 10 AS west, sum\(scans\) AS counterfeits"
            r"\nFROM counterfeits_daily\nWHERE",
            "SELECT floor(lat * 10) / 10 AS south, floor(lon * 10) / 10 AS west,"
            " count() AS counterfeits\nFROM scans\nWHERE"
            " verdict = 'counterfeit' AND has_location = 1 AND",
        ),
        (r"GROUP BY cell_lat, cell_lon", "GROUP BY south, west"),
        (r"counterfeits DESC, cell_lat, cell_lon", "counterfeits DESC, south, west"),
        (r"FROM awards_daily", "FROM awards"),
        (r"sum\(awards\)", "count()"),
        (r"sumIf\(value,", "sumIf(prize_value,"),
    ]
    if not any(table in sql for table in ROLLUPS):
        return None
    for pattern, replacement in replacements:
        sql = re.sub(pattern, replacement, sql)
    return sql


def _answer(client: Any, sql: str) -> list[tuple[Any, ...]]:
    """The rows, sorted, with times as naive values (the driver gives a DateTime column and a
    DateTime expression different time zone objects)."""
    rows = [
        tuple(v.replace(tzinfo=None) if isinstance(v, datetime) else v for v in row)
        for row in client.execute(sql)
    ]
    return sorted(rows, key=repr)


def _best_seconds(client: Any, sql: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        client.execute(sql)
        best = min(best, time.perf_counter() - started)
    return round(best, 4)


@dataclass
class Measured:
    """One warehouse's run: its load, its tables' size, the questions' timings and answers."""

    loading: dict[str, Any]
    storage: dict[str, dict[str, float]]
    questions: list[dict[str, Any]]
    answers: dict[int, list[str]]
    """Each question's rows (sorted, as ``repr``: NaN equals NaN) for comparing warehouses."""


def _numbers(rows: int, share: int, shares: int) -> str:
    """The source of a load's numbers: all ``rows`` of them, or one shard's share."""
    if shares == 1:
        return f"system.numbers LIMIT {rows}"
    return f"(SELECT number FROM system.numbers LIMIT {rows}) WHERE number % {shares} = {share}"


def _insert(template: str, table: str, count: int, share: int = 0, shares: int = 1) -> str:
    """The INSERT ... SELECT of ``count`` generated rows into ``table``, or of one share of them."""
    return template.format(
        table=table,
        numbers=_numbers(count, share, shares),
        start_ms=START_MS,
        ms_per_row_x1000=DAYS * 86_400_000_000 // count,
    )


def _load(warehouse: Warehouse, rows: int) -> dict[str, Any]:
    """The synthetic rows and the mirrors, loaded; the rollups merged; the replicas caught up."""
    loading: dict[str, Any] = {}
    shares = len(warehouse.writers)
    for table, template, count in (("scans", _SCANS, rows), ("draws", _DRAWS, rows // 10)):
        started = time.perf_counter()
        local = f"{table}{warehouse.suffix}"
        warehouse.on_each_shard([_insert(template, local, count, i, shares) for i in range(shares)])
        loading[table] = {"rows": count, "seconds": round(time.perf_counter() - started, 1)}
    for sql in _MIRRORS:  # whole on every shard
        warehouse.on_each_shard([sql.format(start_ms=START_MS)] * shares)
    for client in warehouse.writers:  # as merges would, given time
        client.execute(f"OPTIMIZE TABLE scans_hourly{warehouse.suffix} FINAL")
    warehouse.sync_replicas()
    return loading


def _ask(client: Any, repeats: int) -> tuple[list[dict[str, Any]], dict[int, list[str]]]:
    """Every documented question timed (and, of a rollup, its raw rewrite), with its answer."""
    questions, answers = [], {}
    for number, title, sql in QUESTION.findall(DOCUMENT.read_text("utf-8")):
        raw = _raw_sql(sql)
        answer = _answer(client, sql)
        questions.append(
            {
                "question": int(number),
                "title": title,
                "seconds": _best_seconds(client, sql, repeats),
                "raw_seconds": raw and _best_seconds(client, raw, repeats),
                "reads": "rollup" if raw else "raw",
                "answer_rows": len(answer),
                # the rewrite for the raw table asks the same question
                "raw_same_answer": raw and _answer(client, raw) == answer,
            }
        )
        answers[int(number)] = [repr(row) for row in answer]
    return questions, answers


def measure(warehouse: Warehouse, rows: int, repeats: int) -> Measured:
    """``rows`` scans (and a tenth as many draws) loaded into ``warehouse``, then questioned."""
    loading = _load(warehouse, rows)
    storage = warehouse.storage(("scans", "draws"))
    questions, answers = _ask(warehouse.ask, repeats)
    return Measured(loading, storage, questions, answers)


@contextlib.contextmanager
def _started(shards: int | None, replicas: int) -> Iterator[Warehouse]:
    with tempfile.TemporaryDirectory(prefix="scanward-analytics-") as folder:
        if shards is None:
            with analytics_warehouse.one_server(Path(folder)) as warehouse:
                yield warehouse
        else:
            with analytics_warehouse.cluster(Path(folder), shards, replicas) as warehouse:
                yield warehouse


def compare(
    questions: list[dict[str, Any]], answers: dict[int, list[str]], single: Measured
) -> int:
    """Each question of a cluster marked with the one server's time and whether it answered the
    same (on a mismatch, up to 3 rows only one of them gave); the number of mismatches."""
    single_seconds = {q["question"]: q["seconds"] for q in single.questions}
    mismatches = 0
    for question in questions:
        number = question["question"]
        ours, theirs = answers[number], single.answers.get(number)
        question["single_seconds"] = single_seconds.get(number)
        question["same_as_single"] = ours == theirs
        if ours != theirs:
            mismatches += 1
            question["mismatch"] = {
                "cluster_only": [row for row in ours if row not in (theirs or [])][:3],
                "single_only": [row for row in theirs or [] if row not in ours][:3],
            }
    return mismatches


def run(
    rows: int,
    repeats: int,
    shards: int | None = None,
    replicas: int = 1,
    *,
    compare_single: bool = False,
) -> dict[str, Any]:
    """One server (``shards`` None), or a cluster and, with ``compare_single``, one server
    before it for the answers."""
    single = None
    if shards is not None and compare_single:
        with _started(None, 1) as warehouse:
            single = measure(warehouse, rows, repeats)
    with _started(shards, replicas) as warehouse:
        measured = measure(warehouse, rows, repeats)
        topology = warehouse.topology
    questions = measured.questions
    result: dict[str, Any] = {"benchmark": "analytics", **provenance()}
    if topology is None:
        slowest_rollup = max((q["seconds"] for q in questions if q["reads"] == "rollup"), default=0)
        goal = {"rollup_queries_under_s": GOAL_S, "slowest_rollup_s": slowest_rollup,
                "met": slowest_rollup < GOAL_S}  # fmt: skip
    else:
        mismatches = None if single is None else compare(questions, measured.answers, single)
        slowest = max(questions, key=lambda q: q["seconds"])
        over = [q["question"] for q in questions if q["seconds"] >= GOAL_S]
        goal = {
            "queries_under_s": GOAL_S,
            "slowest_s": slowest["seconds"],
            "slowest_question": slowest["question"],
            "questions_over": over,
            "same_answers_as_single": None if mismatches is None else mismatches == 0,
            "met": not over and not mismatches,
        }
        result["topology"] = topology
    result |= {"loading": measured.loading, "storage": measured.storage, "repeats": repeats,
               "questions": questions, "goal": goal}  # fmt: skip
    if single is not None:
        result["single"] = {"loading": single.loading, "storage": single.storage}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000_000, help="scans to generate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shards", type=int, help="a local cluster of this many shards")
    parser.add_argument("--replicas", type=int, default=1, help="per shard (with --shards)")
    parser.add_argument(
        "--compare-single", action="store_true", help="also one server: are the answers the same"
    )
    args = parser.parse_args(argv)
    if args.shards is None and (args.replicas != 1 or args.compare_single):
        parser.error("--replicas and --compare-single need --shards")
    result = run(
        args.rows, args.repeats, args.shards, args.replicas, compare_single=args.compare_single
    )
    topology = f"-s{args.shards}r{args.replicas}" if args.shards is not None else ""
    publish(result, f"analytics-{time.strftime('%Y%m%d-%H%M%S')}-{args.rows}{topology}")


if __name__ == "__main__":
    main()
