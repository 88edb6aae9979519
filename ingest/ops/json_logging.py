"""Log records as one JSON object per line: what a log shipper reads without parsing rules.

Fields passed with ``extra=`` become keys of the object, so
``log.info("inserted", extra={"rows": 100})`` prints
``{"time": "...", "level": "info", "logger": "...", "message": "inserted", "rows": 100}``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TextIO

import orjson

_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update((k, v) for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """JSON lines on ``stream`` (standard error by default) for every logger of the process."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
