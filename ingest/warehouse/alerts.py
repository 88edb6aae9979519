"""Aggregate fraud alerts: ClickHouse queries over a recent window of scans, written into
``fraud_alerts`` by ``INSERT ... SELECT`` (nothing crosses the network but the statements).
On a cluster the same statements read and write the Distributed tables (``GLOBAL IN``: a
subquery of one inside a query of one), and an alert's rows go to one shard, by its id.

Per-scan flags say what one scan looked like; an alert says where to look: a distributor's
batch leaking out of its territory, goods piling up in another region, a cloned code, a farm.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fraud.policy import FraudPolicy

ALERT_COLUMNS = (
    "alert_id",
    "kind",
    "distributor_id",
    "batch_id",
    "surfaced_in",
    "code",
    "device_id",
    "scans",
    "flagged",
    "share",
    "first_seen",
    "last_seen",
    "detected",
    "status",
)
_INSERT = f"INSERT INTO fraud_alerts ({', '.join(ALERT_COLUMNS)}) "
_RECENT = "time >= now() - %(window_s)s"
_LOCATED = f"{_RECENT} AND distributor_id != '' AND NOT has(flags, 'no_location')"


def _alert(kind: str, subject: str) -> str:
    """The leading columns of an alert row; its id is a hash of what it is about."""
    return f"lower(hex(cityHash64('{kind}', {subject}))), '{kind}'"


DETECTIONS = {
    "diversion_batch": f"""
SELECT {_alert("diversion_batch", "distributor_id, batch_id")}, distributor_id, batch_id,
    '', '', '', count() AS total, countIf(has(flags, 'out_of_territory')) AS diverted,
    diverted / total, min(time), max(time), now(), 'open'
FROM scans WHERE {_LOCATED}
GROUP BY distributor_id, batch_id
HAVING total >= %(min_scans)s AND diverted / total >= %(share)s
""",
    "diversion_region": f"""
SELECT {_alert("diversion_region", "distributor_id, surfaced_in")}, distributor_id, '',
    surfaced_in, '', '', total, here, here / total, first_seen, last_seen, now(), 'open'
FROM (
    SELECT distributor_id, surfaced_in, count() AS here, min(time) AS first_seen,
        max(time) AS last_seen
    FROM scans WHERE {_LOCATED} AND has(flags, 'out_of_territory')
    GROUP BY distributor_id, surfaced_in
) ANY LEFT JOIN (
    SELECT distributor_id, count() AS total FROM scans WHERE {_LOCATED} GROUP BY distributor_id
) USING distributor_id
WHERE total >= %(min_scans)s AND here / total >= %(share)s
""",
    "cloned_code": f"""
SELECT {_alert("cloned_code", "code")}, any(distributor_id), any(batch_id), '', code, '',
    count() AS total, countIf(has(flags, 'cloned')) AS cloned, cloned / total, min(time),
    max(time), now(), 'open'
FROM scans
WHERE {_RECENT} AND code GLOBAL IN (
    SELECT code FROM scans WHERE {_RECENT} AND has(flags, 'cloned'))
GROUP BY code
""",
    "device_farm": f"""
SELECT {_alert("device_farm", "device_id")}, '', '', '', '', device_id,
    count() AS total, countIf(has(flags, 'device_farm')) AS farmed, farmed / total, min(time),
    max(time), now(), 'open'
FROM scans
WHERE {_RECENT} AND device_id GLOBAL IN (
    SELECT device_id FROM scans WHERE {_RECENT} AND has(flags, 'device_farm'))
GROUP BY device_id
""",
}

_TIMES = ("first_seen", "last_seen", "detected")
# epoch seconds: the driver reads a DateTime as a naive time in the server's zone
_OPEN_COLUMNS = ", ".join(f"toUnixTimestamp({c})" if c in _TIMES else c for c in ALERT_COLUMNS)
_OPEN = f"""
SELECT {_OPEN_COLUMNS} FROM fraud_alerts FINAL
WHERE status = 'open' {{filters}}
ORDER BY last_seen DESC, alert_id LIMIT %(limit)s
"""

# the alerts a run wrote: every row it writes is stamped `detected` = now() at or after its start
_FOUND_SINCE = """
SELECT kind, uniqExact(alert_id) FROM fraud_alerts
WHERE detected >= toDateTime(%(started)s) GROUP BY kind
"""


def detect(client: Any, policy: FraudPolicy) -> dict[str, int]:
    """Writes every alert of the window (an alert found again replaces its earlier row);
    returns how many of each kind this run found."""
    parameters = {
        "window_s": policy.alert_window_s,
        "min_scans": policy.alert_min_scans,
        "share": policy.alert_share,
    }
    ((started,),) = client.execute("SELECT toUnixTimestamp(now())")
    for query in DETECTIONS.values():
        # on a cluster, stored on the shards before this returns, not queued to be forwarded
        client.execute(_INSERT + query, parameters, settings={"insert_distributed_sync": 1})
    return dict(client.execute(_FOUND_SINCE, {"started": started}))


_OPEN_BY_KIND = "SELECT kind, count() FROM fraud_alerts FINAL WHERE status = 'open' GROUP BY kind"


def open_alert_counts(client: Any) -> dict[str, int]:
    """How many alerts of each kind are open, every kind named (0 when none)."""
    counts = dict.fromkeys(DETECTIONS, 0)
    counts.update(client.execute(_OPEN_BY_KIND))
    return counts


def open_alerts(
    client: Any, limit: int, kind: str | None = None, distributor_id: str | None = None
) -> list[dict[str, Any]]:
    """The open alerts, newest activity first; ``kind`` and ``distributor_id`` narrow them."""
    filters, parameters = "", {"limit": limit, "kind": kind, "distributor_id": distributor_id}
    if kind is not None:
        filters += " AND kind = %(kind)s"
    if distributor_id is not None:
        filters += " AND distributor_id = %(distributor_id)s"
    rows = client.execute(_OPEN.format(filters=filters), parameters)
    alerts = [dict(zip(ALERT_COLUMNS, row, strict=True)) for row in rows]
    for alert in alerts:
        for name in _TIMES:
            moment = datetime.fromtimestamp(alert[name], UTC)
            alert[name] = moment.isoformat().replace("+00:00", "Z")
    return alerts
