"""The balance benchmark, quick: clusters of 3 and 6 masters of its own (started and stopped by
the benchmark), ``scanward serve`` with 48 scan partitions on each, a small load, and every
master's share of the scan-state keys, their memory and Redis CPU, beside the old scheme's.

The run checks what the report holds, not how even the spread is: the quick sample and load are
too small for their shares to mean much (the partitions' own placement is exact, though)."""

from __future__ import annotations

import orjson
import pytest

from benchmarks import balance

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

FIGURES = ("scan_partitions", "scan_keys", "scan_key_memory", "redis_cpu", "old_scheme_partitions")


def test_the_quick_run_reports_each_masters_shares_for_3_and_6_masters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    balance.main(["--quick", "--no-save"])

    printed = orjson.loads(capsys.readouterr().out)
    assert printed["benchmark"] == "balance"
    assert printed["quick"] is True
    assert printed["git_commit"]
    assert [row["masters"] for row in printed["table"]] == [3, 6]
    for cluster in printed["clusters"]:
        masters = cluster["masters"]
        assert cluster["layout_recorded"] == {"scan_partitions": 48, "actor_partitions": 12}
        assert cluster["load"]["completed"] == cluster["load"]["sent"] > 0
        assert cluster["load"]["non_2xx"] == 0
        rows = cluster["per_master"]
        assert len(rows) == masters
        assert sum(span[1] - span[0] + 1 for row in rows for span in row["slots"]) == 16_384
        for name in FIGURES:
            assert sum(row[name]["share"] for row in rows) == pytest.approx(1, abs=1e-3), name
            for row in rows:
                expected = (row[name]["share"] * masters - 1) * 100
                assert row[name]["deviation_pct"] == pytest.approx(expected, abs=0.1), name
            assert cluster["max_abs_deviation_pct"][name] == max(
                abs(row[name]["deviation_pct"]) for row in rows
            )
        # 48 spread partitions land exactly evenly on 3 or 6 masters; the 16 old tags do not
        assert {row["scan_partitions"]["value"] for row in rows} == {48 // masters}
        assert sum(row["old_scheme_partitions"]["value"] for row in rows) == 16
        assert cluster["max_abs_deviation_pct"]["old_scheme_partitions"] > 0
        for row in rows:
            assert row["scan_keys"]["value"] > 0
            assert row["scan_key_memory"]["value"] == sum(row["scan_key_memory_by_kind"].values())
            assert row["redis_cpu"]["value"] >= 0
