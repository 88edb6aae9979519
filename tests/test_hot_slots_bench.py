"""The hot-slots benchmark, quick: it runs end to end on a Redis of its own (started and stopped
by the benchmark) and reports a cost and a ceiling for every single-slot tag and draw size.

The run checks what the report holds, not its figures: the quick sizes are too small to mean
much, and speed belongs to the benchmark itself."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from benchmarks import hot_slots, report

pytestmark = pytest.mark.redis


def test_the_quick_run_reports_a_cost_for_every_tag_and_draw_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    hot_slots.main(["--quick"])

    printed = orjson.loads(capsys.readouterr().out)
    [saved] = tmp_path.glob("hot-slots-*-quick.json")
    assert orjson.loads(saved.read_bytes()) == printed
    assert printed["quick"] is True
    assert printed["redis_version"]
    assert printed["git_commit"]
    assert set(printed["tags"]) == set(hot_slots.TAGS)
    for tag in hot_slots.TAGS:
        figures = printed["tags"][tag]
        assert figures, f"no figure for {tag}"
        for figure in figures:
            assert figure["us_per_op"] >= 0, (tag, figure["operation"])
        # every tag has an operation Redis spent measurable time on, and its ceiling
        assert any(f["us_per_op"] > 0 and f["ceiling_per_s"] > 0 for f in figures), tag
    with_ids = {d["entrants_per_call"]: d for d in printed["draws"] if d["client_scan_ids"]}
    assert {1, 4, 20, 64} <= set(with_ids)
    for draws in with_ids.values():
        assert draws["us_per_draw"] > 0
        assert draws["draws_per_s_ceiling"] > 0
        assert draws["sink_us_per_draw"] > 0
    assert {f["tag"] for f in printed["partitioned"]} == {"{actors:N}", "{members:N}"}
