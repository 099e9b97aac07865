"""One check's ARM calls, counted apart from every other check in the process.

A worker process runs many checks at once in threads (bot/pool.py) over one set of SDK
clients, so a counter on the clients counts them all: a report's `stats.armCalls` taken
as the difference of that counter counted the other checks' calls too. Each check counts
into its own `CallTally`, found through a context variable by the clients' pipeline
policy (bot/collect/clients.py); `ContextPool` carries it (and the log fields,
bot/logs.py) into the threads a check reads in, which a plain ThreadPoolExecutor does not,
and `ContextPolling` into the SDK's long-running-operation poller thread.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from azure.mgmt.core.polling.arm_polling import ARMPolling

P = ParamSpec("P")
T = TypeVar("T")


class CallTally:
    """Requests sent for one check, retries included."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self) -> None:
        with self._lock:
            self.count += 1


_current: contextvars.ContextVar[CallTally | None] = contextvars.ContextVar(
    "arm_call_tally", default=None
)


def current() -> CallTally | None:
    """The tally of the check running in this context, if any."""
    return _current.get()


@contextmanager
def tallied() -> Iterator[CallTally]:
    """Count the ARM calls made inside the block (and in the ContextPools it submits to)."""
    tally = CallTally()
    token = _current.set(tally)
    try:
        yield tally
    finally:
        _current.reset(token)


class ContextPolling(ARMPolling):
    """ARM's long-running-operation polling in a copy of the caller's context variables.

    The SDK's `LROPoller` polls from a thread of its own that starts with an empty
    context, so the polls of a check's Azure run command were counted for no check."""

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout)
        self._context = contextvars.copy_context()

    def run(self) -> None:
        self._context.run(super().run)


class ContextPool(ThreadPoolExecutor):
    """A thread pool whose tasks run in a copy of the submitter's context variables."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        context = contextvars.copy_context()
        return super().submit(lambda: context.run(fn, *args, **kwargs))
