"""Query results as text for ``scanward sql``: ClickHouse's TabSeparated, or JSON objects.

TabSeparated is what ``clickhouse-client`` prints by default: no header, strings escaped
(backslash, tab, newline, quote...), arrays and tuples as ``['a','b']``, NULL as ``\\N``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "\t": "\\t",
        "\n": "\\n",
        "\r": "\\r",
        "\0": "\\0",
        "\b": "\\b",
        "\f": "\\f",
        "'": "\\'",
    }
)


def tab_separated(rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """One line (with its newline) per row."""
    for row in rows:
        yield "\t".join(_text(value) for value in row) + "\n"


def _text(value: Any, *, quoted: bool = False) -> str:
    if value is None:
        return "\\N" if not quoted else "NULL"
    if isinstance(value, str | bytes):
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        text = text.translate(_ESCAPES)
        return f"'{text}'" if quoted else text
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, datetime):
        return _quoted(value.strftime("%Y-%m-%d %H:%M:%S"), quoted)
    if isinstance(value, date):
        return _quoted(value.isoformat(), quoted)
    if isinstance(value, list):
        return "[" + ",".join(_text(item, quoted=True) for item in value) + "]"
    if isinstance(value, tuple):
        return "(" + ",".join(_text(item, quoted=True) for item in value) + ")"
    return _quoted(str(value), quoted and not isinstance(value, int | Decimal))


def _float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value).removesuffix(".0")


def _quoted(text: str, quoted: bool) -> str:
    return f"'{text}'" if quoted else text


def json_objects(names: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """A JSON array with one object per row, keyed by column name (NaN and infinity as null)."""
    return orjson.dumps(
        [dict(zip(names, row, strict=True)) for row in rows],
        default=str,
        option=orjson.OPT_INDENT_2,
    )
