"""depot's trips to worker threads, and the scheduling priority the threads run at.

Every blocking call that depot's async layers (:mod:`depot.io.aio`,
:mod:`depot.fields.aio`, :mod:`depot.asgi`) run off the event loop goes
through :func:`run_sync`, anyio's ``to_thread.run_sync``, which, once
:func:`set_worker_niceness` has been called, first lowers the calling
worker thread's priority (Linux: each thread has its own niceness).

Why: the event loop's thread and the worker threads of the same process
share the CPUs.  When a worker is running, the loop thread woken by a timer
or a socket may wait for a CPU: under heavy transfers on a small machine,
that wait is most of the loop's lateness.  A niced worker gives the CPU up
to the waking loop thread at once.  The cost is the workers' own share when
the CPUs are saturated: transfers (the work the workers do) slow down first,
and a worker holding the GIL gets a CPU later, so the loop may wait longer
for the GIL when other processes keep every CPU busy.  Hence off by default.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable, Optional, Tuple, TypeVar

import anyio
import anyio.to_thread

__all__ = ["run_sync", "set_worker_niceness", "worker_niceness"]

T = TypeVar("T")

_niceness = 0
# Whether the setting was ever changed: until then a trip costs nothing more than anyio's.
_configured = False
_thread = threading.local()  # per worker thread: its niceness when first seen, and depot's increment applied


def worker_niceness() -> int:
    """The niceness increment of the worker threads that run depot's blocking calls (0: unchanged)."""
    return _niceness


def set_worker_niceness(niceness: int) -> None:
    """Run depot's blocking calls in worker threads ``niceness`` levels nicer than they were started (0 to 19).

    Each worker thread of anyio's pool lowers its own priority before it
    runs a call of depot's (an :class:`~depot.io.aio.AsyncStorage`
    operation, an :func:`~depot.fields.aio.attach`, a chunk read or an
    upload of the ASGI middleware), so that the event loop's thread gets a
    CPU first when both are ready to run.  The threads of that pool also run
    the application's own blocking work (Starlette's ``run_in_threadpool``,
    ``FileResponse``...), which then runs niced too on a thread depot has
    lowered.  Linux only (elsewhere a thread's niceness is the whole
    process's, event loop included): :class:`NotImplementedError`.  Setting
    it back to 0 restores the threads' priority only where the process may
    raise priorities (root, or ``RLIMIT_NICE``).
    """
    global _niceness, _configured
    if isinstance(niceness, bool) or not isinstance(niceness, int) or not 0 <= niceness <= 19:
        raise ValueError("niceness must be an int from 0 to 19, got %r" % (niceness,))
    if niceness and not sys.platform.startswith("linux"):
        raise NotImplementedError("per-thread niceness needs Linux: elsewhere it would lower the whole process")
    _niceness = niceness
    _configured = True


def _adjust_thread() -> None:
    wanted = _niceness
    if getattr(_thread, "applied", 0) == wanted:
        return
    tid = threading.get_native_id()
    base = getattr(_thread, "base", None)
    if base is None:
        base = _thread.base = os.getpriority(os.PRIO_PROCESS, tid)
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, base + wanted))
    except OSError:  # raising a priority back needs privileges: the thread stays as it is
        return
    _thread.applied = wanted


def _adjusted(func: Callable[..., T], args: Tuple[Any, ...]) -> T:
    _adjust_thread()
    return func(*args)


async def run_sync(func: Callable[..., T], *args: Any, limiter: Optional[anyio.CapacityLimiter] = None) -> T:
    """``func(*args)`` in a worker thread (anyio's pool, ``limiter``), at depot's worker niceness."""
    if not _configured:
        return await anyio.to_thread.run_sync(func, *args, limiter=limiter)
    return await anyio.to_thread.run_sync(_adjusted, func, args, limiter=limiter)
