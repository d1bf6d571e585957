"""Circuit breakers in front of 1C whose state is shared by every process in Redis.

One named breaker guards each 1C endpoint or operation. It is closed (calls go
through), open (calls are rejected at once with ``CircuitOpenError``, a
``OneCConnectionError`` carrying ``retry_after``) or half-open (a few trial
calls across all processes decide whether to close it again).

- Every transition is made by ``circuit_script.lua``, atomically and timed by
  Redis ``TIME``. Only the process whose script call made a transition gets
  it in the reply, and that process reports it to the listeners (the
  transition log).
- Each process keeps a copy of every breaker's state, updated by the script's
  replies and by the pub/sub subscriber thread (``circuit_sync``). A call
  through a closed breaker that succeeds makes no Redis round trip: successes
  are sent only while the copy shows failures to clear, or to hold a trial
  slot, or in batches for the failure-rate window.
- Failures are always counted in Redis. While Redis is unreachable, the
  breaker's ``fail_mode`` applies: an in-process breaker takes over (fail-open,
  the default) or every call is rejected (fail-closed).
- The wall clock (``clock``) is used only to express Redis times in this
  process's clock in ``retry_at()``, never to decide a transition.

Use ``breaker.call(func, ...)`` as the ``guard`` of ``OneCClient``, or the
``CircuitBreaker`` protocol of ``worker.recovery.breaker`` (``allow``,
``record_success``, ``record_failure``, ``retry_at``), not both for one call.
docs/circuit-breaker.md describes the design and the settings.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from freesport.exceptions import OneCIntegrationError
from worker.recovery.breaker import CircuitOpenError
from worker.recovery.circuit_config import BreakerConfig, FailMode, check_name
from worker.recovery.circuit_memory import MemoryChange
from worker.recovery.circuit_outage import Outage, OutageTracker
from worker.recovery.circuit_script import Operation, ScriptReply, ScriptRunner
from worker.recovery.circuit_states import (
    BreakerView,
    Scope,
    State,
    Transition,
    Verdict,
    datetime_from_ms,
)

if TYPE_CHECKING:
    from worker.recovery.circuit_board import BreakerBoard

logger = logging.getLogger("worker.recovery.circuit")

T = TypeVar("T")

# Successes counted locally for the failure-rate window are sent to Redis at
# least this often (per batch), besides every refresh and every failure.
SUCCESS_FLUSH_BATCH = 100
MAX_EXCEPTION_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class FailureInfo:
    """Cause of a failed call, for the transition log."""

    exception_type: str = ""
    message: str = ""

    @classmethod
    def from_exception(cls, error: BaseException) -> FailureInfo:
        kind = type(error)
        # Only the 1C client's messages are kept: they name the method, path
        # and status of the call. Other exceptions may quote the record being
        # sent, so only their type is stored.
        message = error.message if isinstance(error, OneCIntegrationError) else ""
        return cls(
            f"{kind.__module__}.{kind.__qualname__}",
            message[:MAX_EXCEPTION_MESSAGE_CHARS],
        )

    @classmethod
    def slow_call(cls, elapsed_s: float, limit_s: float) -> FailureInfo:
        return cls(
            message=(
                f"the call took {elapsed_s:.2f} s, above the slow-call threshold "
                f"of {limit_s:g} s"
            )
        )


class CallContext(threading.local):
    """Trial slot of the call that a thread is making through one breaker."""

    # Trial lease held in Redis, or the trial granted by the in-process breaker.
    lease: str | None = None
    memory_trial: object = None


def new_lease_token() -> str:
    """Return a lease token "<host>:<pid>:<random>", so a lease names its process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class RedisCircuitBreaker:
    """A named, thread-safe circuit breaker whose state lives in Redis.

    Create breakers through ``BreakerBoard.breaker(name)``, which gives every
    thread of a process the same instance.
    """

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        board: BreakerBoard,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = check_name(name)
        self.config = config
        self._board = board
        self._clock = clock
        self._monotonic = monotonic
        self._run = ScriptRunner(board.client, name, config, board.config, monotonic)
        self._outages = OutageTracker(name, config, board.config, monotonic)
        self._view: BreakerView | None = None
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        """Create the locks and per-thread state. A forked child runs it again."""
        self._view_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending_successes = 0
        self._call = CallContext()
        self._outages.reset()

    def __repr__(self) -> str:
        return f"RedisCircuitBreaker({self.name!r}, state={self.state})"

    # --- State as known to this process ------------------------------------------

    @property
    def clock(self) -> Callable[[], float]:
        """The wall clock this breaker uses to express Redis times locally."""
        return self._clock

    @property
    def view(self) -> BreakerView | None:
        """This process's latest copy of the shared state, None before the first."""
        return self._view

    @property
    def state(self) -> State:
        """The state this process applies now, without asking Redis."""
        outage = self._outages.current
        if outage is not None:
            if self.config.fail_mode is FailMode.CLOSED:
                return State.OPEN
            return outage.memory.state
        view = self._view
        return view.state if view is not None else State.CLOSED

    @property
    def redis_reachable(self) -> bool:
        return self._outages.current is None

    def retry_after(self) -> float | None:
        """Return seconds until calls may be tried again, or None while closed.

        None too while an operator keeps the breaker open, because no time is
        known then.
        """
        outage = self._outages.current
        if outage is not None:
            if self.config.fail_mode is FailMode.CLOSED:
                return max(outage.next_attempt - self._monotonic(), 0.0)
            return outage.memory.retry_after()
        view = self._view
        if view is None or view.lets_calls_through or view.forced is State.OPEN:
            return None
        resume_ms = self._resume_at_ms(view)
        waited_ms = resume_ms - view.estimated_redis_ms(self._monotonic())
        return max(waited_ms / 1000, 0.0)

    def retry_at(self) -> datetime | None:
        """Return when calls may be tried again, by this process's clock."""
        wait_s = self.retry_after()
        if wait_s is None:
            return None
        return datetime.fromtimestamp(self._clock() + wait_s, tz=UTC)

    @staticmethod
    def _resume_at_ms(view: BreakerView) -> float:
        """Redis time when a rejected call may be tried again."""
        if view.state is State.OPEN:
            return view.retry_at_ms
        # Half-open with every trial slot taken: a slot frees when a trial ends,
        # at the latest when its lease expires.
        return view.next_lease_expiry_ms or view.redis_now_ms

    def open_error(self) -> CircuitOpenError:
        """Build the error that replaces a call this breaker rejected."""
        state = self.state
        details: dict[str, Any] = {"breaker": self.name, "state": str(state)}
        view = self._view
        if self._outages.current is not None:
            # The in-process breaker's times are this process's clock.
            retry_at = self.retry_at()
            details["retry_at"] = retry_at.isoformat() if retry_at else None
            if self.config.fail_mode is FailMode.CLOSED:
                details["reason"] = "redis_unavailable"
            else:
                details["reason"] = "process_breaker_open"
        elif view is not None and view.forced is State.OPEN:
            details["reason"] = "forced_open"
            details["retry_at"] = None
        elif view is not None:
            details["retry_at"] = datetime_from_ms(self._resume_at_ms(view)).isoformat()
        details.setdefault("retry_at", None)
        return CircuitOpenError(
            f"the circuit breaker {self.name} is {state}, so the call to 1C was "
            "not made",
            details=details,
            retry_after=self.retry_after(),
        )

    # --- Guarding calls ------------------------------------------------------

    def call(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``func`` if the breaker allows it and record how it ended.

        Raises ``CircuitOpenError`` without running ``func`` when the breaker
        rejects the call. A call slower than ``config.slow_call_s`` counts as
        a failure, but its result is still returned.
        """
        if not self.allow():
            raise self.open_error()
        started = self._monotonic()
        try:
            result = func(*args, **kwargs)
        except Exception as error:
            self.record_failure(error)
            raise
        except BaseException:
            # KeyboardInterrupt, SystemExit: not a verdict on 1C.
            self.release()
            raise
        slow_call_s = self.config.slow_call_s
        elapsed_s = self._monotonic() - started
        if slow_call_s is not None and elapsed_s > slow_call_s:
            self.record_slow_call(elapsed_s)
        else:
            self.record_success()
        return result

    def allow(self) -> bool:
        """Return whether a call may go through now, taking a trial slot if needed.

        The thread that got True reports the call with ``record_success``,
        ``record_failure`` or ``release``.
        """
        call = self._call
        if call.lease is not None or call.memory_trial is not None:
            self._release_abandoned(call)
        view = self._view
        if (
            view is not None
            and view.lets_calls_through
            and self._outages.current is None
            and self._board.synced
        ):
            return True
        return self._allow_slow(call)

    def _allow_slow(self, call: CallContext) -> bool:
        self._board.ensure_sync()
        if not self._outages.attempt_due():
            return self._allow_without_redis(call)
        view = self._view
        if view is not None and self._board.synced and self._rejects_locally(view):
            return False
        token = new_lease_token()
        reply = self._run_safely(Operation.ALLOW, token=token)
        if reply is None:
            return self._allow_without_redis(call)
        if reply.verdict is Verdict.TRIAL:
            call.lease = token
        return reply.verdict in (Verdict.ALLOWED, Verdict.TRIAL)

    def _rejects_locally(self, view: BreakerView) -> bool:
        """Return whether the copy shows a rejection that needs no round trip."""
        if view.forced is State.OPEN:
            return True
        if view.state is not State.OPEN:
            return False
        return view.estimated_redis_ms(self._monotonic()) < view.retry_at_ms

    def record_success(self) -> None:
        """Report that the call this thread made succeeded.

        The slow-call rule applies only in ``call()``, which times the call
        itself: through this method the caller may time more than the call.
        """
        lease, memory_trial = self._end_call()
        outage = self._outages.current
        if outage is not None:
            self._record_without_redis(outage, memory_trial, None)
            return
        view = self._view
        if lease is not None or view is None or view.resets_on_success:
            self._send_success(lease)
        elif (
            self.config.failure_rate is not None
            and view.forced is None
            and view.state is State.CLOSED
        ):
            self._count_success_locally()

    def record_failure(self, error: BaseException) -> None:
        """Report that the call this thread made failed with ``error``.

        Rejections by a breaker (``CircuitOpenError``) and ``config.excluded``
        errors do not count: they only give back a trial slot.
        """
        lease, memory_trial = self._end_call()
        if isinstance(error, (CircuitOpenError, *self.config.excluded)):
            self._release(lease, memory_trial)
            return
        self._record_failure(lease, memory_trial, FailureInfo.from_exception(error))

    def record_slow_call(self, elapsed_s: float) -> None:
        """Report that the call this thread made succeeded, but too slowly."""
        lease, memory_trial = self._end_call()
        limit_s = self.config.slow_call_s or 0.0
        failure = FailureInfo.slow_call(elapsed_s, limit_s)
        self._record_failure(lease, memory_trial, failure)

    def release(self) -> None:
        """End this thread's call without a verdict, giving back its trial slot."""
        self._release(*self._end_call())

    def _end_call(self) -> tuple[str | None, object]:
        """Return and forget the trial slot of this thread's call."""
        call = self._call
        lease, memory_trial = call.lease, call.memory_trial
        if lease is not None or memory_trial is not None:
            call.lease, call.memory_trial = None, None
        return lease, memory_trial

    # --- Operator actions and status -----------------------------------------

    def force_open(self, actor: str = "") -> BreakerView:
        """Hold the breaker open, rejecting every call, until closed or reset."""
        return self._run_reporting(Operation.FORCE_OPEN, actor=actor).view

    def force_close(self, actor: str = "") -> BreakerView:
        """Hold the breaker closed, counting no failures, until reset."""
        return self._run_reporting(Operation.FORCE_CLOSE, actor=actor).view

    def reset(self, actor: str = "") -> BreakerView:
        """Close the breaker, clear its counters and end an operator's hold."""
        return self._run_reporting(Operation.RESET, actor=actor).view

    def status(self) -> BreakerView:
        """Load the shared state from Redis. Raises redis-py's errors.

        An open breaker whose recovery timeout has passed becomes half-open
        here, as it would on the next call.
        """
        return self._run_reporting(Operation.STATUS).view

    def refresh(self, *, force: bool = False) -> BreakerView | None:
        """Reload the shared state and send locally counted successes.

        During an outage Redis is tried once per retry interval, or now with
        ``force``. Returns None while Redis is unreachable.
        """
        if not force and not self._outages.attempt_due():
            return None
        reply = self._run_safely(Operation.STATUS, successes=self._take_pending())
        return reply.view if reply is not None else None

    def apply_published(self, view: BreakerView) -> None:
        """Take a change published by another process's script call."""
        self._apply(view)

    # --- Redis round trips -----------------------------------------------------

    def _send_success(self, lease: str | None) -> None:
        successes = self._take_pending() + 1
        reply = self._run_safely(
            Operation.SUCCESS, successes=successes, token=lease or ""
        )
        if reply is None and self._outages.current is not None:
            self._record_without_redis(self._outages.current, None, None)

    def _record_failure(
        self, lease: str | None, memory_trial: object, failure: FailureInfo
    ) -> None:
        outage = self._outages.current
        if outage is not None and not self._outages.attempt_due():
            self._record_without_redis(outage, memory_trial, failure)
            return
        reply = self._run_safely(
            Operation.FAILURE,
            successes=self._take_pending(),
            token=lease or "",
            failure=failure,
        )
        if reply is None and self._outages.current is not None:
            self._record_without_redis(self._outages.current, memory_trial, failure)

    def _release(self, lease: str | None, memory_trial: object) -> None:
        outage = self._outages.current
        if memory_trial is not None and outage is not None:
            outage.memory.release(memory_trial)
        if lease is not None and outage is None:
            self._run_safely(Operation.RELEASE, token=lease)

    def _release_abandoned(self, call: CallContext) -> None:
        """Give back a trial slot whose call was never reported."""
        logger.debug(
            "Circuit breaker %s: releasing the trial slot of a call that was "
            "never reported",
            self.name,
        )
        lease, memory_trial = call.lease, call.memory_trial
        call.lease, call.memory_trial = None, None
        self._release(lease, memory_trial)

    def _count_success_locally(self) -> None:
        with self._pending_lock:
            self._pending_successes += 1
            flush = self._pending_successes >= SUCCESS_FLUSH_BATCH
        if flush:
            self.refresh()

    def _take_pending(self) -> int:
        with self._pending_lock:
            pending, self._pending_successes = self._pending_successes, 0
        return pending

    def _run_reporting(
        self,
        operation: Operation,
        *,
        successes: int = 0,
        token: str = "",
        failure: FailureInfo | None = None,
        actor: str = "",
    ) -> ScriptReply:
        """Run the script, take its view and report the transition it made."""
        reply = self._run(operation, successes=successes, token=token)
        self._outages.end()
        self._apply(reply.view)
        if reply.old_state is not None and reply.reason is not None:
            failure = failure or FailureInfo()
            self._board.notify_transition(
                Transition(
                    breaker=self.name,
                    old_state=reply.old_state,
                    new_state=reply.view.state,
                    reason=reply.reason,
                    failures=reply.view.failures,
                    changed_at=datetime_from_ms(reply.view.changed_at_ms),
                    scope=Scope.SHARED,
                    exception_type=failure.exception_type,
                    exception_message=failure.message,
                    actor=actor,
                )
            )
        return reply

    def _run_safely(
        self,
        operation: Operation,
        *,
        successes: int = 0,
        token: str = "",
        failure: FailureInfo | None = None,
    ) -> ScriptReply | None:
        """Run the script. On a Redis error, enter the outage mode and return None."""
        try:
            return self._run_reporting(
                operation, successes=successes, token=token, failure=failure
            )
        except redis.RedisError as error:
            self._outages.begin(error)
            return None

    def _apply(self, view: BreakerView) -> None:
        with self._view_lock:
            old = self._view
            if not view.is_newer_than(old):
                return
            self._view = view
        if (
            old is None
            or old.state is not view.state
            or old.forced is not view.forced
            or old.changed_at_ms != view.changed_at_ms
        ):
            self._board.notify_view_changed(self.name, old, view)

    # --- While Redis is unreachable ------------------------------------------------

    def _allow_without_redis(self, call: CallContext) -> bool:
        outage = self._outages.current
        if outage is None:
            # Redis became reachable in another thread since this call started.
            return True
        outage.calls += 1
        if self.config.fail_mode is FailMode.CLOSED:
            return False
        verdict, trial, changes = outage.memory.allow()
        call.memory_trial = trial
        self._report_memory_changes(changes, None)
        return verdict is not Verdict.REJECTED

    def _record_without_redis(
        self, outage: Outage, memory_trial: object, failure: FailureInfo | None
    ) -> None:
        if self.config.fail_mode is FailMode.CLOSED:
            return
        if failure is None:
            changes = outage.memory.record_success(memory_trial)
        else:
            changes = outage.memory.record_failure(memory_trial)
        self._report_memory_changes(changes, failure)

    def _report_memory_changes(
        self, changes: list[MemoryChange], failure: FailureInfo | None
    ) -> None:
        for change in changes:
            info = failure if change.new_state is State.OPEN and failure else None
            self._board.notify_transition(
                Transition(
                    breaker=self.name,
                    old_state=change.old_state,
                    new_state=change.new_state,
                    reason=change.reason,
                    failures=change.failures,
                    changed_at=datetime.fromtimestamp(self._clock(), tz=UTC),
                    scope=Scope.PROCESS,
                    exception_type=info.exception_type if info else "",
                    exception_message=info.message if info else "",
                )
            )


def breaker_for_operation(operation: str) -> RedisCircuitBreaker:
    """Return this process's breaker of ``operation`` from the default board.

    Set ``RECOVERY_CIRCUIT_BREAKER`` to this function's dotted path to use it
    in the recovery dispatcher.
    """
    from worker.recovery.circuit_board import default_board

    return default_board().breaker(operation)
