"""``scanward export scans``: the scans of a date range from ClickHouse to a CSV or Parquet file.

Rows are streamed (``execute_iter``, blocks of ``block_rows``) and written a block at a time, so
an export of any size holds one block in memory. The columns are the table's stored ones, as
the migrations left them (``clickhouse_client.stored_columns``), in table order: a migration
that adds a column adds it to the exports. Rows come in the order they were scanned (``time_ms``).

On a cluster (``ingest.warehouse.topology``) the client's ``scans`` is the Distributed table:
each shard's rows come once, from one of its replicas as that replica holds them (rows a
replica has not fetched yet are missing, so export days the sink is done with).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any, BinaryIO, Literal

from ingest.warehouse.client import stored_columns

FileFormat = Literal["csv", "parquet"]
FILE_FORMATS: tuple[FileFormat, ...] = ("csv", "parquet")
BLOCK_ROWS = 65_536


def export_scans(
    client: Any,
    since: date,
    until: date | None,
    file_format: FileFormat,
    output: BinaryIO,
    block_rows: int = BLOCK_ROWS,
) -> int:
    """Writes the scans of ``since`` <= date < ``until`` (no end when None) to ``output``;
    returns how many."""
    columns = stored_columns(client, "scans")
    condition = "date >= %(since)s" + (" AND date < %(until)s" if until else "")
    rows = client.execute_iter(
        f"SELECT {', '.join(name for name, _ in columns)} FROM scans "
        f"WHERE {condition} ORDER BY time_ms",
        {"since": since, "until": until},
        settings={"max_block_size": block_rows},
    )
    blocks = _blocks(rows, block_rows)
    if file_format == "csv":
        return _write_csv([name for name, _ in columns], blocks, output)
    return _write_parquet(columns, blocks, output)


def _blocks(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    while block := list(itertools.islice(rows, size)):
        yield block


def _write_csv(
    names: Sequence[str], blocks: Iterator[list[tuple[Any, ...]]], output: BinaryIO
) -> int:
    """RFC 4180, with a header line of the column names."""
    text = io.TextIOWrapper(output, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(names)
    count = 0
    for block in blocks:
        writer.writerows(block)
        count += len(block)
    text.flush()
    text.detach()  # the caller's file stays open
    return count


def _write_parquet(
    columns: Sequence[tuple[str, str]], blocks: Iterator[list[tuple[Any, ...]]], output: BinaryIO
) -> int:
    # here: pyarrow takes ~0.3 s to import, and every scanward command imports this module
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, _arrow_type(pa, kind)) for name, kind in columns])
    count = 0
    with pq.ParquetWriter(output, schema) as writer:
        for block in blocks:
            arrays = [
                pa.array(values, type=field.type)
                for values, field in zip(zip(*block, strict=True), schema, strict=True)
            ]
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
            count += len(block)
    return count


_ARROW_NAMES = {
    **{f"UInt{bits}": f"uint{bits}" for bits in (8, 16, 32, 64)},
    **{f"Int{bits}": f"int{bits}" for bits in (8, 16, 32, 64)},
    "Float32": "float32",
    "Float64": "float64",
    "String": "string",
    "Date": "date32",
}
_WRAPPED = re.compile(r"(LowCardinality|Nullable)\((.*)\)")


def _arrow_type(pa: Any, kind: str) -> Any:
    """The Arrow type of a ClickHouse column type (DateTime as seconds, as ClickHouse keeps it;
    Parquet files store them as milliseconds)."""
    if wrapped := _WRAPPED.fullmatch(kind):
        return _arrow_type(pa, wrapped.group(2))
    if kind.startswith("Array(") and kind.endswith(")"):
        return pa.list_(_arrow_type(pa, kind[len("Array(") : -1]))
    if kind.startswith("DateTime"):
        return pa.timestamp("s")
    name = _ARROW_NAMES.get(kind)
    if name is None:
        raise ValueError(f"no Parquet type for the ClickHouse type {kind}")
    return getattr(pa, name)()
