"""A local ClickHouse cluster for `scanward up` and the tests: ZooKeeper (Debian's
``zookeeper`` package, run in the foreground by its own ``zkServer.sh``) and shards of replicas
of clickhouse-server on loopback, each under its own folder of the data directory.

Every server knows the whole cluster as ``CLUSTER`` in ``remote_servers`` (with
``internal_replication``: a row written to one replica of a shard reaches the others by
ReplicatedMergeTree, not by the Distributed engine), its own ``{shard}`` and ``{replica}``
macros for the replicated tables' ZooKeeper paths, and an interserver port for replicas to fetch
each other's parts. Every process is stopped by its PID.
"""

from __future__ import annotations

import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from ingest.ops.local_services import (
    ServerProcess,
    ServiceError,
    find_binary,
    free_port,
    spawn,
    start_clickhouse,
    wait_until_ready,
)
from ingest.warehouse.topology import CLUSTER

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
4lw.commands.whitelist=ruok
maxClientCnxns=0
"""


def start_zookeeper(data_dir: Path) -> ServerProcess:
    """A standalone ZooKeeper on a free loopback port; its url is ``zookeeper://127.0.0.1:P``."""
    find_binary("java", "zookeeper")
    if not Path(_ZK_SERVER).exists():
        raise ServiceError("ZooKeeper is not installed: run 'sudo apt-get install zookeeper'")
    folder = (data_dir / "zookeeper").resolve()
    (folder / "data").mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "zoo.cfg"
    config.write_text(_ZOO_CFG.format(folder=folder, port=port))
    environment_argv = ["env", f"ZOO_LOG_DIR={folder}", "ZOO_LOG4J_PROP=WARN,CONSOLE"]
    argv = [*environment_argv, _ZK_SERVER, "start-foreground", str(config)]
    process, log = spawn("zookeeper", argv, folder)
    server = ServerProcess("zookeeper", f"zookeeper://127.0.0.1:{port}", process, log)

    def answers() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"ruok")
            return connection.recv(16) == b"imok"

    wait_until_ready(answers, server)
    return server


@dataclass
class ClickHouseClusterServers:
    data_dir: Path
    zookeeper: ServerProcess
    ports: list[list[int]]
    """Each shard's replicas' TCP ports."""
    shards: list[list[ServerProcess]]
    """Each shard's replicas."""

    @property
    def url(self) -> str:
        """The topology as ``SCANWARD_CLICKHOUSE_URL`` takes it: shards separated by ``;``,
        a shard's replicas by ``,``."""
        return ";".join(",".join(server.url for server in shard) for shard in self.shards)

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
        self.zookeeper.stop()

    def _start(self, shard: int, replica: int) -> ServerProcess:
        return start_clickhouse(
            self.data_dir,
            folder_name=f"clickhouse-s{shard}r{replica}",
            tcp_port=self.ports[shard - 1][replica - 1],
            extra_config=_cluster_config(self.ports, self.zookeeper.url, shard, replica),
        )


def start_clickhouse_cluster(
    data_dir: Path, shards: int = 2, replicas: int = 2
) -> ClickHouseClusterServers:
    """ZooKeeper and ``shards`` shards of ``replicas`` servers each, all answering; on a failure,
    whatever started is stopped."""
    if shards < 1 or replicas < 1:
        raise ServiceError("a ClickHouse cluster needs at least one shard of one replica")
    zookeeper = start_zookeeper(data_dir)
    ports = [[free_port() for _ in range(replicas)] for _ in range(shards)]
    started = ClickHouseClusterServers(data_dir, zookeeper, ports, [])
    try:
        for shard in range(1, shards + 1):
            started.shards.append([])
            for replica in range(1, replicas + 1):
                started.shards[-1].append(started._start(shard, replica))
    except BaseException:
        started.stop()
        raise
    return started


def _cluster_config(ports: list[list[int]], zookeeper_url: str, shard: int, replica: int) -> str:
    zookeeper_port = zookeeper_url.rsplit(":", 1)[1]
    shards = "".join(
        "<shard><internal_replication>true</internal_replication>"
        + "".join(
            f"<replica><host>127.0.0.1</host><port>{port}</port>"
            f"<default_database>{DATABASE}</default_database></replica>"
            for port in shard_ports
        )
        + "</shard>"
        for shard_ports in ports
    )
    zookeeper = f"<node><host>127.0.0.1</host><port>{zookeeper_port}</port></node>"
    return f"""    <zookeeper>{zookeeper}</zookeeper>
    <remote_servers><{CLUSTER}>{shards}</{CLUSTER}></remote_servers>
    <macros><shard>{shard:02d}</shard><replica>r{replica}</replica></macros>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>{free_port()}</interserver_http_port>
"""
