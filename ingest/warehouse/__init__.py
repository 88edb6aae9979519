"""ClickHouse for analysts and operators: the client, the migrations, rollups and their rebuild,
the scans export, fraud alerts and the prize audit. Does not import ``http`` or ``scan``.

What other packages may use: ``connect``, ``describe`` (a ClickHouse error in one line) and
``open_alerts``.
"""

from ingest.warehouse.alerts import open_alerts
from ingest.warehouse.client import connect, describe

__all__ = ["connect", "describe", "open_alerts"]
