"""Settings: one frozen dataclass, read once from ``SCANWARD_*`` variables and a TOML file.

Environment variables win over the file (``SCANWARD_CONFIG``), whose keys are the field names.
Every value is checked at start-up; an error names the variable to fix.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from fraud.policy import FraudPolicy
from ingest.events.partitions import MAX_PARTITIONS, Partitions
from rewards.member_token import MemberTokenSecret

ENV_PREFIX = "SCANWARD_"


SECRET_SETTINGS = frozenset({"admin_token", "keyring_secret", "member_token_secret"})
"""Settings whose values are never shown, not even in the error that refuses one; passwords in
URLs are hidden by ``hide_passwords``."""


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it (and shows no secret)."""


def hide_passwords(text: str) -> str:
    """``text`` with the password of every URL in it (URLs may be separated by ``,``, ``;`` or
    spaces, as server lists are) replaced by ``***``."""
    return re.sub(r"[^,;\s]+://[^,;\s]+", lambda found: _hide_password(found.group()), text)


def _hide_password(url: str) -> str:
    """The userinfo's password and any ``password=`` query value masked; the userinfo ends at the
    last ``@``, since a password may hold ``/``, ``?`` or ``#`` unescaped (the URL then fails
    to parse, and is shown in the error)."""
    scheme, _, rest = url.partition("://")
    credentials, at, address = rest.rpartition("@")
    if at and ":" in credentials:
        rest = f"{credentials.partition(':')[0]}:***@{address}"
    return scheme + "://" + _PASSWORD_PARAMETER.sub(r"\1***", rest)


_PASSWORD_PARAMETER = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError("must be between 1 and 65535")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be a non-negative integer")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"must be a {' or '.join(schemes)} URL with a host")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError("its port must be a number from 1 to 65535")
        return text.rstrip("/")

    return parse


def _urls(*schemes: str) -> Callable[[str], str]:
    """Comma-separated URLs (the nodes of a cluster, any of which will do), each checked."""
    one = _url(*schemes)

    def parse(text: str) -> str:
        urls = [one(part.strip()) for part in text.split(",") if part.strip()]
        if not urls:
            raise ValueError(f"must be a {' or '.join(schemes)} URL with a host")
        return ",".join(urls)

    return parse


def _clickhouse_topology(text: str) -> str:
    """One server's URL, or a cluster's (``ingest.warehouse.topology``): shards separated by
    ``;``, a shard's replicas by ``,``, all of one database."""
    one = _url("clickhouse", "clickhouses")
    shards = [[one(url.strip()) for url in shard.split(",")] for shard in text.split(";")]
    if len({urlsplit(url).path.strip("/") or "default" for s in shards for url in s}) > 1:
        raise ValueError("every server of a cluster must name the same database")
    return ";".join(",".join(shard) for shard in shards)


def _token(text: str) -> str:
    if len(text) < 16:
        raise ValueError("must be at least 16 characters")
    return text


def _text(text: str) -> str:
    return text


def _networks(text: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDR networks, checked here so a typo fails at start-up."""
    networks = tuple(part.strip() for part in text.split(",") if part.strip())
    for network in networks:
        ipaddress.ip_network(network, strict=False)
    return networks


def _partition_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_PARTITIONS:
        raise ValueError(f"must be 1 to {MAX_PARTITIONS}")
    return value


def _tiers(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise ValueError("must be between 1 and 100")
    return value


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        raise ValueError("must be true or false")
    return lowered in ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 8080
    redis_url: str | None = None
    clickhouse_url: str | None = None
    admin_token: str | None = None
    keyring_secret: str | None = None
    keyring_path: Path | None = None
    resolver_url: str = "https://id.scanward.example"
    max_batch_quantity: int = 10_000_000
    max_body_bytes: int = 65_536
    max_bulk_bytes: int = 8 * 1024 * 1024
    trusted_proxies: tuple[str, ...] = ()
    max_unsunk_events: int = 2_000_000
    scan_id_ttl_s: int = 86_400
    scan_partitions: int = 16
    """Hash tags the scan state and events are split into; a cluster wants a multiple of its
    masters (recorded in Redis at first start, see ``ingest.store.layout``)."""
    actor_partitions: int = 4
    """The same for the devices' and IPs' counters."""
    redis_wait_replicas: int = 0
    """Replicas that must hold a scan's writes before it is answered (Redis WAIT); 0: none."""
    redis_wait_timeout_ms: int = 100
    workers: int = 1
    sink_batch_rows: int = 100_000
    sink_flush_ms: int = 1_000
    access_log: bool = False
    header_timeout_s: int = 10
    """From a request's first byte to the end of its headers (8 KB at most; a slow mobile link
    sends them in 2 s, with two lost packets resent in 7)."""
    body_timeout_s: int = 30
    """From the end of a request's headers to the end of its body: a bulk body of
    ``max_bulk_bytes`` needs 280 KB/s, a scan's 2 KB/s."""
    idle_timeout_s: int = 75
    """A keep-alive connection between requests; longer than the 60 s after which load
    balancers and nginx drop their idle upstream connections, so none reuses one the API is
    closing."""
    max_connections: int = 10_000
    """Open connections per worker; at the cap a new one closes the longest-waiting idle or slow
    one, or is closed itself. Lowered to fit the process's descriptor limit."""
    alert_interval_s: int = 60
    fraud_policy: FraudPolicy = field(default_factory=FraudPolicy)
    member_tiers: int = 5
    """Members are of tier 0 to ``member_tiers - 1``; campaigns weight prizes by tier."""
    member_token_secret: MemberTokenSecret | None = None
    """The secrets (current, then previous) a brand signs member tokens with
    (``rewards.member_token``); without it every member token is invalid."""

    @property
    def partitions(self) -> Partitions:
        return Partitions(self.scan_partitions, self.actor_partitions)

    @property
    def keyring_file(self) -> Path:
        return self.keyring_path or self.data_dir / "keyring.bin"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the environment, over the TOML file ``SCANWARD_CONFIG`` names, if any."""
        env = os.environ if environ is None else environ
        raw: dict[str, tuple[str, str]] = {}  # field -> (where it came from, text)
        config_file = env.get(ENV_PREFIX + "CONFIG")
        if config_file:
            raw.update(_read_toml(Path(config_file)))
        for setting in fields(cls):
            name = ENV_PREFIX + setting.name.upper()
            if env.get(name):
                raw[setting.name] = (name, env[name])
        values: dict[str, Any] = {}
        for field_name, (source, text) in raw.items():
            try:
                values[field_name] = _PARSERS[field_name](text)
            except ValueError as error:
                shown = "" if field_name in SECRET_SETTINGS else f"={hide_passwords(text)!r}"
                raise ConfigError(f"{source}{shown}: {error}") from None
        return cls(**values)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_PARSERS: dict[str, Callable[[str], Any]] = {
    "data_dir": Path,
    "host": _text,
    "port": _port,
    "redis_url": _urls("redis", "rediss"),
    "clickhouse_url": _clickhouse_topology,
    "admin_token": _token,
    "keyring_secret": _text,
    "keyring_path": Path,
    "resolver_url": _url("https", "http"),
    "max_batch_quantity": _positive,
    "max_body_bytes": _positive,
    "max_bulk_bytes": _positive,
    "trusted_proxies": _networks,
    "max_unsunk_events": _positive,
    "scan_id_ttl_s": _positive,
    "scan_partitions": _partition_count,
    "actor_partitions": _partition_count,
    "redis_wait_replicas": _count,
    "redis_wait_timeout_ms": _positive,
    "workers": _positive,
    "sink_batch_rows": _positive,
    "sink_flush_ms": _positive,
    "access_log": _flag,
    "header_timeout_s": _positive,
    "body_timeout_s": _positive,
    "idle_timeout_s": _positive,
    "max_connections": _positive,
    "alert_interval_s": _positive,
    "fraud_policy": FraudPolicy.from_json,
    "member_tiers": _tiers,
    "member_token_secret": MemberTokenSecret.from_text,
}


def _read_toml(path: Path) -> dict[str, tuple[str, str]]:
    try:
        document = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{ENV_PREFIX}CONFIG={str(path)!r}: {error}") from None
    unknown = set(document) - set(_PARSERS)
    if unknown:
        raise ConfigError(f"{path}: unknown settings {', '.join(sorted(unknown))}")
    return {key: (f"{key} in {path}", _toml_text(value)) for key, value in document.items()}


def _toml_text(value: object) -> str:
    """TOML values as the text an environment variable would carry (lists comma-separated,
    tables as JSON)."""
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)
