"""The worker's batched log handler: whole lines, in batches, nothing lost or written twice."""

from __future__ import annotations

import logging
import os
import re
import time

import pytest

from fleet.worker.logs import LINE_FORMAT, BatchedStreamHandler, line_writer


@pytest.fixture()
def captured(tmp_path):
    """A logger writing through a BatchedStreamHandler into a file; yields (logger, read)."""
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    handler = BatchedStreamHandler(flush_s=3600, fd=fd)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"test.batched.{tmp_path.name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield logger, handler, path.read_text
    logger.removeHandler(handler)
    os.close(fd)


def test_info_lines_wait_for_a_flush_then_come_out_whole_and_in_order(captured):
    """Within flush_s, info lines are held; flush() writes them all, each a whole line."""
    logger, handler, read = captured
    handler._flushed_mono = time.monotonic()  # a write just now: hold what follows
    for i in range(5):
        logger.info("job %d ok", i)
    assert read() == ""
    handler.flush()
    assert read().splitlines() == [f"INFO job {i} ok" for i in range(5)]


def test_a_warning_writes_at_once_with_what_was_held(captured):
    """A warning or worse is never delayed, and takes the held lines with it."""
    logger, handler, read = captured
    handler._flushed_mono = time.monotonic()  # a write just now: hold what follows
    logger.info("held")
    logger.warning("redis unavailable")
    assert read().splitlines() == ["INFO held", "WARNING redis unavailable"]


def test_a_forked_child_does_not_write_its_parents_held_lines(captured):
    """Lines held at fork time belong to the parent: the child's flush writes only its own."""
    logger, handler, read = captured
    handler._flushed_mono = time.monotonic()  # a write just now: hold what follows
    logger.info("parent's")
    child = os.fork()
    if child == 0:
        logger.info("child's")
        handler.flush()
        os._exit(0)
    os.waitpid(child, 0)
    handler.flush()
    assert sorted(read().splitlines()) == ["INFO child's", "INFO parent's"]


@pytest.fixture()
def worker_root(tmp_path):
    """The root logger set up as `fleet worker` does, writing to a file; restored after.
    (pytest adds its capture handlers to the root once the test starts; tests drop them.)"""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    handler = BatchedStreamHandler(fd=fd)
    handler.setFormatter(logging.Formatter(LINE_FORMAT))
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    yield handler, path.read_text
    root.handlers[:], root.level = saved
    os.close(fd)


def test_fast_job_line_reads_like_a_logged_one(worker_root):
    """line_writer's line has the format's shape: time with ms, INFO, the logger, the text."""
    handler, read = worker_root
    logging.getLogger().handlers[:] = [handler]  # without pytest's capture handlers
    write = line_writer(logging.getLogger("fleet.worker.jobs"))
    assert write is not None
    write("[w/e0] job a attempt 1 f ok in 0.001 s")
    logging.getLogger("fleet.worker.jobs").info("[w/e0] job b attempt 1 f ok in 0.001 s")
    handler.flush()
    fast, slow = read().splitlines()
    pattern = (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO fleet\.worker\.jobs "
               r"\[w/e0\] job [ab] attempt 1 f ok in 0\.001 s")
    assert re.fullmatch(pattern, fast) and re.fullmatch(pattern, slow)


def test_fast_job_line_is_not_used_with_other_logging_set_up(worker_root):
    """A handler of the user's own, a quiet logger or another format: plain logging."""
    handler, _ = worker_root
    logging.getLogger().handlers[:] = [handler]  # without pytest's capture handlers
    jobs = logging.getLogger("fleet.worker.jobs")
    jobs.setLevel(logging.WARNING)
    try:
        assert line_writer(jobs) is None
    finally:
        jobs.setLevel(logging.NOTSET)
    logging.getLogger().addHandler(logging.NullHandler())
    assert line_writer(jobs) is None
    logging.getLogger().handlers[:] = [handler]
    handler.setFormatter(logging.Formatter("%(message)s"))
    assert line_writer(jobs) is None
