"""ClickHouse clients from ``clickhouse://[user[:password]@]host[:port][/database]`` URLs.

The client connects lazily and reconnects by itself on the next query after a failure. Plain
Python columns, not ``use_numpy``: clickhouse-driver's numpy mode needs pandas, and its string
columns go through Python lists either way.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote, urlsplit

from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError

from ingest.warehouse.topology import Topology, server_address

CONNECT_TIMEOUT_S = 2
QUERY_TIMEOUT_S = 60
ERRORS = (ClickHouseError, OSError, EOFError)
"""What a query raises when its server is down, refuses it or fails it."""


def connect(url: str, timeout_s: float = QUERY_TIMEOUT_S) -> Any:
    """A ``clickhouse_driver.Client`` (untyped, hence ``Any``) for ``url``; of a cluster, for its
    first server and, while that one is down, the others in turn (any answers for the whole
    cluster through its Distributed tables). ``timeout_s`` bounds each network wait of a query."""
    servers = [server for shard in Topology.parse(url).shards for server in shard]
    url = servers[0]
    # The driver logs a traceback for every refused connection; callers report errors themselves.
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)
    parts = urlsplit(url)
    secure = parts.scheme == "clickhouses"
    return Client(
        parts.hostname,
        port=parts.port or (9440 if secure else 9000),
        database=parts.path.strip("/") or "default",
        user=unquote(parts.username or "default"),
        password=unquote(parts.password or ""),
        secure=secure,
        connect_timeout=CONNECT_TIMEOUT_S,
        alt_hosts=",".join(server_address(server) for server in servers[1:]),
        send_receive_timeout=timeout_s,
    )


def describe(error: BaseException) -> str:
    """One line for a ClickHouse error, without the stack trace server exceptions carry."""
    code = getattr(error, "code", None)
    message = str(getattr(error, "message", None) or error).split("Stack trace:")[0]
    first_line = (message.strip().splitlines() or [type(error).__name__])[0].rstrip(". ")
    return f"Code: {code}. {first_line}" if code is not None else first_line


def stored_columns(client: Any, table: str) -> list[tuple[str, str]]:
    """The (name, type) of the columns an insert into ``table`` gives, in table order."""
    # DESCRIBE, not system.columns: 18.16's has no column positions
    return [
        (name, kind)
        for name, kind, default_kind, *_ in client.execute(f"DESCRIBE TABLE {table}")
        if default_kind != "MATERIALIZED"
    ]
