"""The documented analytics queries on a large table: raw ``scans``/``draws`` against the rollups.

Starts its own ClickHouse, applies the migrations, then generates ``--rows`` synthetic scans over
30 days (2026-01-10 to 2026-02-08, so the week the documented queries ask about is full) and a
tenth as many prize draws straight into ClickHouse with ``INSERT ... SELECT FROM
system.numbers`` (not through HTTP); the materialized views fill the rollups as they would from
the sink. Then it times every query of ``docs/analytics.md`` (the best of ``--repeats``) and,
for those that read a rollup, the same question asked of the raw table. Prints one JSON
document. Goal (issue 7): every dashboard-style query answers in under 1 s from the rollups.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.report import provenance, publish
from ingest.ops import local_services
from ingest.warehouse.client import connect
from ingest.warehouse.schema import apply_migrations

DAYS = 30
START_MS = 1_768_003_200_000  # 2026-01-10 00:00 UTC
DOCUMENT = Path(__file__).parent.parent / "docs" / "analytics.md"
QUESTION = re.compile(r"^## (\d+)\. (.+?)$.*?```sql\n(.*?)\n```", re.DOTALL | re.MULTILINE)

# Scans: 4 SKUs, 200 batches shipped to 30 distributors, 2% counterfeit, 1% suspicious, 5% seen
# outside their territory, 10% without a location, a quarter without a member.
_SCANS = """
INSERT INTO scans (date, time, time_ms, scan_id, code, serial, key_id, batch_id, sku, gtin,
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
    FROM system.numbers LIMIT {rows}
)
"""
_DRAWS = """
INSERT INTO draws (date, time, time_ms, campaign_id, day, seq, scan_id, member_id, code, serial,
    tier, won, prize_id, prize_kind, prize_value)
SELECT toDate(time) AS date, toDateTime(intDiv(time_ms, 1000)) AS time, time_ms,
    concat('C', toString(number % 3)), date, number, concat('s', toString(number)),
    concat('m', toString(number % 2000000)), concat('C', toString(number)), number, number % 5,
    number % 9 = 0 AS won, if(won, concat('p', toString(number % 4)), ''),
    if(won, ['cash', 'points'][number % 2 + 1], ''), if(won, 100 + number % 900, 0)
FROM (
    SELECT number, {start_ms} + intDiv(number * {ms_per_row_x1000}, 1000) AS time_ms
    FROM system.numbers LIMIT {rows}
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


def run(rows: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="scanward-analytics-") as folder:
        clickhouse = local_services.start_clickhouse(Path(folder))
        try:
            client = connect(clickhouse.url, timeout_s=3600)
            apply_migrations(client)
            loading = {}
            for table, template, count in (("scans", _SCANS, rows), ("draws", _DRAWS, rows // 10)):
                sql = template.format(
                    start_ms=START_MS,
                    ms_per_row_x1000=DAYS * 86_400_000_000 // count,
                    rows=count,
                )
                started = time.perf_counter()
                client.execute(sql)
                loading[table] = {"rows": count, "seconds": round(time.perf_counter() - started, 1)}
            for sql in _MIRRORS:
                client.execute(sql.format(start_ms=START_MS))
            client.execute("OPTIMIZE TABLE scans_hourly FINAL")  # as merges would, given time
            questions = []
            for number, title, sql in QUESTION.findall(DOCUMENT.read_text("utf-8")):
                raw = _raw_sql(sql)
                questions.append(
                    {
                        "question": int(number),
                        "title": title,
                        "seconds": _best_seconds(client, sql, repeats),
                        "raw_seconds": raw and _best_seconds(client, raw, repeats),
                        "reads": "rollup" if raw else "raw",
                        "answer_rows": len(client.execute(sql)),
                        # the rewrite for the raw table asks the same question
                        "raw_same_answer": raw and _answer(client, raw) == _answer(client, sql),
                    }
                )
            client.disconnect()
        finally:
            clickhouse.stop()
    slowest_rollup = max((q["seconds"] for q in questions if q["reads"] == "rollup"), default=0)
    return {
        "benchmark": "analytics",
        **provenance(),
        "loading": loading,
        "repeats": repeats,
        "questions": questions,
        "goal": {"rollup_queries_under_s": 1.0, "slowest_rollup_s": slowest_rollup,
                 "met": slowest_rollup < 1.0},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000_000, help="scans to generate")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args.rows, args.repeats)
    publish(result, f"analytics-{time.strftime('%Y%m%d-%H%M%S')}-{args.rows}")


if __name__ == "__main__":
    main()
