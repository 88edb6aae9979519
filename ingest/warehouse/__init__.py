"""ClickHouse for analysts and operators: the client, the migrations, rollups and their rebuild,
the scans export, fraud alerts and the prize audit. May import ``events`` and the domain
packages.

What other packages may use: ``connect``, ``describe`` (a ClickHouse error in one line) and
``open_alerts``.
"""

from ingest.warehouse.alerts import open_alerts
from ingest.warehouse.client import connect, describe

__all__ = ["connect", "describe", "open_alerts"]
