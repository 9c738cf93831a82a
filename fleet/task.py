"""Tasks: functions that know how to enqueue themselves (``@fleet.task``).

    @fleet.task(queue="emails", max_retries=5, timeout_s=60)
    def send_welcome(user_id: int) -> str:
        ...

    send_welcome(7)                        # an ordinary call, run here and now
    job = send_welcome.enqueue(7)          # a job for a worker: "myapp.emails:send_welcome"
    job.result(timeout_s=30)

A task enqueues through the client given as ``client=``, else the default client: the one set
with ``fleet.configure(client)``, else one built on first use from the settings (``FLEET_*``
environment, ``FLEET_CONFIG`` file, defaults). Workers import the task by its path, so a task
must be a module-level function of a module on the workers' allow-list.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, overload

from .client import Client
from .specs import build_spec, func_path

if TYPE_CHECKING:
    from .aio import AsyncClient, AsyncJob
from .config import load_settings
from .errors import JobSpecError
from .handles import Job
from .job import DEFAULT_QUEUE, JobSpec, validate_spec
from .options import RESERVED, check_call, check_options

_default_client: Client | None = None
_default_lock = threading.Lock()


def configure(client: Client | None) -> None:
    """Make ``client`` the default client of every task (None: build one from settings again).

    ``fleet.configure(fleet.testing.InlineClient())`` runs every ``task.enqueue`` inline.
    """
    global _default_client
    with _default_lock:
        _default_client = client


def default_client() -> Client:
    """The configured client, or one built from the settings on first use.

    Raises:
        ConfigError: a FLEET_* variable or the config file has a bad value.
    """
    global _default_client
    with _default_lock:
        if _default_client is None:
            settings, _ = load_settings()
            _default_client = Client(settings=settings)
        return _default_client


class Task:
    """A function with enqueue options. Calling it runs the function; ``enqueue`` makes a job."""

    __name__: str  # the function's, copied by functools.update_wrapper

    def __init__(self, fn: Callable[..., Any], queue: str = DEFAULT_QUEUE,
                 timeout_s: float | None = None, max_retries: int | None = None) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.queue = queue
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.path = func_path(fn)
        # Bad options fail at import time, not at the first enqueue.
        validate_spec(JobSpec(id="check", func=self.path, queue=queue, timeout_s=timeout_s,
                              max_retries=max_retries).to_wire())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.path} queue={self.queue}>"

    def enqueue(self, *args: Any, job_id: str | None = None, queue: str | None = None,
                timeout_s: float | None = None, max_retries: int | None = None,
                delay_s: float | None = None, run_at: float | None = None,
                depends_on: Sequence[Any] | None = None, allow_failure: bool = False,
                pass_results: bool = False, client: Client | None = None,
                key: str | None = None, priority: int = 0, expires_s: float | None = None,
                **kwargs: Any) -> Job:
        """Enqueue ``fn(*args, **kwargs)`` and wait until it is durable.

        ``job_id``, ``queue``, ``timeout_s``, ``max_retries`` (these three override the
        task's own for this job), ``delay_s``, ``run_at`` (epoch seconds), ``depends_on``,
        ``allow_failure``, ``pass_results`` (docs/workflows.md), ``key``, ``priority``,
        ``expires_s`` (docs/flow-control.md) and ``client`` are
        options, not arguments of the function; use ``enqueue_with`` for a function that
        takes those names.

        Raises:
            JobSpecError: the job is invalid or was rejected, the function cannot take these
                arguments, or a keyword looks like an option fleet does not have
                (``countdown``, ``timeout``...).
            NoReceiptError: the controller did not answer in time, or none is running.
        """
        check_options(self.fn, kwargs, how=f"{self.__name__}.enqueue_with(args, kwargs)")
        options = _given(queue=queue, timeout_s=timeout_s, max_retries=max_retries)
        return self.enqueue_with(args, kwargs, job_id=job_id, delay_s=delay_s, run_at=run_at,
                                 depends_on=depends_on, allow_failure=allow_failure,
                                 pass_results=pass_results, client=client, key=key,
                                 priority=priority, expires_s=expires_s, **options)

    async def aenqueue(self, *args: Any, job_id: str | None = None, queue: str | None = None,
                       timeout_s: float | None = None, max_retries: int | None = None,
                       delay_s: float | None = None, run_at: float | None = None,
                       client: AsyncClient | None = None, **kwargs: Any) -> AsyncJob:
        """``enqueue`` for asyncio code, through ``client=`` or ``fleet.configure_async``'s
        AsyncClient (else one built from the settings for this event loop)."""
        job = self.spec(*args, job_id=job_id, queue=queue, timeout_s=timeout_s,
                        max_retries=max_retries, delay_s=delay_s, run_at=run_at, **kwargs)
        from .aio import default_async_client  # redis.asyncio only for asyncio code

        return await (client or default_async_client()).enqueue_spec(job)

    def enqueue_with(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
                     client: Client | None = None, **options: Any) -> Job:
        """Enqueue with explicit ``args`` / ``kwargs``; ``options`` are those of ``enqueue``
        (``job_id``, ``queue``, ``timeout_s``, ``max_retries``, ``delay_s``, ``run_at``)."""
        return (client or default_client()).enqueue_spec(self.spec_with(args, kwargs,
                                                                         **options))

    def spec(self, *args: Any, job_id: str | None = None, queue: str | None = None,
             timeout_s: float | None = None, max_retries: int | None = None,
             delay_s: float | None = None, run_at: float | None = None,
             depends_on: Sequence[Any] | None = None, allow_failure: bool = False,
             pass_results: bool = False, key: str | None = None, priority: int = 0,
             expires_s: float | None = None, **kwargs: Any) -> JobSpec:
        """The JobSpec ``enqueue`` would send, for ``client.enqueue_many([...])``."""
        check_options(self.fn, kwargs, how=f"{self.__name__}.spec_with(args, kwargs)")
        options = _given(queue=queue, timeout_s=timeout_s, max_retries=max_retries)
        return self.spec_with(args, kwargs, job_id=job_id, delay_s=delay_s, run_at=run_at,
                              depends_on=depends_on, allow_failure=allow_failure,
                              pass_results=pass_results, key=key, priority=priority,
                              expires_s=expires_s, **options)

    def spec_with(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                  **options: Any) -> JobSpec:
        """The JobSpec for explicit ``args`` / ``kwargs`` and options (see ``enqueue_with``).

        Raises:
            JobSpecError: an option fleet does not have, or arguments the function cannot
                take.
        """
        unknown = sorted(set(options) - set(RESERVED))
        if unknown:
            raise JobSpecError(f"unknown enqueue option(s) {', '.join(unknown)} for "
                               f"{self.path}; options are {', '.join(RESERVED)}")
        check_call(self.fn, args, kwargs or {})
        settings: dict[str, Any] = {"queue": self.queue, "timeout_s": self.timeout_s,
                                     "max_retries": self.max_retries}
        settings.update(options)
        return build_spec(self.fn, args, kwargs, **settings)


def _given(**options: Any) -> dict[str, Any]:
    """The options that were given (None: the task's own)."""
    return {name: value for name, value in options.items() if value is not None}


@overload
def task(fn: Callable[..., Any], *, queue: str = ..., timeout_s: float | None = ...,
         max_retries: int | None = ...) -> Task: ...


@overload
def task(fn: None = None, *, queue: str = ..., timeout_s: float | None = ...,
         max_retries: int | None = ...) -> Callable[[Callable[..., Any]], Task]: ...


def task(fn: Callable[..., Any] | None = None, *, queue: str = DEFAULT_QUEUE,
         timeout_s: float | None = None, max_retries: int | None = None
         ) -> Task | Callable[[Callable[..., Any]], Task]:
    """Decorate a module-level function as a Task: ``@fleet.task`` or ``@fleet.task(...)``.

    Args:
        queue: the queue its jobs go to (workers take queues in the order they are given).
        timeout_s: seconds before a run is stopped (None: the controller's default).
        max_retries: retries after the first attempt (None: the controller's default).

    Raises:
        JobSpecError: the function is not importable by path, or an option is invalid.
    """
    def wrap(function: Callable[..., Any]) -> Task:
        return Task(function, queue=queue, timeout_s=timeout_s, max_retries=max_retries)

    return wrap(fn) if fn is not None else wrap
