"""Property test: random DAGs with random outcomes and crashes (snapshots at random points):
live table == log replay == snapshot + log, and no job leaves ``waiting`` while a parent is
open."""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.state import TERMINAL
from fleet.state import events as ev
from fleet.state.record import WAITING
from fleet.wal import open_log
from fleet.wal.segments import snapshot_dir

from .test_properties import ARGUMENTS, WEIGHTS, Driver, recovered, run_history

DAG_ARGUMENTS = {**ARGUMENTS,
                 "enqueue_after": st.tuples(st.lists(st.integers(0, 40), min_size=1, max_size=4),
                                            st.booleans(), st.booleans())}
DAG_WEIGHTS = {**WEIGHTS, "enqueue_after": 6}
kinds = st.sampled_from([kind for kind, weight in DAG_WEIGHTS.items() for _ in range(weight)])
operations = kinds.flatmap(lambda kind: DAG_ARGUMENTS[kind].map(lambda args: (kind, *args)))
histories = st.lists(operations, min_size=20, max_size=120)


class DagDriver(Driver):
    """The property-test driver, plus children of random known jobs under fresh ids (so the
    check below can name each parent's outcome)."""

    children = 0

    def do_enqueue_after(self, picks, allow_failure, pass_results) -> None:
        known = sorted(self.table.jobs)
        if not known:
            return
        parents = sorted({known[pick % len(known)] for pick in picks})
        DagDriver.children += 1
        spec = {"id": f"child-{DagDriver.children}", "q": "default", "f": "tasks:work",
                "a": [], "k": {}, "dep": parents, "af": allow_failure, "pr": pass_results}
        assert self.record(ev.enqueued_after(spec, self.now_ms, 30.0, 1))

    def run(self, op: tuple) -> None:
        super().run(op)
        for job in list(self.table._jobs.values()):
            if job.id.startswith("child-") and job.state not in (WAITING, *TERMINAL):
                for parent in self.table.graph.parents_of(job.id):
                    state = self.table._state_of(parent)["state"]
                    assert state in (*TERMINAL, None) or parent.startswith("job-"), (job.id, parent)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories, st.floats(0, 1))
def test_random_dags_recover_to_the_live_table_from_the_log_and_from_a_snapshot(
        history, snapshot_point):
    """Random DAGs, outcomes and snapshot points: live == replay == snapshot + log."""
    data_dir = tempfile.mkdtemp(prefix="fleet-dag-")
    try:
        import tests.unit.test_properties as props
        props.Driver, original = DagDriver, props.Driver
        try:
            live = run_history(data_dir, history, snapshot_point)
        finally:
            props.Driver = original
        expected = live.canonical()
        from_snapshot = open_log(data_dir)
        assert from_snapshot.table.validate() == []
        assert from_snapshot.table.canonical() == expected
        from_snapshot.close()
        shutil.rmtree(snapshot_dir(data_dir))
        assert recovered(data_dir).canonical() == expected
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
