"""Private Redis (one server or a Redis Cluster) and ClickHouse processes on free loopback ports,
for `scanward up` and the tests.

Each server runs as a child process under its own folder of the data directory and is stopped
by its PID.  Nothing here needs root once the server packages are installed.

The servers are private to the user who starts them: Redis and ClickHouse want a password,
generated once into the data folder (``redis-password``, ``clickhouse-password``, 0600) and
carried by every URL handed out (print one through `masked_url`); the data folder and every
folder made here are 0700, the servers' files 0600 (they run with umask 077, and what an earlier
run left is made private again at each start).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import redis

from ingest.config import hide_passwords

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0
SERVICES_FILE = "services.json"
REDIS_PASSWORD_FILE = "redis-password"
CLICKHOUSE_PASSWORD_FILE = "clickhouse-password"
_PRIVATE_UMASK = 0o077
"""Of the servers started here: what they create is the user's alone (0600 files, 0700
folders)."""
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
        """0600: the URLs carry the servers' passwords."""
        write_private(data_dir / SERVICES_FILE, orjson.dumps(asdict(self)))

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


def masked_url(url: str) -> str:
    """``url`` (or a list of them, as the settings take) with each password shown as ``***``:
    for printing and logging."""
    return hide_passwords(url)


def private_folder(folder: Path, *, with_contents: bool = False) -> Path:
    """``folder``, made if missing (with its parents), and 0700; ``with_contents``: every
    folder in it too, each file 0600 (a server's folder as an earlier run, of any version, left
    it). Refused for a shared folder (sticky bit, as ``/tmp``), which must stay open to its
    other users."""
    folder.mkdir(parents=True, exist_ok=True)
    if folder.stat().st_mode & stat.S_ISVTX:
        raise ServiceError(f"{folder} is a shared folder: give scanward a folder of its own")
    folder.chmod(0o700)
    if not with_contents:
        return folder
    for root, folders, files in os.walk(folder):  # links are left alone, not followed
        for names, mode in ((folders, 0o700), (files, 0o600)):
            for path in (os.path.join(root, name) for name in names):
                if not os.path.islink(path):
                    os.chmod(path, mode)
    return folder


def write_private(path: Path, content: bytes | str) -> None:
    """``content`` into ``path``, which only its owner may read or write (0600), made so before
    a byte is written."""
    data = content.encode() if isinstance(content, str) else content
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(file.fileno(), 0o600)  # a file of an earlier run keeps its mode on O_CREAT
        file.write(data)


def server_password(data_dir: Path, name: str) -> str:
    """The password in ``data_dir/name``, generated (0600) at the first start and the same at
    every later one, so that URLs recorded earlier stay valid."""
    path = data_dir / name
    if not path.exists():
        candidate = data_dir / f".{name}.{os.getpid()}"
        write_private(candidate, secrets.token_urlsafe(24) + "\n")
        with contextlib.suppress(FileExistsError):  # another start made one meanwhile: it stands
            os.link(candidate, path)  # whole or not at all
        candidate.unlink()
    path.chmod(0o600)
    password = path.read_text().strip()
    if not password:
        raise ServiceError(f"{path} is empty: delete it and start again")
    return password


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


def spawn(name: str, argv: list[str], folder: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """``argv`` in a session of its own in ``folder``, its output in ``folder/<name>.out``
    (0600), with umask 077: what it creates is private."""
    log = folder / f"{name}.out"
    log.touch(mode=0o600)
    log.chmod(0o600)
    with log.open("ab") as output:
        process = subprocess.Popen(
            argv,
            cwd=folder,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            umask=_PRIVATE_UMASK,
        )
    return process, log


def wait_until_ready(ready: Callable[[], bool], server: ServerProcess) -> None:
    """Until ``ready()`` (an ``OSError`` counts as not yet); a one-line ``ServiceError`` if the
    server exits first or takes longer than a start may. The server is stopped on any failure,
    Ctrl-C included: its caller never got it, so nothing else would stop it."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise _exited(server, "at start")
            with contextlib.suppress(OSError):
                if ready():
                    return
            time.sleep(0.05)
        raise ServiceError(f"{server.name} did not answer within {_START_TIMEOUT_S:.0f} s")
    except BaseException:
        server.stop()
        raise


def _exited(server: ServerProcess, when: str) -> ServiceError:
    """One line: the server's name and the last line it logged, which says why in Redis."""
    lines = server.log.read_text(errors="replace").strip().splitlines()
    last = f": {lines[-1].strip()}" if lines else ""
    return ServiceError(f"{server.name} exited {when}{last} (see {server.log})")


def _spawn_redis(
    binary: str, name: str, url: str, port: int, folder: Path, *options: str
) -> ServerProcess:
    """One redis-server on 127.0.0.1:``port``, its data and log in ``folder``, wanting the
    password of ``url`` (``requirepass``, and ``masterauth`` for a replica to its primary, in a
    0600 ``redis.conf``: an argument would show in ``ps``), appending every write to its file
    and syncing it before replying (``appendfsync always``: under ``everysec`` a crash can lose
    writes already answered, see deploy/README.md, Durability), with ``options`` after those;
    not yet waited for."""
    private_folder(folder, with_contents=True)
    password = _password_of(url)
    config = folder / "redis.conf"
    write_private(config, f"requirepass {password}\nmasterauth {password}\n")
    argv = [binary, str(config), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    argv += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    argv += ["--daemonize", "no", "--logfile", "", *options]
    process, log = spawn("redis", argv, folder)
    return ServerProcess(name, url, process, log)


def _wait_for_redis(server: ServerProcess, port: int) -> None:
    """Until the server answers PING once logged in (``-LOADING`` while it reads its files)."""
    password = _password_of(server.url).encode()
    login = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password)

    def answers() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(login + b"PING\r\n")
            replies = b""
            while replies.count(b"\r\n") < 2 and (chunk := connection.recv(256)):
                replies += chunk
            return replies.endswith(b"+PONG\r\n")

    wait_until_ready(answers, server)


def _password_of(url: str) -> str:
    password = urlsplit(url).password
    if not password:
        raise ServiceError(f"{masked_url(url)} names no password")
    return password


def start_redis(data_dir: Path, *, appendfsync: str = "always") -> ServerProcess:
    """One redis-server under ``<data_dir>/redis``; ``appendfsync`` is its AOF fsync policy
    (``always``, ``everysec`` or ``no``; see deploy/README.md, Durability)."""
    if appendfsync not in ("always", "everysec", "no"):
        raise ServiceError(f"appendfsync must be always, everysec or no, not {appendfsync!r}")
    binary = find_binary("redis-server", "redis-server")
    port = free_port()
    password = server_password(private_folder(data_dir), REDIS_PASSWORD_FILE)
    folder = (data_dir / "redis").resolve()
    url = f"{_node_url(port, password)}/0"
    server = _spawn_redis(binary, "redis-server", url, port, folder, "--appendfsync", appendfsync)
    _wait_for_redis(server, port)
    return server


_BUS_PORT_OFFSET = 10_000
"""A cluster node talks to the others on its port + 10000, so its own port is at most 55535."""
_MAX_CLUSTER_PORT = 65_535 - _BUS_PORT_OFFSET
_CLUSTER_SLOTS = 16_384
_CLUSTER_OPTIONS = (
    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
    *("--cluster-node-timeout", "2000"),
    *("--repl-diskless-sync-delay", "0"),  # a replica's first sync at once, not after 5 s
    # a primary down stops only its own slots, not the whole cluster
    *("--cluster-require-full-coverage", "no"),
    # replicas stay with their primary: one moved to a primary left without any would leave
    # its old one a replica short for good, refusing every scan that waits for all its replicas
    *("--cluster-allow-replica-migration", "no"),
)
_NOT_IN_SLOT_MAP = frozenset({"fail", "fail?", "handshake", "noaddr"})
"""The flags of a node the slot map leaves out: failed (or suspected by the node asked), or not
yet met."""

_SlotMap = dict[int, tuple[tuple[tuple[int, int], ...], frozenset[int]]]
"""A primary's port: its slot ranges and its replicas' ports."""


@dataclass
class RedisClusterServers:
    """A local Redis Cluster: one `ServerProcess` a node, each stopped, killed or restarted by
    its PID.  ``url`` lists every node as ``redis://:<password>@127.0.0.1:<port>``, joined by
    commas without spaces: the form scanward's cluster connection parses."""

    nodes: list[ServerProcess]
    server_binary: str
    password: str
    """Every node's, and each replica's to its primary."""

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def primaries(self) -> list[str]:
        """The URLs of the primaries holding slots, by port, as the first running node that
        answers sees them now: a failover promotes a replica, so they are asked, not remembered."""
        for node in self._running():
            with contextlib.suppress(redis.RedisError):
                return [self.url_at(port) for port in sorted(_view(node).slot_map)]
        raise ServiceError("no node of the Redis cluster answers")

    def url_at(self, port: int) -> str:
        """The URL of the node on ``port`` (as ``CLUSTER`` replies name it), password included."""
        return _node_url(port, self.password)

    def node(self, url: str) -> ServerProcess:
        for node in self.nodes:
            if node.url == url:
                return node
        raise ServiceError(f"{masked_url(url)} is not a node of this Redis cluster")

    def kill(self, url: str) -> None:
        """SIGKILL to the node's PID: a crash, with no shutdown and no last write to its files."""
        process = self.node(url).process
        process.kill()
        process.wait()

    def restart(self, url: str) -> ServerProcess:
        """The killed or stopped node again, on its port and folder: it rejoins the cluster from
        its nodes.conf (as a replica if a failover replaced it).  Returns once it answers PING;
        `wait_until_ok` waits until the cluster has taken it back."""
        stopped = self.node(url)
        if stopped.process.poll() is None:
            raise ServiceError(f"{stopped.name} is running: kill or stop it before a restart")
        folder, port = stopped.log.parent, _port_of(url)
        node = _spawn_redis(self.server_binary, stopped.name, url, port, folder, *_CLUSTER_OPTIONS)
        self.nodes[self.nodes.index(stopped)] = node
        _wait_for_redis(node, port)
        return node

    def wait_until_ok(self, timeout_s: float = _START_TIMEOUT_S) -> None:
        """Until every running node reports ``cluster_state:ok`` and all see one slot map that
        covers the 16384 slots and holds every running node and no failed one.  A node that
        stops meanwhile is an error."""
        running = self._running()
        deadline = time.monotonic() + timeout_s
        while (problem := self._problem(running)) is not None:
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"the Redis cluster is not ok after {timeout_s:.0f} s: {problem}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Every node by its PID: SIGTERM, SIGKILL if it has not exited in time."""
        for node in self.nodes:
            node.stop()

    def _running(self) -> list[ServerProcess]:
        return [node for node in self.nodes if node.process.poll() is None]

    def _problem(self, running: list[ServerProcess]) -> str | None:
        """What keeps the cluster from being ok, naming the node where there is one."""
        if not running:
            raise ServiceError("no node of the Redis cluster runs")
        views = []
        for node in running:
            if node.process.poll() is not None:
                raise _exited(node, "while waiting for cluster_state:ok")
            try:
                view = _view(node)
            except redis.RedisError as error:
                return f"{node.name} does not answer ({error})"
            if view.state != "ok":
                return f"{node.name} reports cluster_state:{view.state}"
            if not view.synced:
                return f"{node.name} has not synchronised with its primary"
            views.append(view)
        slot_map = views[0].slot_map
        for node, view in zip(running, views, strict=True):
            if view.slot_map != slot_map:
                return f"{node.name} and {running[0].name} see different slot maps"
        in_map = set(slot_map) | {port for _, replicas in slot_map.values() for port in replicas}
        for node in running:
            if _port_of(node.url) not in in_map:
                return f"{node.name} is not in the slot map"
        if gone := in_map - {_port_of(node.url) for node in running}:
            return f"the slot map still has 127.0.0.1:{min(gone)}, which does not run"
        covered = sum(end - start + 1 for ranges, _ in slot_map.values() for start, end in ranges)
        if covered != _CLUSTER_SLOTS:
            return f"{covered} of {_CLUSTER_SLOTS} slots are assigned"
        return None


def start_redis_cluster(data_dir: Path, masters: int = 3, replicas: int = 0) -> RedisClusterServers:
    """``masters`` primaries with ``replicas`` replicas each, formed by ``redis-cli --cluster
    create`` and ok (see `RedisClusterServers.wait_until_ok`).  Each node starts empty in
    ``<data_dir>/redis-cluster/<port>/``: a new cluster each time, its data not kept across runs
    (its ports are new).  On any failure every node started is stopped."""
    if masters < 3 or replicas < 0:
        raise ServiceError("a Redis cluster needs 3 or more masters and 0 or more replicas")
    binary = find_binary("redis-server", "redis-server")
    cli = find_binary("redis-cli", "redis-tools")
    password = server_password(private_folder(data_dir), REDIS_PASSWORD_FILE)
    cluster = RedisClusterServers([], binary, password)
    private_folder(data_dir / "redis-cluster")
    try:
        for port in _cluster_ports(masters * (1 + replicas)):
            folder = (data_dir / "redis-cluster" / str(port)).resolve()
            shutil.rmtree(folder, ignore_errors=True)  # a node of an earlier cluster on this port
            name = f"redis cluster node 127.0.0.1:{port}"
            url = cluster.url_at(port)
            node = _spawn_redis(binary, name, url, port, folder, *_CLUSTER_OPTIONS)
            cluster.nodes.append(node)
        for node in cluster.nodes:
            _wait_for_redis(node, _port_of(node.url))
        _create_cluster(cli, cluster, replicas)
        cluster.wait_until_ok()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _create_cluster(cli: str, cluster: RedisClusterServers, replicas: int) -> None:
    """``redis-cli --cluster create``: slots spread over the primaries, replicas assigned, and
    the nodes introduced to each other; it returns once they have all met.  The password goes
    in ``REDISCLI_AUTH``, not on the command line, which any user may read."""
    addresses = [f"127.0.0.1:{_port_of(node.url)}" for node in cluster.nodes]
    argv = [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas)]
    try:
        result = subprocess.run(
            [*argv, "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "REDISCLI_AUTH": cluster.password},
        )
    except subprocess.TimeoutExpired:
        raise ServiceError(
            f"redis-cli --cluster create took over {_START_TIMEOUT_S:.0f} s"
        ) from None
    if result.returncode != 0:
        lines = (result.stdout + result.stderr).strip().splitlines() or ["no output"]
        reason = next((line for line in reversed(lines) if "ERR" in line), lines[-1])
        raise ServiceError(f"redis-cli --cluster create failed: {reason.strip()}")


@dataclass(frozen=True, slots=True)
class _NodeView:
    """What one node says of the cluster."""

    state: str | None
    synced: bool
    """A primary, or a replica whose link to its primary is up (it can take over)."""
    slot_map: _SlotMap


def _view(node: ServerProcess) -> _NodeView:
    with redis.Redis.from_url(node.url, socket_timeout=1, decode_responses=True) as client:
        info = str(client.execute_command("CLUSTER", "INFO"))
        nodes = str(client.execute_command("CLUSTER", "NODES"))
        replication = client.info("replication")
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    state = fields.get("cluster_state")
    synced = replication["role"] == "master" or replication["master_link_status"] == "up"
    return _NodeView(state, synced, _slot_map(nodes))


def _slot_map(cluster_nodes: str) -> _SlotMap:
    """The primaries holding slots in a reply of CLUSTER NODES, with their replicas; failed and
    unmet nodes left out."""
    ranges: dict[str, tuple[int, tuple[tuple[int, int], ...]]] = {}
    replicas: dict[str, set[int]] = {}
    for line in cluster_nodes.splitlines():
        fields = line.split()  # id ip:port@bus flags primary ping pong epoch link slots...
        node_id, address, flags, primary_id = fields[:4]
        node_flags = set(flags.split(","))
        if node_flags & _NOT_IN_SLOT_MAP:
            continue
        port = _port_of(address.split("@")[0])
        if "master" not in node_flags:
            replicas.setdefault(primary_id, set()).add(port)
            continue
        spans = [slot.split("-") for slot in fields[8:] if not slot.startswith("[")]  # [migrating]
        if spans:
            ranges[node_id] = (port, tuple((int(span[0]), int(span[-1])) for span in spans))
    return {
        port: (spans, frozenset(replicas.get(node_id, ())))
        for node_id, (port, spans) in ranges.items()
    }


def _node_url(port: int, password: str) -> str:
    return f"redis://:{password}@127.0.0.1:{port}"


def _port_of(address: str) -> int:
    """The port of a URL or ``host:port``."""
    return int(address.rsplit(":", 1)[1])


def _cluster_ports(count: int) -> list[int]:
    """Free ports up to 55535 whose bus ports are free too, none another's bus port."""
    chosen: list[int] = []
    taken: set[int] = set()
    for _ in range(100 * count):
        port = free_port()
        bus = port + _BUS_PORT_OFFSET
        if port <= _MAX_CLUSTER_PORT and not {port, bus} & taken and _can_bind(bus):
            chosen.append(port)
            taken |= {port, bus}
            if len(chosen) == count:
                return chosen
    raise ServiceError(f"found no {count} free ports whose port + {_BUS_PORT_OFFSET} is free too")


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


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
    <umask>077</umask>
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
{extra}</yandex>
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
            <password_sha256_hex>{password_sha256}</password_sha256_hex>
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


def start_clickhouse(
    data_dir: Path, *, folder_name: str = "clickhouse", tcp_port: int = 0, extra_config: str = ""
) -> ServerProcess:
    """A clickhouse-server under ``data_dir/folder_name`` whose ``default`` user wants the
    password of ``data_dir/clickhouse-password`` (its hash in ``users.xml``; the servers of a
    cluster, under one ``data_dir``, share it); ``extra_config``: more elements of its
    ``config.xml`` (a cluster's ZooKeeper, shards and macros)."""
    binary = find_binary("clickhouse-server", "clickhouse-server")
    password = server_password(private_folder(data_dir), CLICKHOUSE_PASSWORD_FILE)
    folder = private_folder((data_dir / folder_name).resolve(), with_contents=True)
    for sub in ("log", "data", "tmp", "user_files", "format_schemas"):
        (folder / sub).mkdir(mode=0o700, exist_ok=True)
    tcp_port, http_port = tcp_port or free_port(), free_port()
    password_sha256 = hashlib.sha256(password.encode()).hexdigest()
    write_private(folder / "users.xml", _CLICKHOUSE_USERS.format(password_sha256=password_sha256))
    config = folder / "config.xml"
    write_private(
        config,
        _CLICKHOUSE_CONFIG.format(
            folder=folder, tcp_port=tcp_port, http_port=http_port, extra=extra_config
        ),
    )
    argv = ["nice", "-n", str(BACKGROUND_NICENESS), binary, f"--config-file={config}"]
    process, log = spawn(folder_name, argv, folder)
    url = f"clickhouse://default:{password}@127.0.0.1:{tcp_port}/default"
    server = ServerProcess("clickhouse-server", url, process, log)

    def answers() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/ping", timeout=1) as reply:
            return bool(reply.read().startswith(b"Ok"))

    wait_until_ready(answers, server)
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
