"""The fraud rules' thresholds and verdict table: one frozen value, configurable as JSON.

``SCANWARD_FRAUD_POLICY='{"clone_speed_kmh": 1200, "verdicts": {"out_of_territory":
["suspicious", 2]}}'`` (or a ``[fraud_policy]`` table in the TOML file) overrides the defaults
named here; unknown keys are an error, so a typo fails at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import orjson

from fraud.errors import PolicyError
from fraud.verdicts import DEFAULT_RULINGS, Ruling, parse_rulings

_CHOICES = {"guess_ip_block": ("everyone", "new_devices")}


@dataclass(frozen=True, slots=True)
class FraudPolicy:
    # out_of_territory: outside by more than tolerance + factor x reported GPS accuracy
    territory_tolerance_km: float = 2.0
    territory_accuracy_factor: float = 3.0
    # no_location: a fix less precise than this is no location
    max_accuracy_m: float = 5_000.0
    # cloned: another device faster than this from an earlier scan, or more devices than this
    clone_speed_kmh: float = 900.0
    clone_max_devices: int = 4
    clone_min_interval_s: float = 60.0  # clock and batching jitter: shorter gaps count as this
    clone_slack_km: float = 1.0  # plus the reported accuracy: how far GPS can put one place
    # device_farm
    farm_codes_per_hour: int = 60
    farm_members_per_day: int = 5
    # overscanned: a code scanned more often than this, whoever sends it (world: 8 at most)
    code_max_scans: int = 50
    # guessing: invalid codes (scans, and checks of GET /v1/codes) in a sliding window; past
    # the block limit, 429 for the cool-down
    guess_window_s: int = 600
    guess_flag_device: int = 10
    guess_block_device: int = 30
    guess_flag_ip: int = 100
    guess_block_ip: int = 300
    guess_cooldown_s: int = 900
    # whom an address blocked for guessing refuses: "everyone" behind it (a household's phones
    # too, for the cool-down), or "new_devices": scans without a device and from devices that
    # scanned no valid code there that UTC day (the others go on, counted toward the ceiling)
    guess_ip_block: str = "new_devices"
    # address_farm, per client address (an IPv6 /64) and UTC day: valid scans, distinct devices
    # with valid scans (counted up to 256: 256 or more switches it off), valid scans without a
    # device (the synthetic world's honest addresses: at most 213, 8 and 0)
    address_flag_valid_per_day: int = 300
    address_flag_devices_per_day: int = 20
    address_flag_no_device_per_day: int = 20
    # every scan, valid or not: past this, 429 until the UTC day ends (Redis' memory bound)
    address_max_scans_per_day: int = 5_000
    # aggregate alerts: over this window, with at least this many scans, past this share
    alert_window_s: int = 86_400
    alert_min_scans: int = 20
    alert_share: float = 0.2
    verdicts: Mapping[str, Ruling] = field(default_factory=lambda: dict(DEFAULT_RULINGS))

    @classmethod
    def from_json(cls, text: str) -> FraudPolicy:
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            raise PolicyError(f"not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise PolicyError("must be a JSON object")
        return cls().with_overrides(document)

    def with_overrides(self, document: Mapping[str, Any]) -> FraudPolicy:
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for name, value in document.items():
            if name not in known:
                raise PolicyError(f"unknown key {name!r}")
            if name == "verdicts":
                if not isinstance(value, dict):
                    raise PolicyError("verdicts must be an object of flag: [verdict, risk]")
                changes[name] = parse_rulings(value)
                continue
            default = getattr(self, name)
            if isinstance(default, str):
                if value not in _CHOICES[name]:
                    raise PolicyError(f"{name} must be one of {', '.join(_CHOICES[name])}")
                changes[name] = value
                continue
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise PolicyError(f"{name} must be a non-negative number")
            if isinstance(default, int) and not isinstance(value, int):
                raise PolicyError(f"{name} must be an integer")
            changes[name] = type(default)(value)
        return replace(self, **changes)
