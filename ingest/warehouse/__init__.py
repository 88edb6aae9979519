"""ClickHouse for analysts and operators: the client, the migrations, rollups and their rebuild,
the scans export, fraud alerts and the prize audit. May import ``events`` and the domain
packages.

What other packages may use: ``connect``, ``describe`` (a ClickHouse error in one line),
``open_alerts`` and ``open_alert_counts``.
"""

from ingest.warehouse.alerts import open_alert_counts, open_alerts
from ingest.warehouse.client import connect, describe

__all__ = ["connect", "describe", "open_alert_counts", "open_alerts"]
