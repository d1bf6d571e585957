"""Listener that writes every breaker transition to the ``BreakerTransition`` table.

Rows are written by a background thread of the process that made the
transition, for two reasons: the caller may be inside a database transaction
that rolls back, and a database write must not slow the guarded call. Queued
rows are written at interpreter exit (atexit). A process that ends without it,
through ``os._exit`` or SIGKILL, loses the rows still queued, which are those
of its last few milliseconds.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import socket
import threading
import weakref

from django.db import DatabaseError, connection

from worker.recovery.circuit_states import BreakerListener, Transition

logger = logging.getLogger("freesport.breakers")

# Maximum wait at exit, or in flush(), for queued rows to be written.
FLUSH_TIMEOUT_S = 10.0


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop:
    pass


class TransitionRecorder(BreakerListener):
    """Queues transitions and writes them from one thread per process."""

    def __init__(self) -> None:
        self._start_fresh()
        _recorders.add(self)

    def _start_fresh(self) -> None:
        self._queue: queue.SimpleQueue[Transition | _Flush | _Stop] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def transition(self, transition: Transition) -> None:
        self._ensure_thread()
        self._queue.put(transition)

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait until every queued transition is written. Return False on timeout."""
        if self._thread is None or not self._thread.is_alive():
            return True
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout_s)

    def close(self) -> None:
        if not self.flush():
            logger.error(
                "Circuit breaker transitions were not all written within %.0f s",
                FLUSH_TIMEOUT_S,
            )
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_Stop())
            self._thread.join(FLUSH_TIMEOUT_S)
        self._thread = None

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="circuit-breaker-recorder", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if isinstance(item, _Stop):
                    return
                if isinstance(item, _Flush):
                    item.done.set()
                    continue
                try:
                    write_transition(item)
                except Exception:
                    # The thread must go on writing the rows that follow.
                    logger.exception("Transition not written: %s", item.summary)
        finally:
            connection.close()

    def _after_fork_in_child(self) -> None:
        # The parent's thread does not exist in the child, and its queue and
        # lock may have been in use by it.
        self._start_fresh()


def write_transition(transition: Transition) -> None:
    """Insert one row. A database error is logged, not raised."""
    from freesport.breakers.models import BreakerTransition

    try:
        BreakerTransition.objects.create(
            breaker=transition.breaker,
            old_state=transition.old_state.value,
            new_state=transition.new_state.value,
            reason=transition.reason.value,
            failure_count=transition.failures,
            exception_type=transition.exception_type,
            exception_message=transition.exception_message,
            scope=transition.scope.value,
            actor=transition.actor,
            process=f"{socket.gethostname()}:{os.getpid()}",
            changed_at=transition.changed_at,
        )
    except DatabaseError as error:
        logger.error(
            "Transition not written to the log (%s: %s): %s",
            type(error).__name__,
            error,
            transition.summary,
        )
    finally:
        # The thread lives as long as the process, and transitions are rare,
        # so the connection is not kept open between them.
        connection.close()


_recorders: weakref.WeakSet[TransitionRecorder] = weakref.WeakSet()


def _flush_all_at_exit() -> None:
    for recorder in list(_recorders):
        recorder.close()


def _after_fork_in_child() -> None:
    for recorder in list(_recorders):
        recorder._after_fork_in_child()


atexit.register(_flush_all_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
