"""A local ClickHouse cluster for `scanward up` and the tests: shards of replicas of
clickhouse-server on loopback and, when shards have replicas, ZooKeeper (Debian's ``zookeeper``
package, run in the foreground by its own ``zkServer.sh``), each under its own folder of the
cluster's folder of the data directory.

Every server knows the whole cluster as ``CLUSTER`` in ``remote_servers`` (with
``internal_replication``: a row written to one replica of a shard reaches the others by
ReplicatedMergeTree, not by the Distributed engine), its own ``{shard}`` and ``{replica}``
macros for the replicated tables' ZooKeeper paths, and an interserver port for replicas to fetch
each other's parts. The servers share one password (``start_clickhouse``'s, in the cluster's
folder): their ``default`` user's, with which ``remote_servers`` logs in, and the interserver
port's. Every process is stopped by its PID.

The cluster's folder is named by its shape (``clickhouse-cluster-2x2``): started again with the
same data directory and shape, the servers and ZooKeeper find their tables, rows and replication
metadata as they left them (on new ports, as one ClickHouse's restart does); another shape is
another cluster, in a folder of its own.
"""

from __future__ import annotations

import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from ingest.ops.local_services import (
    CLICKHOUSE_PASSWORD_FILE,
    ServerProcess,
    ServiceError,
    find_binary,
    free_port,
    private_folder,
    server_password,
    spawn,
    start_clickhouse,
    wait_until_ready,
    write_private,
)
from ingest.warehouse import client
from ingest.warehouse.topology import CLUSTER, server_address

DATABASE = "scanward"
"""The database the cluster's servers ask each other's tables in (``default_database`` in
``remote_servers``): a query sent to the shards resolves the unqualified tables of its joins and
subqueries there, so the schema lives in it."""
_ZK_SERVER = "/usr/share/zookeeper/bin/zkServer.sh"
_ZOO_CFG = """tickTime=500
initLimit=10
syncLimit=5
dataDir={folder}/data
clientPort={port}
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr
maxClientCnxns=0
"""


def start_zookeeper(data_dir: Path) -> ServerProcess:
    """A standalone ZooKeeper on a free loopback port; its url is ``zookeeper://127.0.0.1:P``."""
    find_binary("java", "zookeeper")
    if not Path(_ZK_SERVER).exists():
        raise ServiceError("ZooKeeper is not installed: run 'sudo apt-get install zookeeper'")
    folder = private_folder((data_dir / "zookeeper").resolve(), with_contents=True)
    (folder / "data").mkdir(mode=0o700, exist_ok=True)
    port = free_port()
    config = folder / "zoo.cfg"
    write_private(config, _ZOO_CFG.format(folder=folder, port=port))
    environment_argv = ["env", f"ZOO_LOG_DIR={folder}", "ZOO_LOG4J_PROP=WARN,CONSOLE"]
    argv = [*environment_argv, _ZK_SERVER, "start-foreground", str(config)]
    process, log = spawn("zookeeper", argv, folder)
    server = ServerProcess("zookeeper", f"zookeeper://127.0.0.1:{port}", process, log)

    def serving() -> bool:
        """``srvr`` names the server's mode only once it serves sessions: ``ruok`` says
        ``imok`` while a restart still loads its data, and a clickhouse-server that connects
        then exits on its refused handshake."""
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"srvr")
            reply = b""
            while chunk := connection.recv(4096):
                reply += chunk
            return b"\nMode: " in reply

    wait_until_ready(serving, server)
    return server


@dataclass
class ClickHouseClusterServers:
    folder: Path
    """The cluster's folder: a subfolder for each server and ZooKeeper."""
    zookeeper: ServerProcess | None
    """Only when shards have replicas: a shard of one server replicates nothing."""
    ports: list[list[int]]
    """Each shard's replicas' TCP ports."""
    shards: list[list[ServerProcess]]
    """Each shard's replicas."""
    password: str
    """Of every server's ``default`` user, with which they query each other."""

    @property
    def url(self) -> str:
        """The topology as ``SCANWARD_CLICKHOUSE_URL`` takes it, in ``DATABASE``: shards
        separated by ``;``, a shard's replicas by ``,``."""
        return ";".join(
            ",".join(_in_database(server.url) for server in shard) for shard in self.shards
        )

    def servers(self) -> list[ServerProcess]:
        return [server for shard in self.shards for server in shard]

    def restart(self, shard: int, replica: int) -> None:
        """Starts again (numbered from 1) a server that was stopped, on its port and folder."""
        self.shards[shard - 1][replica - 1].stop()
        self.shards[shard - 1][replica - 1] = self._start(shard, replica)

    def stop(self) -> None:
        """Every server at once (each takes seconds to let go of ZooKeeper), then ZooKeeper."""
        for server in self.servers():
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in self.servers():
            server.stop()
        if self.zookeeper is not None:
            self.zookeeper.stop()

    def _start(self, shard: int, replica: int) -> ServerProcess:
        zookeeper_url = None if self.zookeeper is None else self.zookeeper.url
        return start_clickhouse(
            self.folder,
            folder_name=f"clickhouse-s{shard}r{replica}",
            tcp_port=self.ports[shard - 1][replica - 1],
            extra_config=_cluster_config(self.ports, self.password, zookeeper_url, shard, replica),
        )


def start_clickhouse_cluster(
    data_dir: Path, shards: int = 2, replicas: int = 2
) -> ClickHouseClusterServers:
    """``shards`` shards of ``replicas`` servers each, with ZooKeeper when ``replicas`` > 1, in
    ``data_dir/clickhouse-cluster-<shards>x<replicas>``; returned once every server answers and
    has ``DATABASE``. On a failure, whatever started is stopped."""
    if shards < 1 or replicas < 1:
        raise ServiceError("a ClickHouse cluster needs at least one shard of one replica")
    private_folder(data_dir)
    folder = private_folder(data_dir / f"clickhouse-cluster-{shards}x{replicas}")
    password = server_password(folder, CLICKHOUSE_PASSWORD_FILE)
    zookeeper = start_zookeeper(folder) if replicas > 1 else None
    ports = [[free_port() for _ in range(replicas)] for _ in range(shards)]
    started = ClickHouseClusterServers(folder, zookeeper, ports, [], password)
    try:
        for shard in range(1, shards + 1):
            started.shards.append([])
            for replica in range(1, replicas + 1):
                started.shards[-1].append(started._start(shard, replica))
        for server in started.servers():
            _create_database(server.url)
    except BaseException:
        started.stop()
        raise
    return started


def _create_database(url: str) -> None:
    """``DATABASE`` on the server of ``url`` (it may hold it from an earlier run)."""
    connection = client.connect(url)
    try:
        connection.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    except client.ERRORS as error:
        raise ServiceError(
            f"cannot create {DATABASE} on {server_address(url)}: {client.describe(error)}"
        ) from None
    finally:
        connection.disconnect()


def _in_database(url: str) -> str:
    """A server's URL (in ``default``) naming ``DATABASE`` instead."""
    return f"{url.rsplit('/', 1)[0]}/{DATABASE}"


def _cluster_config(
    ports: list[list[int]], password: str, zookeeper_url: str | None, shard: int, replica: int
) -> str:
    shards = "".join(
        "<shard><internal_replication>true</internal_replication>"
        + "".join(
            f"<replica><host>127.0.0.1</host><port>{port}</port>"
            f"<user>default</user><password>{password}</password>"
            f"<default_database>{DATABASE}</default_database></replica>"
            for port in shard_ports
        )
        + "</shard>"
        for shard_ports in ports
    )
    zookeeper = ""
    if zookeeper_url is not None:
        node = f"<node><host>127.0.0.1</host><port>{zookeeper_url.rsplit(':', 1)[1]}</port></node>"
        zookeeper = f"    <zookeeper>{node}</zookeeper>\n"
    return f"""{zookeeper}    <remote_servers><{CLUSTER}>{shards}</{CLUSTER}></remote_servers>
    <macros><shard>{shard:02d}</shard><replica>r{replica}</replica></macros>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>{free_port()}</interserver_http_port>
    <interserver_http_credentials>
        <user>interserver</user><password>{password}</password>
    </interserver_http_credentials>
"""
