"""Security: JSON only on the wire and on disk, allow-listed functions, Redis AUTH and TLS for
every process, the metrics bind address, sealed messages both ways, and per-role ACL users."""

from __future__ import annotations

import ast
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

import fleet
from fleet.client import Client
from fleet.config import Settings
from fleet.controller import Controller
from fleet.controller.journal import Journal
from fleet.errors import JobNotFoundError, NoReceiptError
from fleet.keys import Keys
from fleet.localredis import find_redis_server, free_port
from fleet.protocol.signing import ACK, BEAT, CONTROL, INTAKE, Seal
from fleet.state import events as ev
from fleet.testing.cluster import LocalFleet, finished
from fleet.wal import open_log, write_snapshot
from fleet.wal.frame import HEADER
from fleet.wal.segments import list_segments, list_snapshots
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

KEYS = Keys("fleet")
PACKAGE = Path(fleet.__file__).parent
FAST = {"FLEET_HEARTBEAT_S": "0.2", "FLEET_LEASE_S": "3", "FLEET_ALLOW": "tests.jobs",
        "FLEET_BACKOFF_BASE_S": "0.05", "FLEET_RECEIPT_TIMEOUT_S": "10"}
SERIALISERS = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle",
               "jsonpickle"}
# The executor tells its own supervisor what it runs over an anonymous Pipe of one host (as
# multiprocessing.Connection does); nothing from Redis or the disk is ever unpickled.
LOCAL_PIPE_ONLY = {"worker/teller.py", "worker/handle.py"}


# -- JSON, never pickle --------------------------------------------------------------------


def _serialiser_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found & SERIALISERS


def test_no_module_on_the_wire_or_disk_path_imports_pickle_or_marshal():
    """No fleet module imports pickle, marshal or a kin of theirs, except the executor's local
    Pipe to its supervisor; the wire, WAL, snapshot, controller and client code never do."""
    users = {str(path.relative_to(PACKAGE)): _serialiser_imports(path)
             for path in PACKAGE.rglob("*.py")}
    users = {name: found for name, found in users.items() if found}
    assert set(users) <= LOCAL_PIPE_ONLY, users


def test_wal_frames_and_snapshots_hold_json(tmp_path):
    """Every WAL frame's payload and the snapshot header and body decode as JSON."""
    data_dir = str(tmp_path / "data")
    log = open_log(data_dir)
    journal = Journal(log.table, log.writer)
    for i in range(3):
        journal.record(ev.enqueued({"id": f"j{i}", "q": "default", "f": "tests.jobs:add",
                                    "a": [i, 1], "k": {"x": [1, None]}}, 1, 10, 1))
        journal.commit()
    write_snapshot(log.table, data_dir)
    files = log.writer.files
    log.close()
    (_, segment), = list_segments(files, data_dir)
    data, offset, frames = Path(segment).read_bytes(), 0, 0
    while offset < len(data):
        _, length, _ = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        assert isinstance(orjson.loads(data[start:start + length]), list)
        offset, frames = start + length, frames + 1
    assert frames == 3
    (_, snapshot), = list_snapshots(files, data_dir)
    header, body = Path(snapshot).read_bytes().split(b"\n", 1)
    assert orjson.loads(header)["format"] == "fleet-snapshot"
    assert isinstance(orjson.loads(body), dict)


# -- helpers: a redis-server with options of our own ---------------------------------------


class Server:
    """A redis-server started with ``args``; ready once ``url`` answers PING."""

    def __init__(self, args: list[str], url: str, workdir: Path) -> None:
        self.url = url
        self.log = open(workdir / "redis.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [find_redis_server(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir), *args], stdout=self.log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError((workdir / "redis.log").read_text())
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def _run_one_job_everywhere(local: LocalFleet, tag: str) -> None:
    """Controller, worker, `fleet enqueue`, `fleet status` and the Client all on ``local``."""
    local.controller()
    local.worker(1)
    done = local.cli("enqueue", "tests.jobs:add", "2", "3", "--id", tag)
    assert done.returncode == 0, done.stderr
    local.wait_for(finished(1), timeout_s=30)
    assert local.client().job(tag).result(timeout_s=10) == 5
    status = local.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    assert orjson.loads(status.stdout)["states"]["completed"] == 1


# -- Redis AUTH ----------------------------------------------------------------------------


def test_acl_user_and_password_in_the_url_work_for_every_process(tmp_path):
    """With requirepass and an ACL user, the user:password URL carries controller, worker, CLI
    and client; a wrong password is refused in one line with exit code 4."""
    port = free_port()
    server = Server(["--port", str(port), "--requirepass", "default-secret",
                     "--user", "fleetuser", "on", ">s3cret", "~*", "&*", "+@all"],
                    f"redis://fleetuser:s3cret@127.0.0.1:{port}/0", tmp_path)
    local = LocalFleet(server.url, workdir=str(tmp_path), env=FAST)
    try:
        _run_one_job_everywhere(local, "auth-1")
        wrong = local.cli("status", "--redis-url", f"redis://fleetuser:nope@127.0.0.1:{port}/0")
        assert wrong.returncode == 4 and "Traceback" not in wrong.stderr
        assert wrong.stderr.strip().count("\n") == 0 and "credentials" in wrong.stderr
        anonymous = local.cli("status", "--redis-url", f"redis://127.0.0.1:{port}/0")
        assert anonymous.returncode == 4 and "Traceback" not in anonymous.stderr
    finally:
        local.stop_all()
        server.stop()


# -- TLS -----------------------------------------------------------------------------------


def _make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl CLI to make a test certificate")
    ca_key, ca, key, csr, cert = (directory / n for n in
                                  ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for args in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=fleet test CA"],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ):
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True)
    return ca, cert, key


def _tls_server(tmp_path: Path) -> Server:
    ca, cert, key = _make_certificates(tmp_path)
    port = free_port()
    args = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
            "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required"
    try:
        return Server(args, url, tmp_path)
    except RuntimeError as exc:
        if "tls" in str(exc).lower():
            pytest.skip(f"this redis-server was built without TLS: {str(exc).strip()[-200:]}")
        raise


def test_rediss_url_with_the_test_ca_works_for_every_process(tmp_path):
    """Over TLS (rediss:// with ?ssl_ca_certs=), controller, worker, CLI and client all work;
    a client that does not trust the CA fails in one line with exit code 4."""
    server = _tls_server(tmp_path)
    local = LocalFleet(server.url, workdir=str(tmp_path), env=FAST)
    try:
        _run_one_job_everywhere(local, "tls-1")
        untrusting = local.cli("status", "--redis-url", server.url.split("?")[0])
        assert untrusting.returncode == 4, untrusting.stderr
        assert "Traceback" not in untrusting.stderr and "certificate" in untrusting.stderr
        assert untrusting.stderr.strip().count("\n") == 0
    finally:
        local.stop_all()
        server.stop()


# -- metrics bind address ------------------------------------------------------------------


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def test_metrics_listen_only_on_the_configured_metrics_host(redis_url, tmp_path):
    """The metrics port binds to ``metrics_host`` (loopback by default), not every address,
    and counts what the controller drops."""
    assert Settings().metrics_host == "127.0.0.1"
    port = free_port()
    ctl = Controller(Settings(redis_url=redis_url, data_dir=str(tmp_path / "data"),
                              metrics_host="127.0.0.2", metrics_port=port, heartbeat_s=0.05),
                     fork_snapshots=False)
    try:
        ctl.start()
        assert "fleet_wal_disk_full 0.0" in _get(f"http://127.0.0.2:{port}/metrics")
        assert _get(f"http://127.0.0.2:{port}/healthz").startswith("ok")
        with pytest.raises(urllib.error.URLError):
            _get(f"http://127.0.0.1:{port}/metrics")
        redis.Redis.from_url(redis_url).rpush(KEYS.intake, b"not json")
        dropped = 'fleet_malformed_messages_total{source="intake"} 1.0'
        deadline = time.monotonic() + 10
        while dropped not in _get(f"http://127.0.0.2:{port}/metrics"):
            assert time.monotonic() < deadline, "the dropped request was never counted"
            ctl.step()
            time.sleep(0.01)
    finally:
        ctl.close()


# -- the allow-list and signatures, through real processes ---------------------------------


def _acks_of(local: LocalFleet, job_id: str, timeout_s: float = 20) -> dict:
    return wait_until(lambda: local.client().job(job_id).info(), timeout_s,
                      until=lambda info: info["state"] in ("dead", "completed"),
                      what=f"{job_id} finished", poll_s=0.1)


def test_forged_messages_never_run_a_function_outside_the_allow_list(redis_url, tmp_path):
    """Messages written straight into Redis naming os:system, or reaching os through an
    allowed module, are refused with NotAllowed; the command never runs."""
    local = LocalFleet(redis_url, workdir=str(tmp_path), env=FAST)
    marker = tmp_path / "pwned"
    r = redis.Redis.from_url(redis_url)
    try:
        local.controller()
        local.worker(1)
        for job_id, func in (("direct", "os:system"), ("hop", "tests.jobs.os.system"),
                             ("hop-colon", "tests.jobs:os.system")):
            local.client().enqueue(func, f"touch {marker}", job_id=job_id, max_retries=2)
            info = _acks_of(local, job_id)
            assert info["state"] == "dead" and info["attempt"] == 1, info
            assert info["error"].startswith("NotAllowed:"), info
        before = local.client().status()["stale_acks"]
        forged = {"id": "forged", "n": 1, "f": "os:system", "a": [f"touch {marker}"], "k": {},
                  "to": 5, "q": "default", "eq": 0, "ts": 0}
        r.rpush(KEYS.ready("default"), orjson.dumps(forged))
        local.wait_for(lambda s: s["stale_acks"] > before, timeout_s=20)
        assert not marker.exists()
    finally:
        local.stop_all()


# -- seals on every message, through real processes ----------------------------------------

KEY = "k" * 32
SIGNED = {**FAST, "FLEET_SIGNING_KEY": KEY}


def _rejected(local: LocalFleet, source: str) -> int:
    return local.client().status()["rejected_signatures"][source]


def _wait_state(local: LocalFleet, job_id: str, state: str, timeout_s: float = 20) -> dict:
    return wait_until(lambda: local.client().job(job_id).info(), timeout_s,
                      until=lambda info: info["state"] == state, what=f"{job_id} {state}")


def _forged_seal(body: dict, kind: bytes, key: bytes = b"guessed") -> bytes:
    return Seal((key,), kind, "fleet").seal(orjson.dumps(body), int(time.time() * 1000))


def test_forged_acks_heartbeats_intake_and_control_are_rejected_counted_and_never_applied(
        redis_url, tmp_path):
    """With signing on, acks, heartbeats, intake and control requests written straight into
    Redis (unsigned, or sealed with a guessed key) are each rejected and counted; the running
    job keeps its real result, a dead job is not purged, no forged job exists."""
    local = LocalFleet(redis_url, workdir=str(tmp_path), env=SIGNED)
    r = redis.Redis.from_url(redis_url)
    try:
        local.controller()
        local.worker(1)
        client = local.client()
        client.enqueue("tests.jobs:fail", "real", job_id="dead-one", max_retries=0)
        _wait_state(local, "dead-one", "dead")
        client.enqueue("tests.jobs:sleep_s", 1.5, job_id="victim")
        _wait_state(local, "victim", "in_flight")
        ack = {"id": "victim", "n": 1, "o": "ok", "r": "FORGED", "w": "x", "h": "x",
               "st": 1, "ft": 2}
        r.rpush(KEYS.acks, orjson.dumps(ack), _forged_seal(ack, ACK))
        beat = {"id": "forger", "host": "x", "pid": 1, "ts": int(time.time() * 1000),
                "executors": 1, "busy": 1, "queues": ["default"], "jobs": [["victim", 1, 1]]}
        r.sadd(KEYS.workers, "forger")
        r.set(KEYS.worker("forger"), _forged_seal(beat, BEAT), ex=60)
        request = {"req": "forged-req", "ts": int(time.time() * 1000),
                   "jobs": [{"id": "forged-job", "f": "tests.jobs:add", "a": [1, 1]}]}
        r.rpush(KEYS.intake, orjson.dumps(request), _forged_seal(request, INTAKE))
        for cmd, args in (("cancel", {"ids": ["victim"]}), ("dead_purge", {})):
            control = {"req": f"forged-{cmd}", "cmd": cmd, "args": args}
            r.rpush(KEYS.control, orjson.dumps(control), _forged_seal(control, CONTROL))
        expected = {"intake": 2, "acks": 2, "control": 4}
        status = local.wait_for(lambda s: s["rejected_signatures"]["heartbeat"] >= 1 and all(
            s["rejected_signatures"][k] == n for k, n in expected.items()), timeout_s=20)
        assert "forger" not in [w["id"] for w in status["workers"]]
        assert client.job("victim").result(timeout_s=20) == 1.5
        assert client.job("victim").info()["attempt"] == 1
        assert [job["id"] for job in client.dead_jobs()] == ["dead-one"]
        with pytest.raises(JobNotFoundError):
            client.job("forged-job").info()
        assert r.exists(KEYS.receipt("forged-req"), KEYS.reply("forged-cancel")) == 0
    finally:
        local.stop_all()


def _rejected_on_metrics(port: int) -> dict[str, float]:
    """``fleet_rejected_signatures_total`` by source, scraped from the controller's port."""
    text = _get(f"http://127.0.0.1:{port}/metrics")
    return {sample.labels["source"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "fleet_rejected_signatures_total"}


def test_rejected_signatures_are_scraped_from_metrics_by_source(redis_url, tmp_path):
    """A real controller's /metrics counts, by source, an unsigned intake request, an ack
    sealed with a guessed key, a forged heartbeat and an unsigned control request: one
    each (the forged heartbeat once per read of its key, until it is gone), as ``fleet
    status --json`` does; none is answered."""
    port = free_port()
    local = LocalFleet(redis_url, workdir=str(tmp_path),
                       env={**SIGNED, "FLEET_METRICS_PORT": str(port)})
    r = redis.Redis.from_url(redis_url)
    try:
        local.controller()
        assert not any(_rejected_on_metrics(port).values())
        request = {"req": "unsigned-req", "ts": int(time.time() * 1000),
                   "jobs": [{"id": "unsigned-job", "f": "tests.jobs:add", "a": [1, 1]}]}
        r.rpush(KEYS.intake, orjson.dumps(request))
        ack = {"id": "nobody", "n": 1, "o": "ok", "r": "FORGED", "w": "x", "h": "x"}
        r.rpush(KEYS.acks, _forged_seal(ack, ACK))
        beat = {"id": "forger", "host": "x", "pid": 1, "ts": int(time.time() * 1000),
                "executors": 1, "busy": 0, "queues": ["default"], "jobs": []}
        r.sadd(KEYS.workers, "forger")
        r.set(KEYS.worker("forger"), _forged_seal(beat, BEAT), ex=60)
        r.rpush(KEYS.control, orjson.dumps({"req": "unsigned-ctl", "cmd": "dead_purge",
                                            "args": {}}))
        r.rpush(KEYS.wake, b"1")
        deadline = time.monotonic() + 20
        while (counts := _rejected_on_metrics(port)).get("heartbeat", 0) < 1 or any(
                counts.get(source) != 1 for source in ("intake", "acks", "control")):
            assert time.monotonic() < deadline, f"not counted: {counts}"
            time.sleep(0.1)
        r.delete(KEYS.worker("forger"))
        time.sleep(1.0)  # five heartbeat reads: any read under way when the key went is done
        settled = _rejected_on_metrics(port)
        time.sleep(1.0)
        assert _rejected_on_metrics(port) == settled
        assert {k: settled[k] for k in ("intake", "acks", "control")} == {
            "intake": 1, "acks": 1, "control": 1}
        status = local.client().status()["rejected_signatures"]
        assert status == {source: int(n) for source, n in settled.items()}
        assert r.exists(KEYS.receipt("unsigned-req"), KEYS.reply("unsigned-ctl")) == 0
        with pytest.raises(JobNotFoundError):
            local.client().job("unsigned-job").info()
    finally:
        local.stop_all()


def test_a_replayed_genuine_ack_is_refused_in_this_and_in_a_later_job_of_the_same_id(
        redis_url, tmp_path):
    """A real worker's ack, copied while the controller was stopped, changes nothing when
    pushed again after the job completed, nor when the same id was compacted and enqueued
    again: that job ends with its own result."""
    local = LocalFleet(redis_url, workdir=str(tmp_path),
                       env={**SIGNED, "FLEET_RETENTION_S": "1"})
    r = redis.Redis.from_url(redis_url)
    try:
        ctl = local.controller()
        local.worker(1)
        client = local.client()
        client.enqueue("tests.jobs:sleep_s", 1.0, job_id="again")
        _wait_state(local, "again", "in_flight")
        ctl.signal(signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 20
            while not r.llen(KEYS.acks):
                assert time.monotonic() < deadline, "the worker never acked"
                time.sleep(0.02)
            genuine = r.lindex(KEYS.acks, 0)
        finally:
            ctl.signal(signal.SIGCONT)
        assert client.job("again").result(timeout_s=20) == 1.0
        stale = client.status()["stale_acks"]
        r.rpush(KEYS.acks, genuine)
        local.wait_for(lambda s: s["stale_acks"] == stale + 1, timeout_s=20)
        deadline = time.monotonic() + 30
        while True:  # retention 1 s: the finished job is compacted away, its id free again
            try:
                client.job("again").info()
            except JobNotFoundError:
                break
            assert time.monotonic() < deadline, "the finished job was never compacted"
            time.sleep(0.2)
        client.enqueue("tests.jobs:sleep_s", 2.0, job_id="again")
        _wait_state(local, "again", "in_flight")
        r.rpush(KEYS.acks, genuine)
        local.wait_for(lambda s: s["stale_acks"] == stale + 2, timeout_s=20)
        assert client.job("again").info()["state"] == "in_flight"
        assert client.job("again").result(timeout_s=20) == 2.0
        assert client.status()["rejected_signatures"]["acks"] == 0
    finally:
        local.stop_all()


def test_a_replayed_genuine_heartbeat_keeps_no_lease_of_a_killed_worker_alive(
        redis_url, tmp_path):
    """A real heartbeat naming a running job, copied, then SET back again and again after the
    worker was SIGKILLed (and a newer beat was read), is refused and counted: the lease runs
    out and the job runs again, to completion, on another worker."""
    local = LocalFleet(redis_url, workdir=str(tmp_path), env=SIGNED)
    r = redis.Redis.from_url(redis_url)
    try:
        local.controller()
        first = local.worker(2)
        client = local.client()
        client.enqueue("tests.jobs:sleep_s", 3.0, job_id="orphan")
        _wait_state(local, "orphan", "in_flight")
        deadline = time.monotonic() + 10
        while not (members := r.smembers(KEYS.workers)):
            assert time.monotonic() < deadline, "the worker never announced itself"
        worker_id = members.pop().decode()
        while b'"orphan"' not in (old := r.get(KEYS.worker(worker_id)) or b""):
            assert time.monotonic() < deadline, "no heartbeat named the running job"
        assert client.enqueue("tests.jobs:add", 1, 1, job_id="quick").result(10) == 2
        local.wait_for(lambda s: s["workers"][0]["done"] == 1, timeout_s=10)
        first.kill9()
        deadline = time.monotonic() + 30
        while not any(a["outcome"] == "expired" for a in client.job("orphan").info()["attempts"]):
            assert time.monotonic() < deadline, "the replayed beats kept the lease alive"
            r.sadd(KEYS.workers, worker_id)
            r.set(KEYS.worker(worker_id), old, ex=60)
            time.sleep(0.1)
        assert _rejected(local, "heartbeat") >= 1
        local.worker(1)
        assert client.job("orphan").result(timeout_s=30) == 3.0
        assert client.job("orphan").info()["attempt"] == 2
    finally:
        local.stop_all()


# -- least privilege: one Redis user per role ----------------------------------------------

ROLE_URLS = ("controller", "worker", "client", "dashboard")


def _acl_server(tmp_path: Path, namespace: str = "fleet") -> tuple[Server, dict[str, str]]:
    """A redis-server whose default user is locked, with one user per role made from the rule
    ``fleet acl`` prints."""
    port = free_port()
    server = Server(["--port", str(port), "--requirepass", "admin-secret"],
                    f"redis://default:admin-secret@127.0.0.1:{port}/0", tmp_path)
    admin = redis.Redis.from_url(server.url)
    urls = {}
    for role in ROLE_URLS:
        rule = subprocess.run([sys.executable, "-m", "fleet", "acl", "--role", role,
                               "--namespace", namespace, "--password", f"{role}-pw"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert rule[:2] == ["ACL", "SETUSER"]
        admin.execute_command(*rule)
        urls[role] = f"redis://fleet-{role}:{role}-pw@127.0.0.1:{port}/0"
    return server, urls


def _refused(url: str, *command: str) -> bool:
    try:
        redis.Redis.from_url(url).execute_command(*command)
    except redis.exceptions.NoPermissionError:
        return True
    return False


def test_one_redis_user_per_role_runs_the_whole_signed_flow(tmp_path):
    """Controller, worker, `fleet enqueue` / `fleet status` and the Client, each logged in as
    the user of its role only, run jobs to completion (cancel and dead letters included)."""
    server, urls = _acl_server(tmp_path)
    local = LocalFleet(urls["client"], workdir=str(tmp_path), env=SIGNED)
    try:
        local.controller(env={"FLEET_REDIS_URL": urls["controller"]})
        local.worker(2, env={"FLEET_REDIS_URL": urls["worker"]})
        done = local.cli("enqueue", "tests.jobs:add", "2", "3", "--id", "acl-1")
        assert done.returncode == 0, done.stderr
        client = local.client()
        assert client.job("acl-1").result(timeout_s=20) == 5
        client.enqueue("tests.jobs:fail", job_id="acl-dead", max_retries=0)
        client.enqueue("tests.jobs:sleep_s", 30, job_id="acl-cancel")
        _wait_state(local, "acl-cancel", "in_flight")
        assert client.cancel("acl-cancel")["cancelled"] == ["acl-cancel"]
        _wait_state(local, "acl-dead", "dead")
        dashboard = Client(redis_url=urls["dashboard"], settings=Settings(signing_key=KEY))
        assert dashboard.status()["states"]["cancelled"] == 1
        status = local.cli("status", "--json")
        assert status.returncode == 0, status.stderr
        assert orjson.loads(status.stdout)["states"]["completed"] == 1
        assert local.procs[0].alive() and "NOPERM" not in local.procs[0].tail(200)
    finally:
        local.stop_all()
        server.stop()


# What each role must not do: (role, command) pairs that must get NOPERM.
FORBIDDEN = [
    ("client", ("LPOP", "{fleet}:ready:default")), ("client", ("RPUSH", "{fleet}:acks", "x")),
    ("client", ("SET", "{fleet}:worker:w", "x")), ("client", ("LRANGE", "{fleet}:intake", 0, -1)),
    ("client", ("DEL", "{fleet}:intake")), ("client", ("SET", "{fleet}:controller", "x")),
    ("dashboard", ("RPUSH", "{fleet}:intake", "x")), ("dashboard", ("LPOP", "{fleet}:acks")),
    ("worker", ("RPUSH", "{fleet}:intake", "x")), ("worker", ("RPUSH", "{fleet}:control", "x")),
    ("worker", ("LRANGE", "{fleet}:acks", 0, -1)), ("worker", ("DEL", "{fleet}:acks")),
    ("worker", ("SET", "{fleet}:controller", "x")), ("worker", ("KEYS", "*")),
    ("controller", ("FLUSHALL",)), ("controller", ("GET", "{other}:controller")),
    ("controller", ("CONFIG", "SET", "maxmemory", "1")), ("controller", ("KEYS", "*")),
    ("client", ("RPUSH", "{other}:intake", "x")), ("worker", ("LPOP", "{other}:ready:default")),
]


def test_each_role_gets_noperm_for_what_it_must_not_do(tmp_path):
    """Clients cannot touch ready lists, acks or heartbeats; the dashboard cannot enqueue;
    workers cannot push intake or control, read acks or take the lease; nobody reaches
    another namespace or server-wide commands."""
    server, urls = _acl_server(tmp_path)
    try:
        refused = {(role, command): _refused(urls[role], *command) for role, command in FORBIDDEN}
        assert [pair for pair, ok in refused.items() if not ok] == []
    finally:
        server.stop()


def test_role_keys_keep_each_role_to_its_channel_and_two_keys_work_during_a_rotation(
        redis_url, tmp_path):
    """Per-role keys: the flow runs with each process holding only its own keys; an ack
    sealed with the client's key is refused. Mid-rotation (controller "old,new"), a client
    still on "old" and one already on "new,old" are both answered; one with another key is
    not."""
    keys = {"FLEET_DISPATCH_KEY": "d" * 32, "FLEET_WORKER_KEY": "w" * 32}
    local = LocalFleet(redis_url, workdir=str(tmp_path), env={**FAST, "FLEET_CLIENT_KEY": "old"})
    r = redis.Redis.from_url(redis_url)
    try:
        local.controller(env={**keys, "FLEET_CLIENT_KEY": "old,new"})
        local.worker(1, env=keys)
        assert local.client().enqueue("tests.jobs:add", 1, 2, job_id="old-key").result(20) == 3
        new = Client(redis_url=redis_url, settings=Settings(client_key="new,old"))
        assert new.enqueue("tests.jobs:add", 2, 2, job_id="new-key").result(20) == 4
        other = Client(redis_url=redis_url, receipt_timeout_s=2,
                       settings=Settings(client_key="other"))
        with pytest.raises(NoReceiptError):
            other.enqueue("tests.jobs:add", 3, 3, job_id="other-key")
        new.enqueue("tests.jobs:sleep_s", 1.0, job_id="running")
        _wait_state(local, "running", "in_flight")
        ack = {"id": "running", "n": 1, "o": "ok", "r": "FORGED", "w": "x", "h": "x"}
        r.rpush(KEYS.acks, _forged_seal(ack, ACK, b"old"))
        local.wait_for(lambda s: s["rejected_signatures"]["acks"] == 1
                       and s["rejected_signatures"]["intake"] == 1, timeout_s=20)
        assert new.job("running").result(timeout_s=20) == 1.0
    finally:
        local.stop_all()
