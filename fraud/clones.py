"""The cloned-code rules: one printed code showing up on several phones in impossible places,
or scanned far more often than one bottle is.

The first scanner of a code keeps the genuine verdict. A later scan from another device is a
clone when getting there from an earlier scan would have needed more than the configured speed,
or when the code has been on more devices than the configured limit. Any scan past the
configured count of a code's scans is ``overscanned``, whatever device it names or none: copies
of a code scanned by a farm or a script need no device ids to be caught.
"""

from __future__ import annotations

import math

from fraud.geo import haversine_km
from fraud.policy import FraudPolicy
from fraud.scan_record import NO_DEVICE, ScanRecord


def clone_flag(
    history: ScanRecord | None,
    now_ms: int,
    lat: float,
    lon: float,
    accuracy_m: float,
    device: bytes,
    policy: FraudPolicy,
) -> dict[str, object] | None:
    """``cloned`` with the numbers behind it, or None. A scan without a device id cannot be
    told apart from the first scanner's, but it can still be in an impossible place.

    The device limit does not count phones gathered where the code was scanned before: five
    friends scanning one bottle at a table are not five clones."""
    if history is None or (history.devices and device == history.devices[0]):
        return None
    new_device = device != NO_DEVICE and device not in history.devices
    earlier = [(history.first_ms, history.first_lat, history.first_lon)]
    if new_device or device == NO_DEVICE:  # the last scan was someone else's
        earlier.append((history.last_ms, history.last_lat, history.last_lon))
    slack_km = policy.clone_slack_km + (0.0 if math.isnan(accuracy_m) else accuracy_m / 1000)
    if (
        new_device
        and history.distinct_devices >= policy.clone_max_devices
        and not _near_any(lat, lon, earlier, slack_km)
    ):
        return {
            "flag": "cloned",
            "reason": "devices",
            "distinct_devices": history.distinct_devices + 1,
            "limit": policy.clone_max_devices,
        }
    fastest: dict[str, object] | None = None
    top_speed = policy.clone_speed_kmh
    for then_ms, then_lat, then_lon in earlier:
        if math.isnan(lat) or math.isnan(then_lat):
            continue
        distance = float(haversine_km(then_lat, then_lon, lat, lon))
        hours = max(now_ms - then_ms, policy.clone_min_interval_s * 1000) / 3_600_000
        speed = (distance - slack_km) / hours
        if speed > top_speed:
            top_speed = speed
            fastest = {
                "flag": "cloned",
                "reason": "travel",
                "distance_km": round(distance, 1),
                "minutes": round((now_ms - then_ms) / 60_000, 1),
                "speed_kmh": round(speed),
                "limit_kmh": policy.clone_speed_kmh,
            }
    return fastest


def overscan_flag(history: ScanRecord | None, policy: FraudPolicy) -> dict[str, object] | None:
    """``overscanned`` when this scan makes the code's count pass the limit, or None."""
    scans = 1 if history is None else history.scan_count + 1
    if scans <= policy.code_max_scans:
        return None
    return {"flag": "overscanned", "scans": scans, "limit": policy.code_max_scans}


def _near_any(
    lat: float, lon: float, places: list[tuple[int, float, float]], slack_km: float
) -> bool:
    """Within GPS slack of one of the earlier places (False when either place is unknown)."""
    return not math.isnan(lat) and any(
        not math.isnan(then_lat) and haversine_km(then_lat, then_lon, lat, lon) <= slack_km
        for _, then_lat, then_lon in places
    )
