"""The job table as a pure state machine: every transition, stale events, stats, invariants."""

from __future__ import annotations

import pytest

from fleet.state import CANCELLED, COMPLETED, DEAD, IN_FLIGHT, PENDING, JobTable
from fleet.state import events as ev

RUN = {"w": "worker-1", "h": "host-a", "st": 2_100, "ft": 2_200}
LEASE_MS = 30_000


def enqueue(table: JobTable, job_id: str, queue: str = "default", max_retries: int = 2,
            not_before_ms: int = 0, at_ms: int = 1_000) -> bool:
    spec = {"id": job_id, "q": queue, "f": "tasks:work", "a": [1, "two"], "k": {"x": 3}}
    if not_before_ms:
        spec["nb"] = not_before_ms
    return table.apply(ev.enqueued(spec, at_ms, 30.0, max_retries))


def dispatch(table: JobTable, job_id: str, now_ms: int = 2_000) -> bool:
    attempt = table.jobs[job_id].attempt + 1
    return table.apply(ev.dispatched(job_id, attempt, now_ms + LEASE_MS, now_ms))


def take(table: JobTable, queue: str, limit: int, now_ms: int) -> list:
    """What the dispatcher does: delayed jobs due by ``now_ms`` join their lines (a ``due``
    record), then up to ``limit`` jobs leave the front of ``queue``'s line."""
    table.apply(ev.due(now_ms))
    return table.take_ready(queue, limit)


def take_and_dispatch(table: JobTable, queue: str = "default", now_ms: int = 2_000) -> list[str]:
    taken = take(table, queue, 100, now_ms)
    for job in taken:
        assert dispatch(table, job.id, now_ms)
    return [job.id for job in taken]


def fail(table: JobTable, job_id: str, attempt: int | None = None, retry_at_ms: int = 0,
         final: bool = False) -> bool:
    attempt = table.jobs[job_id].attempt if attempt is None else attempt
    return table.apply(ev.failed(job_id, attempt, "ValueError: boom", RUN, retry_at_ms, final))


def ack(table: JobTable, job_id: str, attempt: int | None = None, result: object = 42) -> bool:
    if attempt is None:
        attempt = table.jobs[job_id].attempt if job_id in table.jobs else 1
    return table.apply(ev.acked(job_id, attempt, result, RUN))


def state_of(table: JobTable, job_id: str) -> str:
    return table.jobs[job_id].state


@pytest.fixture()
def table() -> JobTable:
    return JobTable()


# -- transitions ---------------------------------------------------------------------------


def test_enqueue_adds_a_pending_job(table):
    """An enqueued job is pending, counted, and ready for dispatch."""
    assert enqueue(table, "a")
    job = table.jobs["a"]
    assert (job.state, job.attempt, job.failures, job.queue) == (PENDING, 0, 0, "default")
    assert table.counts[PENDING] == 1
    assert table.totals["enqueued"] == 1
    assert [j.id for j in take(table, "default", 10, 1_000)] == ["a"]


def test_enqueue_of_a_known_id_is_a_no_op(table):
    """Enqueueing an id the table already holds changes nothing (idempotent enqueue)."""
    enqueue(table, "a")
    assert not enqueue(table, "a", queue="other")
    assert table.jobs["a"].queue == "default"
    assert table.totals["enqueued"] == 1


def test_dispatch_leases_the_job(table):
    """A dispatch moves a pending job in flight with the next attempt number and a lease."""
    enqueue(table, "a")
    assert dispatch(table, "a", now_ms=5_000)
    job = table.jobs["a"]
    assert (job.state, job.attempt, job.lease_deadline_ms) == (IN_FLIGHT, 1, 5_000 + LEASE_MS)
    assert table.in_flight == {"a": job}
    assert table.counts[IN_FLIGHT] == 1 and table.counts[PENDING] == 0


def test_dispatch_with_a_wrong_attempt_number_is_refused(table):
    """A dispatch must carry exactly the next attempt number."""
    enqueue(table, "a")
    assert not table.apply(ev.dispatched("a", 2, 9_000, 1_000))
    assert not table.apply(ev.dispatched("a", 0, 9_000, 1_000))
    assert state_of(table, "a") == PENDING


def test_redispatch_of_an_in_flight_job_starts_the_next_attempt(table):
    """Dispatching an in-flight job again (the heal after Redis lost it) bumps the attempt."""
    enqueue(table, "a")
    dispatch(table, "a")
    assert dispatch(table, "a", now_ms=3_000)
    assert table.jobs["a"].attempt == 2
    assert table.counts[IN_FLIGHT] == 1
    assert table.validate() == []


def test_ack_completes_the_job(table):
    """An ack of the current attempt completes the job with its result and attempt history."""
    enqueue(table, "a")
    dispatch(table, "a")
    assert ack(table, "a", result={"sum": 3})
    job = table.jobs["a"]
    assert (job.state, job.result, job.finished_ms, job.lease_deadline_ms) == (
        COMPLETED, {"sum": 3}, RUN["ft"], None)
    assert job.history[-1]["o"] == "ok" and job.history[-1]["w"] == "worker-1"
    assert table.in_flight == {}
    assert table.totals["completed"] == 1


def test_fail_with_retries_left_goes_back_to_pending_not_before_the_retry_time(table):
    """A failed attempt with retries left returns to pending, held back until its retry time."""
    enqueue(table, "a", max_retries=2)
    dispatch(table, "a")
    assert fail(table, "a", retry_at_ms=10_000)
    job = table.jobs["a"]
    assert (job.state, job.failures, job.not_before_ms) == (PENDING, 1, 10_000)
    assert job.error == "ValueError: boom"
    assert take(table, "default", 10, 9_999) == []
    assert table.next_due_ms() == 10_000
    assert [j.id for j in take(table, "default", 10, 10_000)] == ["a"]


def test_fail_when_retries_run_out_makes_the_job_dead(table):
    """With max_retries=1 the second failed attempt sends the job to the dead-letter set."""
    enqueue(table, "a", max_retries=1)
    dispatch(table, "a")
    fail(table, "a")
    dispatch(table, "a")
    assert fail(table, "a")
    job = table.jobs["a"]
    assert (job.state, job.failures, job.attempt) == (DEAD, 2, 2)
    assert table.totals["dead"] == 1
    assert [j.id for j in table.dead_jobs()] == ["a"]


def test_final_fail_makes_the_job_dead_at_once(table):
    """A fail marked final skips the remaining retries."""
    enqueue(table, "a", max_retries=5)
    dispatch(table, "a")
    assert fail(table, "a", final=True)
    assert state_of(table, "a") == DEAD
    assert table.jobs["a"].failures == 1


def test_expire_counts_as_a_failed_attempt(table):
    """A lease running out returns the job to pending (not before nb) and counts a failure."""
    enqueue(table, "a", max_retries=1)
    dispatch(table, "a")
    assert table.apply(ev.expired("a", 1, 50_000, 40_000))
    job = table.jobs["a"]
    assert (job.state, job.failures, job.not_before_ms) == (PENDING, 1, 50_000)
    assert job.history[-1]["o"] == "expired"
    dispatch(table, "a", now_ms=50_000)
    assert table.apply(ev.expired("a", 2, 90_000, 80_000))
    assert state_of(table, "a") == DEAD
    assert table.totals["expired"] == 2


def test_release_returns_the_job_without_counting_a_failure(table):
    """A released attempt goes back to pending at once and does not use up a retry."""
    enqueue(table, "a", max_retries=0)
    dispatch(table, "a")
    assert table.apply(ev.released("a", 1, "worker draining", 3_000))
    job = table.jobs["a"]
    assert (job.state, job.failures, job.lease_deadline_ms) == (PENDING, 0, None)
    assert table.in_flight == {}
    assert [j.id for j in take(table, "default", 10, 3_000)] == ["a"]


def test_retry_from_dead_restores_a_fresh_retry_budget(table):
    """An operator retry sends a dead job back to pending with its failures reset."""
    enqueue(table, "a", max_retries=0)
    dispatch(table, "a")
    fail(table, "a")
    assert table.apply(ev.retried("a", 5_000))
    job = table.jobs["a"]
    assert (job.state, job.failures, job.finished_ms) == (PENDING, 0, None)
    assert [j.id for j in take(table, "default", 10, 5_000)] == ["a"]
    assert dispatch(table, "a") and table.jobs["a"].attempt == 2


def test_retry_of_a_job_that_is_not_dead_is_refused(table):
    """Only dead jobs can be retried."""
    enqueue(table, "a")
    assert not table.apply(ev.retried("a", 5_000))
    assert not table.apply(ev.retried("unknown", 5_000))


def test_cancel_from_pending_removes_the_job_from_dispatch(table):
    """A cancelled pending job is finished and never handed out."""
    enqueue(table, "a")
    enqueue(table, "b")
    assert table.apply(ev.cancelled("a", 4_000))
    assert (state_of(table, "a"), table.jobs["a"].finished_ms) == (CANCELLED, 4_000)
    assert [j.id for j in take(table, "default", 10, 4_000)] == ["b"]
    assert table.totals["cancelled"] == 1


def test_cancel_from_in_flight_drops_the_lease(table):
    """A cancelled in-flight job leaves the in-flight index and its later ack is stale."""
    enqueue(table, "a")
    dispatch(table, "a")
    assert table.apply(ev.cancelled("a", 4_000))
    assert state_of(table, "a") == CANCELLED
    assert table.in_flight == {} and table.jobs["a"].lease_deadline_ms is None
    assert not ack(table, "a")


def test_cancel_of_a_finished_job_is_refused(table):
    """Completed jobs cannot be cancelled."""
    enqueue(table, "a")
    dispatch(table, "a")
    ack(table, "a")
    assert not table.apply(ev.cancelled("a", 4_000))
    assert state_of(table, "a") == COMPLETED


def test_compact_forgets_finished_jobs_only(table):
    """Compaction drops terminal jobs (whose ids become free) and leaves live ones alone."""
    for job_id in ("done", "live"):
        enqueue(table, job_id)
    take_and_dispatch(table)
    ack(table, "done")
    assert table.finished_before(cutoff_ms=RUN["ft"] + 1, limit=10) == ["done"]
    assert table.apply(ev.compacted(["done", "live", "unknown"]))
    assert set(table.jobs) == {"live"}
    assert table.counts[COMPLETED] == 0 and table.totals["compacted"] == 1
    assert enqueue(table, "done")
    assert table.validate() == []


def test_pause_stops_take_ready_and_resume_restarts_it(table):
    """A paused queue hands out nothing; other queues go on; resume hands the work out."""
    enqueue(table, "a", queue="q1")
    enqueue(table, "b", queue="q2")
    assert table.apply(ev.paused("q1"))
    assert take(table, "q1", 10, 1_000) == []
    assert table.ready_queues() == ["q2"]
    assert [j.id for j in take(table, "q2", 10, 1_000)] == ["b"]
    assert table.apply(ev.resumed("q1"))
    assert [j.id for j in take(table, "q1", 10, 1_000)] == ["a"]


def test_jobs_are_handed_out_fifo_within_a_queue(table):
    """take_ready returns a queue's jobs in the order they became ready, honouring the limit."""
    for n in range(5):
        enqueue(table, f"j{n}")
    enqueue(table, "other", queue="q2")
    assert [j.id for j in take(table, "default", 3, 1_000)] == ["j0", "j1", "j2"]
    assert [j.id for j in take(table, "default", 3, 1_000)] == ["j3", "j4"]


def test_a_released_job_goes_to_the_back_of_its_queue(table):
    """A job that comes back to pending queues behind the jobs already waiting."""
    enqueue(table, "a")
    take_and_dispatch(table)
    enqueue(table, "b")
    table.apply(ev.released("a", 1, "drain", 3_000))
    assert [j.id for j in take(table, "default", 10, 3_000)] == ["b", "a"]


def test_delayed_job_waits_for_its_run_time(table):
    """A job enqueued with a run time is not handed out before it."""
    enqueue(table, "later", not_before_ms=8_000)
    enqueue(table, "now")
    assert [j.id for j in take(table, "default", 10, 7_999)] == ["now"]
    assert [j.id for j in take(table, "default", 10, 8_000)] == ["later"]
    assert table.next_due_ms() is None


class Recorder:
    """Applies records to a live table as the journal does, keeping the accepted ones (the
    log); ``take`` is what the dispatcher does."""

    def __init__(self, table: JobTable) -> None:
        self.table, self.log = table, []

    def __call__(self, record: list) -> None:
        if self.table.apply(record):
            self.log.append(record)

    def take(self, limit: int, now_ms: int, queue: str = "default") -> list[str]:
        if self.table.has_due(now_ms):
            self(ev.due(now_ms))
        jobs = self.table.take_ready(queue, limit)
        for job in jobs:
            self(ev.dispatched(job.id, job.attempt + 1, now_ms + LEASE_MS, now_ms))
        return [job.id for job in jobs]

    def replayed(self) -> JobTable:
        """A table rebuilt from the log alone, as recovery builds it."""
        replayed = JobTable()
        assert replayed.replay(self.log, 1, 0) == len(self.log)
        return replayed


def line(table: JobTable, queue: str = "default") -> list[str]:
    """The ids in ``queue``'s line, front first (it empties the line)."""
    return [job.id for job in table.take_ready(queue, 100)]


def test_a_due_job_keeps_its_place_in_line_across_recovery(table):
    """A delayed job joins its line when the dispatcher finds it due, and the ``due`` record
    keeps that place in the log: jobs enqueued later stay behind it after recovery."""
    spec = {"q": "default", "f": "tasks:work", "a": [], "k": {}}
    live = Recorder(table)
    live(ev.enqueued({**spec, "id": "early", "nb": 5_000}, 1_000, 30.0, 2))
    live(ev.enqueued({**spec, "id": "first"}, 1_000, 30.0, 2))
    assert live.take(1, 4_999) == ["first"]
    assert live.log[-1][0] == ev.DISPATCHED  # nothing was due: no due record
    assert live.take(0, 5_500) == []  # the dispatcher looks, with no room to take
    assert live.log[-1] == ev.due(5_500)
    live(ev.enqueued({**spec, "id": "after"}, 6_000, 30.0, 2))
    assert line(live.replayed()) == line(table) == ["early", "after"]


def test_a_retry_joins_its_line_when_found_due_and_keeps_that_place(table):
    """A failed job waiting out its backoff is not in line until the dispatcher finds it due;
    a job released before that goes ahead of it, live and after recovery alike."""
    spec = {"q": "default", "f": "tasks:work", "a": [], "k": {}}
    live = Recorder(table)
    live(ev.enqueued({**spec, "id": "a"}, 1_000, 30.0, 2))
    live(ev.enqueued({**spec, "id": "b"}, 1_000, 30.0, 2))
    assert live.take(2, 2_000) == ["a", "b"]
    live(ev.failed("a", 1, "ValueError: boom", RUN, 3_000, False, 2_500))
    live(ev.released("b", 1, "drain", 4_000))
    assert live.take(0, 4_000) == []
    assert line(live.replayed()) == line(table) == ["b", "a"]


# -- stale and late events -----------------------------------------------------------------


def test_stale_fail_of_an_older_attempt_is_ignored(table):
    """A fail for an attempt that is no longer current returns False and changes nothing."""
    enqueue(table, "a")
    dispatch(table, "a")
    fail(table, "a")
    dispatch(table, "a")
    assert not fail(table, "a", attempt=1)
    assert (state_of(table, "a"), table.jobs["a"].failures) == (IN_FLIGHT, 1)


def test_ack_of_an_unknown_job_is_ignored(table):
    """An ack for an id the table does not hold returns False."""
    assert not ack(table, "ghost", attempt=1)
    assert table.jobs == {}


@pytest.mark.parametrize("finish", ["ack", "dead", "cancel"])
def test_ack_of_a_finished_job_is_ignored(table, finish):
    """Once a job is completed, dead or cancelled, any further ack returns False."""
    enqueue(table, "a", max_retries=0)
    dispatch(table, "a")
    if finish == "ack":
        ack(table, "a")
    elif finish == "dead":
        fail(table, "a")
    else:
        table.apply(ev.cancelled("a", 3_000))
    before = table.canonical()
    assert not ack(table, "a", attempt=1, result="late")
    assert table.canonical() == before


def test_ack_of_an_attempt_never_dispatched_is_ignored(table):
    """An ack naming attempt 0 or a future attempt cannot complete a job."""
    enqueue(table, "a")
    assert not ack(table, "a", attempt=0)
    dispatch(table, "a")
    assert not ack(table, "a", attempt=2)
    assert state_of(table, "a") == IN_FLIGHT


def test_late_success_of_an_older_attempt_completes_an_in_flight_job(table):
    """An ack from attempt 1 arriving while attempt 2 runs still completes the job."""
    enqueue(table, "a")
    dispatch(table, "a")
    table.apply(ev.expired("a", 1, 0, 40_000))
    dispatch(table, "a", now_ms=41_000)
    assert ack(table, "a", attempt=1, result="from attempt 1")
    job = table.jobs["a"]
    assert (job.state, job.result, job.attempt) == (COMPLETED, "from attempt 1", 2)
    assert table.in_flight == {}
    assert not ack(table, "a", attempt=2)
    assert table.validate() == []


def test_late_success_of_an_older_attempt_completes_a_pending_job(table):
    """An ack from an expired attempt completes the job while it waits for its retry."""
    enqueue(table, "a")
    dispatch(table, "a")
    table.apply(ev.expired("a", 1, 90_000, 40_000))
    assert ack(table, "a", attempt=1)
    assert state_of(table, "a") == COMPLETED
    assert take(table, "default", 10, 90_000) == []


def test_events_at_or_below_the_last_seq_are_skipped(table):
    """An event whose seq was already applied changes nothing (replay is idempotent)."""
    first = (ev.enqueued({"id": "a", "q": "default", "f": "m:f", "a": [], "k": {}}, 1, 30, 2), 1)
    cancel = (ev.cancelled("a", 2), 2)
    assert table.apply_all([first, cancel]) == 2
    assert table.apply_all([first, cancel]) == 0
    assert (table.last_seq, state_of(table, "a")) == (2, CANCELLED)


def test_boot_keeps_the_highest_epoch(table):
    """A boot record raises the fencing epoch and never lowers it."""
    table.apply(ev.booted(7, 1))
    table.apply(ev.booted(3, 2))
    assert table.epoch == 7


# -- stats and invariants ------------------------------------------------------------------


def test_stats_count_jobs_per_state_and_queue(table):
    """stats() reports counts per state, per queue and state, and running totals."""
    for job_id, queue in (("a", "q1"), ("b", "q1"), ("c", "q2"), ("d", "q2")):
        enqueue(table, job_id, queue=queue, max_retries=0)
    take_and_dispatch(table, "q1")
    ack(table, "a")
    dispatch(table, "c")
    fail(table, "c")
    stats = table.stats()
    assert stats["states"] == {PENDING: 1, IN_FLIGHT: 1, COMPLETED: 1, DEAD: 1, CANCELLED: 0,
                               "waiting": 0}
    assert stats["queues"]["q1"] == {PENDING: 0, IN_FLIGHT: 1, COMPLETED: 1, DEAD: 0,
                                     CANCELLED: 0, "waiting": 0}
    assert stats["queues"]["q2"] == {PENDING: 1, IN_FLIGHT: 0, COMPLETED: 0, DEAD: 1,
                                     CANCELLED: 0, "waiting": 0}
    assert stats["totals"]["enqueued"] == 4 and stats["totals"]["dispatched"] == 3


def busy_table() -> JobTable:
    table = JobTable()
    for job_id in ("p", "f", "c"):
        enqueue(table, job_id)
    dispatch(table, "f")
    dispatch(table, "c")
    ack(table, "c")
    assert table.validate() == []
    return table


def test_validate_catches_a_pending_job_in_the_in_flight_index():
    """A job listed in flight while its state says pending is reported."""
    table = busy_table()
    table.in_flight["p"] = table.jobs["p"]
    assert any("p: in the in-flight index but pending" in p for p in table.validate())


def test_validate_catches_an_in_flight_job_without_a_lease():
    """An in-flight job must hold a lease deadline."""
    table = busy_table()
    table.jobs["f"].lease_deadline_ms = None
    assert any("f: in flight without a lease" in p for p in table.validate())


def test_validate_catches_attempts_going_backwards():
    """A job whose history names a later attempt than its current one is reported."""
    table = busy_table()
    table.jobs["c"].attempt = 0
    assert any("c: attempts go backwards" in p for p in table.validate())


def test_validate_catches_state_counters_that_disagree():
    """Per-state and per-queue counters must match the jobs."""
    table = busy_table()
    table.counts[PENDING] += 1
    assert any("state counters" in p for p in table.validate())
    table = busy_table()
    table.queue_counts["default"][COMPLETED] -= 1
    assert any("per-queue counters" in p for p in table.validate())


def test_validate_catches_a_job_queued_twice():
    """The same pending job twice in the ready index would be dispatched twice."""
    table = busy_table()
    entry = (table.jobs["p"].ticket, table.jobs["p"])
    table._ready["default"].append(entry)
    assert any("p: queued twice" in p for p in table.validate())


def test_dump_and_load_give_the_same_table(table):
    """A table rebuilt from dump() equals the original, ready order included."""
    for n in range(4):
        enqueue(table, f"j{n}")
    take_and_dispatch(table)
    enqueue(table, "j4")
    ack(table, "j0")
    table.apply(ev.released("j1", 1, "drain", 3_000))
    fail(table, "j2", retry_at_ms=9_000)
    loaded = JobTable.load(table.dump())
    assert loaded.canonical() == table.canonical()
    assert loaded.validate() == []
    order = [j.id for j in take(table, "default", 10, 9_000)]
    assert [j.id for j in take(loaded, "default", 10, 9_000)] == order == ["j4", "j1", "j2"]


def test_oldest_ready_job_is_found_across_queues_skipping_dispatched_ones():
    """Status's oldest pending age comes from the oldest job still waiting at a queue head."""
    from fleet.state import JobTable
    from fleet.state import events as ev

    table = JobTable()
    assert table.oldest_ready_enqueued_ms() is None
    for job_id, queue, at in (("a", "x", 5), ("b", "y", 3), ("c", "y", 9)):
        table.apply(ev.enqueued({"id": job_id, "q": queue, "f": "m:f", "a": [], "k": {}},
                                at, 1.0, 1))
    assert table.oldest_ready_enqueued_ms() == 3
    table.apply(ev.dispatched("b", 1, 100, 10))
    assert table.oldest_ready_enqueued_ms() == 5
