"""What a new user meets in the first hour, through the real CLI: one line and an exit code
instead of a traceback (metrics port taken, Ctrl-C), a warning for a queue nobody uses, one
error prefix, the queues each worker serves."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from fleet.testing.cluster import FLEET
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

WAIT_S = 60


def test_metrics_port_taken_is_one_line_and_exit_2(local):
    """A controller whose metrics port is taken says so in one line and exits 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = local.controller("--metrics-port", str(port), wait=False)
        assert proc.popen.wait(WAIT_S) == 2
    output = proc.tail(50)
    assert "Traceback" not in output
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot serve metrics on 127.0.0.1:{port}: "
                           "Address already in use"), output
    assert "--metrics-port" in last
    local.controller()  # the lease was given back: a controller on a free port starts


def test_ctrl_c_during_or_right_after_enqueue_file_is_one_line(local, tmp_path):
    """SIGINT at any moment of `fleet enqueue --file` once it runs (sending, waiting for
    receipts, closing, exiting): never a traceback; exit 0 if it had finished, else 130 with
    the one line 'interrupted'."""
    local.controller()
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps([{"id": f"t{i}", "func": "fleet.demo:noop"}
                                for i in range(3000)]))
    codes = []
    for delay_s in (0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7, 1.0):
        proc = subprocess.Popen([*FLEET, "enqueue", "--file", str(path), "-q"],
                                env=local.environment(), stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, text=True)
        first = proc.stderr.readline()  # the progress bar's label: the file is read
        assert first.strip() == "enqueueing", first
        time.sleep(delay_s)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=WAIT_S)
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert proc.returncode in (0, 130), err
        if proc.returncode == 130:
            assert err.strip().splitlines()[-1] == "interrupted", err
        codes.append(proc.returncode)
    assert 130 in codes, codes


def test_pause_of_a_queue_nobody_uses_warns_and_still_pauses(local):
    """`fleet pause <typo>`: exit 0, paused, and a warning on stderr; a used queue: none."""
    local.controller()
    local.worker(1, "--queues", "default")
    local.wait_for(lambda s: s["executors"] == 1, timeout_s=WAIT_S)
    typo = local.cli("pause", "defualt")
    assert typo.returncode == 0 and typo.stdout.strip() == "paused defualt"
    assert typo.stderr.startswith("warning: no job is in queue 'defualt' and no live worker "
                                  "consumes it")
    assert local.client().status()["paused"] == ["defualt"]
    used = local.cli("pause", "default")
    assert used.returncode == 0 and used.stderr == ""
    assert local.cli("resume", "default").stderr == ""


def test_every_error_has_the_same_prefix(local):
    """Usage errors, refused requests and fleet errors all start with 'error: '."""
    local.controller()
    for args, code in ((["jobs", "--state", "nope"], 2), (["nosuch"], 2),
                       (["cancel", "unknown-id"], 1), (["dead", "retry", "unknown-id"], 1),
                       (["job", "unknown-id"], 7), (["enqueue"], 2)):
        done = local.cli(*args)
        assert done.returncode == code, (args, done.stderr)
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: "), (args, done.stderr)
        assert "Error:" not in done.stderr and "Traceback" not in done.stderr


def test_status_shows_the_queues_each_worker_serves(local):
    """`fleet status` lists each worker with the queues it consumes, in its order."""
    local.controller()
    local.worker(1, "--queues", "high,default")
    local.worker(1, "--queues", "reports")
    local.wait_for(lambda s: s["executors"] == 2, timeout_s=WAIT_S)
    text = local.cli("status").stdout
    worker_lines = [line for line in text.splitlines() if "busy " in line and "done" in line]
    assert sorted(line.split("queues ")[1] for line in worker_lines) == ["high,default",
                                                                        "reports"]


def test_ctrl_c_of_status_watch_and_result_wait_is_one_line_and_exit_130(local):
    """SIGINT to `fleet status --watch` and to `fleet result --wait` while they wait:
    'interrupted', exit 130, no traceback."""
    local.controller()
    local.client().enqueue("fleet.demo:noop", job_id="never-runs", queue="nobody")
    for args in (["status", "--watch", "0.2"], ["result", "never-runs", "--wait", "60"]):
        proc = subprocess.Popen([*FLEET, *args], env=local.environment(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if args[0] == "status":
            assert "namespace" in proc.stdout.readline() + proc.stdout.readline()
        else:
            _wait_for_a_socket(proc.pid)  # connected to Redis: past its imports, waiting
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=WAIT_S)
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err


def _wait_for_a_socket(pid: int) -> None:
    """Poll /proc until the process holds a socket (it has reached Redis)."""
    def sockets() -> list[str]:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            return []
        return [link for link in links if link.startswith("socket:")]
    wait_until(sockets, WAIT_S, what=f"process {pid} holding a socket", poll_s=0.02)
