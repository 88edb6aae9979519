"""The analytics benchmark, small: every documented query runs on its generated data, answers
with rows, and its raw-table rewrite gives the same answer; on a local cluster, each shard holds
its share and every question answers as on one server."""

from __future__ import annotations

import pytest

from benchmarks import analytics_bench
from tests.test_analytics_docs import examples


def test_every_documented_query_answers_on_the_generated_data() -> None:
    result = analytics_bench.run(rows=30_000, repeats=1)
    questions = result["questions"]
    assert len(questions) == len(examples())
    assert [q["question"] for q in questions if not q["answer_rows"]] == []
    assert [q["question"] for q in questions if q["raw_same_answer"] is False] == []
    assert {q["reads"] for q in questions} == {"raw", "rollup"}
    assert result["storage"]["scans"]["rows"] == 30_000


@pytest.mark.clickhouse_cluster
@pytest.mark.slow
def test_on_two_shards_every_question_answers_as_on_one_server() -> None:
    result = analytics_bench.run(rows=30_000, repeats=1, shards=2, compare_single=True)
    questions = result["questions"]
    assert result["topology"] == {"shards": 2, "replicas": 1}
    assert len(questions) == len(examples())
    assert [q["question"] for q in questions if not q["answer_rows"]] == []
    assert [q.get("mismatch") for q in questions if not q["same_as_single"]] == []
    assert result["goal"]["same_answers_as_single"] is True
    # the shards' shares add up to the one server's rows
    assert result["storage"]["scans"]["rows"] == result["single"]["storage"]["scans"]["rows"]
    assert result["storage"]["draws"]["rows"] == 3_000
