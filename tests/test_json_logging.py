from __future__ import annotations

import io
import logging

import orjson

from ingest.ops.json_logging import JsonFormatter


def test_a_record_is_one_json_line_with_its_extra_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test.json_logging")
    log.addHandler(handler)
    try:
        log.warning("inserted %d rows", 5, extra={"rows": 5, "error": ValueError("x")})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    first, second = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert first == {
        "time": first["time"],
        "level": "warning",
        "logger": "test.json_logging",
        "message": "inserted 5 rows",
        "rows": 5,
        "error": "x",
    }
    assert first["time"].endswith("+00:00")
    assert second["level"] == "error"
    assert "RuntimeError: boom" in second["exception"]
