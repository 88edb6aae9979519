"""Every query of ``docs/analytics.md`` runs on the known data set and answers what the document
shows, so the document cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from ingest.warehouse import query_output
from ingest.warehouse.cluster_schema import apply_cluster_migrations
from ingest.warehouse.topology import Topology
from tests.analytics_support import load_analytics_data
from tests.sink_support import query

DOCUMENT = Path(__file__).parent.parent / "docs" / "analytics.md"
# a question's query and, after it, the answer shown for it
EXAMPLE = re.compile(r"```sql\n(?P<sql>.*?)\n```.*?```tsv\n(?P<answer>.*?)\n```", re.DOTALL)


def examples() -> list[tuple[str, str]]:
    return [(m["sql"], m["answer"]) for m in EXAMPLE.finditer(DOCUMENT.read_text("utf-8"))]


def test_the_document_asks_at_least_twelve_questions() -> None:
    assert len(examples()) >= 12
    assert len(examples()) == DOCUMENT.read_text("utf-8").count("```sql")


@pytest.mark.redis
@pytest.mark.clickhouse
def test_every_documented_query_gives_the_documented_answer(
    streams: redis.Redis, redis_url: str, database: str
) -> None:
    load_analytics_data(streams, redis_url, database)
    assert not _wrong_answers(database)


@pytest.mark.redis
@pytest.mark.clickhouse_cluster
def test_every_documented_query_gives_the_same_answer_on_two_shards_of_two_replicas(
    streams: redis.Redis, redis_url: str, clickhouse_cluster: Topology
) -> None:
    apply_cluster_migrations(clickhouse_cluster)
    load_analytics_data(streams, redis_url, clickhouse_cluster.url)
    assert not _wrong_answers(clickhouse_cluster.url)


def _wrong_answers(url: str) -> str:
    wrong = []
    for sql, answer in examples():
        printed = "".join(query_output.tab_separated(query(url, sql))).rstrip("\n")
        if printed != answer:
            wrong.append(f"{sql}\n--- documented:\n{answer}\n--- got:\n{printed}")
    return "\n\n".join(wrong)
