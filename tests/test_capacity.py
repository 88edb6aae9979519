"""The capacity model on a small inputs file whose sizing was worked out by hand."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from benchmarks import capacity

INPUTS = {
    "api_cpu_us_per_scan": 200,
    "redis_cpu_us_per_scan": {"value": 100, "source": "by hand"},
    "sink_cpu_us_per_scan": 25,
    "clickhouse_cpu_us_per_scan": 40,
    "redis_bytes_per_scanned_code": 80,
    "redis_bytes_per_issued_code": 0.125,
    "sink_rows_per_s_per_shard": 100_000,
    "clickhouse_bytes_per_scan_row": 50,
}
TARGET = capacity.Target(issued_codes=8e9, scans_per_year=1e9, peak_scans_per_s=50_000, years=3)
ASSUME = capacity.Assumptions(
    max_utilisation=0.5,
    cores_per_node=16,
    redis_memory_per_node_gb=64,
    redis_memory_fill=0.5,
    redis_replicas=1,
    clickhouse_replicas=2,
    clickhouse_disk_per_node_tb=4,
    clickhouse_disk_fill=0.5,
)


def test_the_sizing_of_a_target_from_a_small_inputs_file() -> None:
    sizing = capacity.size(INPUTS, TARGET, ASSUME)
    # API: 50,000 scans/s x 200 µs = 10 cores busy, at half load 20 cores: 2 nodes of 16
    assert sizing["api"] == {"cores_needed": 20.0, "workers": 20, "nodes": 2}
    # Redis: 8e9 x 0.125 B = 1 GB of bits + 3e9 scanned codes x 80 B = 240 GB: 241 GB over 32 GB
    # usable a node = 8 masters (7.53); CPU 50,000 x 100 µs / 0.5 = 10 cores = 10 masters
    redis = sizing["redis"]
    assert (redis["data_gb"], redis["masters_for"]) == (241.0, {"cpu": 10, "memory": 8})
    assert (redis["masters"], redis["bound_by"], redis["replicas"]) == (10, "cpu", 10)
    assert redis["data_per_master_gb"] == 24.1
    # sinks: 50,000 x 25 µs / 0.5 = 2.5 cores -> 3; 50,000 / (100,000 x 0.5) = 1 by rows
    assert sizing["sinks"] == {
        "cores_needed": 2.5, "sinks_for": {"cpu": 3, "rows": 1}, "sinks": 3, "bound_by": "cpu"
    }  # fmt: skip
    # ClickHouse: 3e9 rows x 50 B = 150 GB over 2 TB usable: 1 shard by disk; 4 cores: 1 node;
    # 1 by rows
    clickhouse = sizing["clickhouse"]
    assert clickhouse["data_tb"] == 0.15
    assert clickhouse["shards_for"] == {"cpu": 1, "rows": 1, "disk": 1}
    assert (clickhouse["shards"], clickhouse["servers"]) == (1, 2)
    assert clickhouse["bound_by"] == "cpu+rows+disk"


def test_a_larger_target_is_bound_by_clickhouse_disk_and_redis_memory() -> None:
    target = capacity.Target(issued_codes=8e9, scans_per_year=20e9, peak_scans_per_s=1000, years=3)
    sizing = capacity.size(INPUTS, target, ASSUME)
    # 60e9 rows x 50 B = 3 TB over 2 TB usable a server: 2 shards, 4 servers
    assert (sizing["clickhouse"]["shards"], sizing["clickhouse"]["bound_by"]) == (2, "disk")
    # 1 GB + 60e9 x 80 B = 4,801 GB over 32 GB: 151 masters
    assert (sizing["redis"]["masters"], sizing["redis"]["bound_by"]) == (151, "memory")


def test_missing_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="sink_rows_per_s_per_shard"):
        capacity.size(
            {k: v for k, v in INPUTS.items() if k != "sink_rows_per_s_per_shard"}, TARGET, ASSUME
        )


def test_the_command_prints_the_table_from_an_inputs_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "inputs.json"
    path.write_bytes(orjson.dumps({"inputs": INPUTS}))
    capacity.main(["size", str(path), "--issued-codes", "8e9", "--format", "markdown"])
    table = capsys.readouterr().out
    assert table.splitlines()[0] == "| component | count | each | set by |"
    assert "| Redis masters | 10 |" in table
    capacity.main(["size", str(path), "--peak-scans-per-s", "5000"])
    assert orjson.loads(capsys.readouterr().out)["api"]["workers"] == 2
