"""The analytics benchmark, small: every documented query runs on its generated data, answers
with rows, and its raw-table rewrite gives the same answer."""

from __future__ import annotations

from benchmarks import analytics_bench
from tests.test_analytics_docs import examples


def test_every_documented_query_answers_on_the_generated_data() -> None:
    result = analytics_bench.run(rows=30_000, repeats=1)
    questions = result["questions"]
    assert len(questions) == len(examples())
    assert [q["question"] for q in questions if not q["answer_rows"]] == []
    assert [q["question"] for q in questions if q["raw_same_answer"] is False] == []
    assert {q["reads"] for q in questions} == {"raw", "rollup"}
