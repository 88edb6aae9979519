"""Private Redis and ClickHouse processes on free loopback ports, for `scanward up` and the tests.

Each server runs as a child process under its own folder of the data directory and is stopped
by its PID.  Nothing here needs root once the server packages are installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0
SERVICES_FILE = "services.json"
BACKGROUND_NICENESS = 10
"""Of the sink and a local ClickHouse: on a box they share with the API, a scan's answer should
not wait while they write a batch (with the machine idle, they run as fast either way)."""


class ServiceError(RuntimeError):
    """A local server could not be found, started or reached."""


@dataclass(frozen=True, slots=True)
class ServiceAddresses:
    """Where the services of one data folder answer; recorded by `scanward up`."""

    redis_url: str
    clickhouse_url: str
    api_url: str | None = None

    def save(self, data_dir: Path) -> None:
        (data_dir / SERVICES_FILE).write_bytes(orjson.dumps(asdict(self)))

    @classmethod
    def load(cls, data_dir: Path) -> ServiceAddresses | None:
        path = data_dir / SERVICES_FILE
        try:
            recorded = orjson.loads(path.read_bytes())
            return cls(recorded["redis_url"], recorded["clickhouse_url"], recorded.get("api_url"))
        except FileNotFoundError:
            return None
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ServiceError(f"{path} is damaged: delete it and run 'scanward up'") from None


@contextlib.contextmanager
def data_folder_lock(data_dir: Path) -> Iterator[None]:
    """Held by `scanward up`: two stacks must not share one Redis folder and services file."""
    with (data_dir / "up.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServiceError(f"another 'scanward up' is using {data_dir}") from None
        yield


def find_binary(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if path is None:
        raise ServiceError(f"{name} is not installed: run 'sudo apt-get install {package}'")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _spawn(name: str, argv: list[str], folder: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = folder / f"{name}.out"
    with log.open("ab") as output:
        process = subprocess.Popen(
            argv,
            cwd=folder,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return process, log


def _wait_until(ready: Callable[[], bool], server: ServerProcess) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log.read_text(errors="replace")[-2000:]
            raise ServiceError(f"{server.name} exited at start (see {server.log}):\n{tail}")
        with contextlib.suppress(OSError):
            if ready():
                return
        time.sleep(0.05)
    server.stop()
    raise ServiceError(f"{server.name} did not answer within {_START_TIMEOUT_S:.0f} s")


def start_redis(data_dir: Path) -> ServerProcess:
    binary = find_binary("redis-server", "redis-server")
    folder = (data_dir / "redis").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process, log = _spawn(
        "redis",
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ],
        folder,
    )
    server = ServerProcess("redis-server", f"redis://127.0.0.1:{port}/0", process, log)

    def answers() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")

    _wait_until(answers, server)
    return server


_CLICKHOUSE_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{folder}/log/clickhouse-server.log</log>
        <errorlog>{folder}/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp_port}</tcp_port>
    <http_port>{http_port}</http_port>
    <path>{folder}/data/</path>
    <tmp_path>{folder}/tmp/</tmp_path>
    <user_files_path>{folder}/user_files/</user_files_path>
    <format_schema_path>{folder}/format_schemas/</format_schema_path>
    <users_config>{folder}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
"""

_CLICKHOUSE_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


def start_clickhouse(data_dir: Path) -> ServerProcess:
    binary = find_binary("clickhouse-server", "clickhouse-server")
    folder = (data_dir / "clickhouse").resolve()
    for sub in ("log", "data", "tmp", "user_files", "format_schemas"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    tcp_port, http_port = free_port(), free_port()
    (folder / "users.xml").write_text(_CLICKHOUSE_USERS)
    config = folder / "config.xml"
    config.write_text(
        _CLICKHOUSE_CONFIG.format(folder=folder, tcp_port=tcp_port, http_port=http_port)
    )
    argv = ["nice", "-n", str(BACKGROUND_NICENESS), binary, f"--config-file={config}"]
    process, log = _spawn("clickhouse", argv, folder)
    server = ServerProcess(
        "clickhouse-server", f"clickhouse://127.0.0.1:{tcp_port}/default", process, log
    )

    def answers() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/ping", timeout=1) as reply:
            return bool(reply.read().startswith(b"Ok"))

    _wait_until(answers, server)
    return server


@contextlib.contextmanager
def running_services(data_dir: Path) -> Iterator[ServiceAddresses]:
    """Redis and ClickHouse for as long as the block runs; both stopped by PID afterwards."""
    servers: list[ServerProcess] = []
    try:
        servers.append(start_redis(data_dir))
        servers.append(start_clickhouse(data_dir))
        yield ServiceAddresses(servers[0].url, servers[1].url)
    finally:
        for server in reversed(servers):
            server.stop()
