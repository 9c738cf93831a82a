"""Disk faults injected through the WAL's ``Files`` door into an in-process controller.

Each test drives ``Controller.step`` against the private redis-server, pushing intake requests
by hand and reading receipts straight from Redis, so it sees exactly what was acknowledged.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
import time

import orjson
import pytest
import redis

from fleet.cli import main as cli_main
from fleet.config import Settings
from fleet.controller import Controller
from fleet.errors import WalDiskFullError, WalFsyncError
from fleet.keys import Keys
from fleet.state import events as ev
from fleet.wal import Files, open_log, tools
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

KEYS = Keys("fleet")


class Crash(BaseException):
    """The process died here (not an OSError: nothing in fleet may catch and undo it)."""


class FaultyFiles(Files):
    """Plain file access with switchable faults."""

    def __init__(self) -> None:
        self.disk_full = False
        self.no_new_files = False  # too full to create the next segment
        self.fail_fsync = False
        self.tear_next_write = False
        self.fsync_calls_failed = 0
        self.synced_size: dict[int, int] = {}

    def write(self, fd: int, data: bytes) -> None:
        if self.disk_full or self.tear_next_write:
            os.write(fd, data[: len(data) // 2])  # half the frame reached the file
            if self.tear_next_write:
                raise Crash()
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(fd, data)

    def open_append(self, path: str) -> int:
        if self.no_new_files and not os.path.exists(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().open_append(path)

    def fsync(self, fd: int) -> None:
        if self.fail_fsync:
            self.fsync_calls_failed += 1
            # Like Linux after a failed writeback: the dirty pages are gone, not retried.
            os.ftruncate(fd, self.synced_size.get(fd, 0))
            raise OSError(errno.EIO, "Input/output error")
        super().fsync(fd)
        self.synced_size[fd] = os.fstat(fd).st_size


def _controller(redis_url: str, tmp_path, files: Files | None = None,
                **options) -> Controller:
    settings = Settings(redis_url=redis_url, data_dir=str(tmp_path / "data"), metrics_port=0,
                        heartbeat_s=0.2, **options)
    ctl = Controller(settings, files=files, fork_snapshots=False)
    ctl.start(serve_metrics=False)
    return ctl


def _request(r: redis.Redis, request_id: str, *job_ids: str) -> None:
    jobs = [{"id": job_id, "f": "tests.jobs:add", "a": [1, 2]} for job_id in job_ids]
    r.rpush(KEYS.intake, orjson.dumps({"req": request_id, "jobs": jobs}))


def _receipt(r: redis.Redis, request_id: str) -> list | None:
    raw = r.lindex(KEYS.receipt(request_id), 0)
    return orjson.loads(raw)["results"] if raw else None


def _enqueued_ids(data_dir: str) -> list[str]:
    return [e["id"] for e in tools.dump_events(data_dir) if e["t"] == "enq"]


def _step_until(ctl: Controller, condition, max_steps: int = 50) -> None:
    """Run loop iterations until ``condition()`` (a step may act on what the last one read)."""
    for _ in range(max_steps):
        ctl.step()
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met within the steps allowed")


@pytest.mark.parametrize("fault", ["disk_full", "no_new_files"])
def test_disk_full_stops_intake_without_receipts_and_resumes_exactly_once(
        redis_url, tmp_path, caplog, fault):
    """ENOSPC, half-way through a write or when the next segment cannot be created: a clear
    log line, fleet_wal_disk_full = 1, no receipt, an uncorrupted log; once space returns
    every job is accepted exactly once."""
    r = redis.Redis.from_url(redis_url)
    files = FaultyFiles()
    # With one-byte segments every commit starts a new segment.
    options = {"segment_bytes": 1} if fault == "no_new_files" else {}
    ctl = _controller(redis_url, tmp_path, files, **options)
    disk_full_metric = lambda: ctl.metrics.registry.get_sample_value("fleet_wal_disk_full")  # noqa: E731
    try:
        _request(r, "before", "a")
        _step_until(ctl, lambda: _receipt(r, "before") is not None)
        assert _receipt(r, "before") == [["a", "accepted"]]
        setattr(files, fault, True)
        _request(r, "during", "b", "c")
        stepping = threading.Thread(
            target=_step_until, args=(ctl, lambda: _receipt(r, "during") is not None))
        with caplog.at_level(logging.ERROR, logger="fleet.controller"):
            stepping.start()
            wait_until(disk_full_metric, 10, until=lambda value: value == 1,
                       what="fleet_wal_disk_full == 1")
        assert "not accepting work until space returns" in caplog.text
        assert "No space left on device" in caplog.text
        time.sleep(0.6)  # at least one more retry while still full
        assert _receipt(r, "during") is None
        assert r.llen(KEYS.intake) == 1  # not trimmed: nothing was acknowledged
        assert tools.verify(ctl.settings.data_dir).torn_bytes == 0  # partial write cut back
        setattr(files, fault, False)
        stepping.join(timeout=10)
        assert not stepping.is_alive()
        assert _receipt(r, "during") == [["b", "accepted"], ["c", "accepted"]]
        assert disk_full_metric() == 0
        _request(r, "resent", "b", "c")
        _step_until(ctl, lambda: _receipt(r, "resent") is not None)
        assert _receipt(r, "resent") == [["b", "duplicate"], ["c", "duplicate"]]
    finally:
        ctl.close()
    assert tools.verify(ctl.settings.data_dir).ok
    assert sorted(_enqueued_ids(ctl.settings.data_dir)) == ["a", "b", "c"]


def test_failed_fsync_is_fatal_never_retried_and_recovered_from_the_log(redis_url, tmp_path):
    """EIO on fsync: WalFsyncError leaves run(), fsync is not retried, no receipt goes out, and a
    restart recovers what was durable; the unacknowledged job is accepted when re-sent."""
    r = redis.Redis.from_url(redis_url)
    files = FaultyFiles()
    ctl = _controller(redis_url, tmp_path, files)
    try:
        _request(r, "first", "a")
        _step_until(ctl, lambda: _receipt(r, "first") is not None)
        files.fail_fsync = True
        _request(r, "second", "b")
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            with pytest.raises(WalFsyncError, match="must restart"):
                ctl.run()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        assert files.fsync_calls_failed == 1
        assert _receipt(r, "second") is None
    finally:
        ctl.close()
    assert files.fsync_calls_failed == 1  # closing did not try again either
    restarted = _controller(redis_url, tmp_path)
    try:
        assert set(restarted.journal.table.jobs) == {"a"}
        # The request for b is still on the intake list.
        _step_until(restarted, lambda: _receipt(r, "second") is not None)
        assert _receipt(r, "second") == [["b", "accepted"]]
    finally:
        restarted.close()
    assert sorted(_enqueued_ids(restarted.settings.data_dir)) == ["a", "b"]


def test_fsync_error_makes_the_controller_command_exit_3(monkeypatch, tmp_path, capsys):
    """`fleet controller` turns WalFsyncError into one line on stderr and exit code 3."""

    class FsyncFails:
        def __init__(self, settings, **_):
            pass

        def start(self, **_):
            pass

        def run(self):
            raise WalFsyncError("fsync of wal/x failed ([Errno 5] EIO); the controller must "
                                "restart and recover from the log")

        def close(self):
            pass

    monkeypatch.setattr("fleet.controller.Controller", FsyncFails)
    with pytest.raises(SystemExit) as exited:
        cli_main(["controller", "--data-dir", str(tmp_path), "--metrics-port", "0"])
    assert exited.value.code == 3
    err = capsys.readouterr().err
    assert err.startswith("error: fsync of") and "Traceback" not in err


def test_torn_write_mid_batch_is_cut_at_recovery_and_never_acknowledged(redis_url, tmp_path):
    """Half a frame written, then the process dies: recovery cuts the torn tail, the batch's
    jobs got no receipt, and they are accepted (once) when the controller comes back."""
    r = redis.Redis.from_url(redis_url)
    files = FaultyFiles()
    ctl = _controller(redis_url, tmp_path, files)
    data_dir = ctl.settings.data_dir
    _request(r, "first", "a")
    _step_until(ctl, lambda: _receipt(r, "first") is not None)
    files.tear_next_write = True
    _request(r, "torn", "b", "c", "d")
    with pytest.raises(Crash):
        _step_until(ctl, lambda: False)
    assert _receipt(r, "torn") is None
    ctl.log.lock.release()  # the dead process's flock goes with it
    assert tools.verify(data_dir).torn_bytes > 0
    r.delete(KEYS.controller)  # its lease would have expired
    restarted = _controller(redis_url, tmp_path)
    try:
        assert restarted.log.report.torn_bytes_cut > 0
        assert "cut a torn tail" in restarted.log.report.summary()
        assert set(restarted.journal.table.jobs) == {"a"}
        _step_until(restarted, lambda: _receipt(r, "torn") is not None)
        assert _receipt(r, "torn") == [["b", "accepted"], ["c", "accepted"], ["d", "accepted"]]
    finally:
        restarted.close()
    assert tools.verify(data_dir).ok
    assert sorted(_enqueued_ids(data_dir)) == ["a", "b", "c", "d"]


def test_append_cut_short_by_disk_full_leaves_no_partial_frame(tmp_path):
    """An append that hits ENOSPC halfway is cut back, so the append after space returns is
    the next clean record (nothing half-written in between)."""
    files = FaultyFiles()
    log = open_log(str(tmp_path / "data"), files=files)
    files.disk_full = True
    with pytest.raises(WalDiskFullError):
        log.writer.append([ev.booted(1, 0)], 1)
    files.disk_full = False
    assert log.writer.append([ev.booted(1, 0)], 1)
    log.close()
    assert [e["s"] for e in tools.dump_events(str(tmp_path / "data"))] == [1]
    assert tools.verify(str(tmp_path / "data")).torn_bytes == 0
