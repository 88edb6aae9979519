"""Partition counts as settings: hash tags spread over the slot space, recorded in Redis and
checked at every start."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from ingest.config import ConfigError, Settings
from ingest.events.partitions import MAX_PARTITIONS, Partitions
from ingest.store.layout import LAYOUT_KEY, LayoutMismatch, check_layout
from tests.conftest import KEYRING_SECRET


def _per_master(tags: list[str], masters: int) -> list[int]:
    """Tags per master when each holds an equal run of slots, as ``redis-cli --cluster create``
    assigns them (its runs may be a slot longer or shorter: the tags sit mid-share)."""
    share = REDIS_CLUSTER_HASH_SLOTS / masters
    held = Counter(int(key_slot(tag.encode()) // share) for tag in tags)
    return [held[master] for master in range(masters)]


@pytest.mark.parametrize(
    ("count", "masters", "expected"),
    [(48, 3, [16] * 3), (48, 6, [8] * 6), (64, 4, [16] * 4), (16, 3, [5, 6, 5]), (12, 6, [2] * 6)],
)
def test_partitions_spread_evenly_over_masters_holding_equal_slot_runs(
    count: int, masters: int, expected: list[int]
) -> None:
    partitions = Partitions(count, count)
    scan_tags = [partitions.scan_tag(p) for p in range(count)]
    assert _per_master(scan_tags, masters) == expected
    actor_tags = sorted({partitions.actor_tag(f"device-{n}") for n in range(10 * count)})
    assert _per_master(actor_tags, masters) == expected


def test_each_partition_has_its_own_slot_and_keys() -> None:
    partitions = Partitions(256, 4)
    slots = {key_slot(partitions.scan_tag(p).encode()) for p in range(256)}
    assert len(slots) == 256
    key = partitions.stream_key(7)
    assert key == partitions.scan_tag(7) + ":events" == partitions.stream_keys[7]
    assert partitions.of_stream(key) == 7
    assert partitions.unsunk_key(7) == partitions.unsunk_keys[7]
    assert partitions.of_text("fake") == partitions.of_text("fake") < 256
    assert Partitions(16).scan_tag(3) != Partitions(48).scan_tag(3)


@pytest.mark.parametrize("count", [0, MAX_PARTITIONS + 1, -3])
def test_a_partition_count_out_of_range_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match=f"1 to {MAX_PARTITIONS}"):
        Partitions(count)
    with pytest.raises(ConfigError, match="SCANWARD_SCAN_PARTITIONS"):
        Settings.from_env({"SCANWARD_SCAN_PARTITIONS": str(count)})


def test_the_settings_give_the_partitions() -> None:
    settings = Settings.from_env(
        {"SCANWARD_SCAN_PARTITIONS": "48", "SCANWARD_ACTOR_PARTITIONS": "12"}
    )
    assert settings.partitions == Partitions(48, 12)
    assert Settings().partitions == Partitions(16, 4)


@pytest.mark.redis
def test_the_first_start_records_the_counts_and_a_later_one_with_others_is_refused(
    streams: redis.Redis,
) -> None:
    check_layout(streams, Partitions(48, 12), "127.0.0.1:1")
    assert streams.get(LAYOUT_KEY) == b'{"scan_partitions":48,"actor_partitions":12}'
    check_layout(streams, Partitions(48, 12), "127.0.0.1:1")  # the same counts: fine
    with pytest.raises(LayoutMismatch) as refused:
        check_layout(streams, Partitions(16, 12), "127.0.0.1:1")
    message = str(refused.value)
    assert "\n" not in message
    assert "127.0.0.1:1" in message
    assert "scan_partitions=16" in message
    assert streams.get(LAYOUT_KEY) == b'{"scan_partitions":48,"actor_partitions":12}'


@pytest.mark.redis
def test_a_record_scanward_did_not_write_is_refused(streams: redis.Redis) -> None:
    streams.set(LAYOUT_KEY, b"\xffnot json")
    with pytest.raises(LayoutMismatch, match="scan_partitions=16"):
        check_layout(streams, Partitions(), "127.0.0.1:1")


@pytest.mark.redis
def test_a_store_of_the_earlier_fixed_partitions_is_refused(streams: redis.Redis) -> None:
    streams.xadd("{scans:0}:events", {"e": b"", "s": b""})
    with pytest.raises(LayoutMismatch, match="predates"):
        check_layout(streams, Partitions(), "127.0.0.1:1")
    assert streams.get(LAYOUT_KEY) is None


@pytest.mark.redis
def test_serve_up_and_sink_with_other_counts_stop_with_one_line(
    streams: redis.Redis, redis_url: str, keyring_path: Path, tmp_path: Path
) -> None:
    check_layout(streams, Partitions(48, 12), redis_url)
    environment = {
        "SCANWARD_REDIS_URL": redis_url,
        "SCANWARD_CLICKHOUSE_URL": "clickhouse://127.0.0.1:1/none",
        "SCANWARD_KEYRING_SECRET": KEYRING_SECRET,
        "SCANWARD_KEYRING_PATH": str(keyring_path),
        "SCANWARD_DATA_DIR": str(tmp_path),
        "SCANWARD_PORT": "1",  # never bound: the start stops before
        "PATH": "/usr/bin:/bin",
    }
    for command in (["serve", "--workers", "1"], ["serve", "--workers", "2"], ["sink"], ["up"]):
        finished = subprocess.run(
            [sys.executable, "-m", "ingest.cli", *command],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert finished.returncode == 2, finished.stderr  # a settings error
        [line] = finished.stderr.strip().splitlines()
        assert line.startswith("scanward: Redis at 127.0.0.1:")
        assert "scan_partitions=16" in line
        assert KEYRING_SECRET not in finished.stderr
