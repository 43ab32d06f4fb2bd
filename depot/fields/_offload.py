"""Keep the tracker's storage deletions off a running event loop.

The transaction trackers delete files from inside the ORM's commit and
rollback events.  Under SQLAlchemy's ``AsyncSession`` those events run in
the event loop's own thread (the ORM's sync code runs in a greenlet there),
so a delete on a remote storage would stall every other request.  When the
calling thread runs an asyncio loop, :func:`off_loop` hands the work to a
small pool of worker threads and returns at once; elsewhere nothing changes:
blocking code keeps deleting before ``commit()`` returns.

Scheduled deletions are never dropped: the pool's threads finish their
queue before the interpreter exits.  :func:`pending` lets an application or
a test wait for the deletions scheduled so far.  Only standard-library
modules are used here, so blocking applications pay nothing for it.
"""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, List, Optional, Set

__all__ = ["off_loop", "pending"]

#: Threads deleting files for event loops; deletions are small, short calls.
MAX_WORKERS = 4

_executor: Optional[ThreadPoolExecutor] = None
_pending: Set[Future] = set()
_lock = threading.Lock()


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def off_loop(fn: Callable[..., Any], *args: Any) -> bool:
    """Run ``fn(*args)`` in a worker thread if this thread runs an event loop.

    Returns ``False``, having done nothing, when it does not: the caller
    then runs ``fn`` itself.  ``fn`` must not raise (the tracker's deleter
    logs its failures).
    """
    global _executor
    if not _in_event_loop():
        return False
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="depot-delete")
        future = _executor.submit(fn, *args)
        _pending.add(future)
    future.add_done_callback(_forget)
    return True


def _forget(future: Future) -> None:
    with _lock:
        _pending.discard(future)


def pending() -> List[Future]:
    """The deletions scheduled by :func:`off_loop` and not finished yet."""
    with _lock:
        return list(_pending)
