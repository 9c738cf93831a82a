"""Enqueue options never become function arguments by mistake: fleet's own act on the job,
look-alikes from other queues are refused at enqueue, and a call the function cannot take is
refused before it is sent (Client.enqueue and Task.enqueue alike)."""

from __future__ import annotations

import pytest

import fleet
from fleet.errors import JobSpecError
from fleet.testing import InlineClient

pytestmark = pytest.mark.timeout(60, method="thread")


@fleet.task
def add(a: int, b: int) -> int:
    return a + b


@fleet.task
def wait_for(seconds: float, timeout: float) -> str:
    return f"{seconds}/{timeout}"


def plain(a: int, **extra: int) -> int:
    return a + sum(extra.values())


def test_task_enqueue_queue_timeout_and_retries_act_on_the_job():
    """task.enqueue(..., queue="high", timeout_s=, max_retries=) sets them on the job; the
    function gets only its own arguments."""
    client = InlineClient()
    job = add.enqueue(1, 2, queue="high", timeout_s=9, max_retries=0, client=client)
    info = job.info()
    assert info["queue"] == "high" and info["max_retries"] == 0
    assert job.result() == 3
    assert add.spec(1, 2, queue="low").queue == "low"
    assert add.enqueue(1, 2, client=client).info()["queue"] == "default"


def test_client_enqueue_queue_acts_on_the_job():
    """client.enqueue(func, ..., queue="high") puts the job on queue high."""
    client = InlineClient()
    job = client.enqueue(add, 2, 3, queue="high", job_id="q1")
    assert job.info()["queue"] == "high" and job.result() == 5


@pytest.mark.parametrize("name, fleet_name", [("countdown", "delay_s"), ("eta", "run_at"),
                                              ("timeout", "timeout_s"),
                                              ("retries", "max_retries"), ("task_id", "job_id")])
def test_look_alike_options_are_refused_at_enqueue(name, fleet_name):
    """countdown=, eta=, timeout=, retries=, task_id= are refused, naming fleet's option."""
    client = InlineClient()
    with pytest.raises(JobSpecError, match=f"{name}= is not an enqueue option of fleet "
                                           f"\\(use {fleet_name}=\\)"):
        add.enqueue(1, 2, client=client, **{name: 5})
    with pytest.raises(JobSpecError, match=f"use {fleet_name}="):
        client.enqueue("tests.jobs:add", 1, 2, **{name: 5})
    with pytest.raises(JobSpecError, match=f"use {fleet_name}="):
        client.enqueue(plain, 1, **{name: 5})
    assert len(client.table) == 0


def test_a_function_declaring_the_name_gets_it_as_an_argument():
    """A task whose function declares ``timeout`` receives it: not an option for it."""
    client = InlineClient()
    assert wait_for.enqueue(1, timeout=2, client=client).result() == "1/2"


def test_arguments_the_function_cannot_take_are_refused_before_sending():
    """An unknown keyword or a missing argument fails at enqueue, not on the worker."""
    client = InlineClient()
    with pytest.raises(JobSpecError, match="add\\(\\) cannot take these arguments"):
        add.enqueue(1, c=3, client=client)
    with pytest.raises(JobSpecError, match="cannot take these arguments"):
        client.enqueue(add, 1)
    with pytest.raises(JobSpecError, match="unknown enqueue option\\(s\\) urgency"):
        add.enqueue_with((1, 2), client=client, urgency=3)
    assert len(client.table) == 0
