"""One check's ARM calls, counted apart from every other check in the process.

A worker process runs many checks at once in threads (bot/pool.py) over one set of SDK
clients, so a counter on the clients counts them all: a report's `stats.armCalls` taken
as the difference of that counter counted the other checks' calls too. Each check counts
into its own `CallTally`, found through a context variable by the clients' pipeline
policy (bot/collect/clients.py); `ContextPool` carries it (and the log fields,
bot/logs.py) into the threads a check reads in, which a plain ThreadPoolExecutor does not.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

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


class ContextPool(ThreadPoolExecutor):
    """A thread pool whose tasks run in a copy of the submitter's context variables."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        context = contextvars.copy_context()
        return super().submit(lambda: context.run(fn, *args, **kwargs))
