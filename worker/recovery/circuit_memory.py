"""In-process circuit breaker that guards calls while Redis is unreachable.

It follows the rules of ``circuit_script.lua`` (consecutive failures, the
optional failure rate, recovery timeout, trial calls, success threshold) for
the calls of one process only, timed by the local monotonic clock. Each state
is a small class; ``MemoryCircuit`` holds the current one under a lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from worker.recovery.circuit_config import BreakerConfig
from worker.recovery.circuit_states import Reason, State, Verdict


@dataclass(frozen=True)
class MemoryChange:
    """A transition of the in-process breaker, for the owner to report."""

    old_state: State
    new_state: State
    reason: Reason
    failures: int


class CircuitState:
    """Behaviour of the in-process breaker in one state."""

    state: State

    def allow(self, circuit: MemoryCircuit) -> Verdict:
        raise NotImplementedError

    def on_success(self, circuit: MemoryCircuit, trial: object) -> None:
        """Count a success; a success outside the state's rules is ignored.

        ``trial`` is the state object that granted the call a trial slot, or
        None, so a trial granted before a later transition is recognised.
        """

    def on_failure(self, circuit: MemoryCircuit, trial: object) -> None:
        """Count a failure; a failure outside the state's rules is ignored."""

    def release(self, circuit: MemoryCircuit, trial: object) -> None:
        """Give back a trial slot whose call ended with an excluded error."""

    def retry_after(self, circuit: MemoryCircuit) -> float | None:
        return None


class ClosedState(CircuitState):
    state = State.CLOSED

    def allow(self, circuit: MemoryCircuit) -> Verdict:
        return Verdict.ALLOWED

    def on_success(self, circuit: MemoryCircuit, trial: object) -> None:
        circuit.failures = 0
        circuit.window.add(failed=False)

    def on_failure(self, circuit: MemoryCircuit, trial: object) -> None:
        circuit.failures += 1
        circuit.window.add(failed=True)
        if circuit.failures >= circuit.config.failure_threshold:
            circuit.move_to(OpenState(circuit), Reason.FAILURE_THRESHOLD)
        elif circuit.window.rate_exceeded():
            circuit.move_to(OpenState(circuit), Reason.FAILURE_RATE)


class OpenState(CircuitState):
    state = State.OPEN

    def __init__(self, circuit: MemoryCircuit) -> None:
        self.retry_at = circuit.monotonic() + circuit.config.recovery_timeout_s

    def allow(self, circuit: MemoryCircuit) -> Verdict:
        if circuit.monotonic() < self.retry_at:
            return Verdict.REJECTED
        circuit.move_to(HalfOpenState(), Reason.RECOVERY_TIMEOUT)
        return circuit.current.allow(circuit)

    def retry_after(self, circuit: MemoryCircuit) -> float | None:
        return max(self.retry_at - circuit.monotonic(), 0.0)


class HalfOpenState(CircuitState):
    state = State.HALF_OPEN

    def __init__(self) -> None:
        self.trials = 0
        self.successes = 0

    def allow(self, circuit: MemoryCircuit) -> Verdict:
        if self.trials >= circuit.config.half_open_max_calls:
            return Verdict.REJECTED
        self.trials += 1
        return Verdict.TRIAL

    def on_success(self, circuit: MemoryCircuit, trial: object) -> None:
        if trial is not self:
            return
        self.trials -= 1
        self.successes += 1
        if self.successes >= circuit.config.success_threshold:
            circuit.failures = 0
            circuit.move_to(ClosedState(), Reason.SUCCESS_THRESHOLD)

    def on_failure(self, circuit: MemoryCircuit, trial: object) -> None:
        if trial is self:
            circuit.failures = 1
            circuit.move_to(OpenState(circuit), Reason.TRIAL_FAILED)

    def release(self, circuit: MemoryCircuit, trial: object) -> None:
        if trial is self:
            self.trials -= 1

    def retry_after(self, circuit: MemoryCircuit) -> float | None:
        return 0.0


class OutcomeWindow:
    """Outcomes of the last ``window_s`` seconds, for the failure-rate rule."""

    def __init__(self, config: BreakerConfig, monotonic: Callable[[], float]) -> None:
        self.config = config
        self.monotonic = monotonic
        self.outcomes: deque[tuple[float, bool]] = deque()
        self.failures = 0

    def add(self, *, failed: bool) -> None:
        if self.config.failure_rate is None:
            return
        self.outcomes.append((self.monotonic(), failed))
        self.failures += failed
        self.expire()

    def expire(self) -> None:
        oldest = self.monotonic() - self.config.window_s
        while self.outcomes and self.outcomes[0][0] <= oldest:
            _, failed = self.outcomes.popleft()
            self.failures -= failed

    def rate_exceeded(self) -> bool:
        rate = self.config.failure_rate
        calls = len(self.outcomes)
        if rate is None or calls < self.config.minimum_calls:
            return False
        return self.failures >= rate * calls

    def clear(self) -> None:
        self.outcomes.clear()
        self.failures = 0


class MemoryCircuit:
    """The in-process breaker; thread-safe. Methods return the transition made."""

    def __init__(
        self, config: BreakerConfig, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.monotonic = monotonic
        self.failures = 0
        self.window = OutcomeWindow(config, monotonic)
        self.current: CircuitState = ClosedState()
        self._lock = threading.Lock()
        self._changes: list[MemoryChange] = []

    @property
    def state(self) -> State:
        return self.current.state

    def move_to(self, new: CircuitState, reason: Reason) -> None:
        """Enter ``new``; called by the state classes with the lock held."""
        self._changes.append(
            MemoryChange(self.current.state, new.state, reason, self.failures)
        )
        if new.state is State.CLOSED:
            self.window.clear()
        self.current = new

    def allow(self) -> tuple[Verdict, object, list[MemoryChange]]:
        """Decide on one call; return the verdict, its trial and the transitions.

        The trial is the object to pass back to ``record_*`` or ``release``,
        None unless the verdict is TRIAL.
        """
        with self._lock:
            verdict = self.current.allow(self)
            trial = self.current if verdict is Verdict.TRIAL else None
            return verdict, trial, self._take_changes()

    def record_success(self, trial: object) -> list[MemoryChange]:
        with self._lock:
            self.current.on_success(self, trial)
            return self._take_changes()

    def record_failure(self, trial: object) -> list[MemoryChange]:
        with self._lock:
            self.current.on_failure(self, trial)
            return self._take_changes()

    def release(self, trial: object) -> None:
        with self._lock:
            self.current.release(self, trial)

    def retry_after(self) -> float | None:
        """Return seconds until trial calls may start, or None while closed."""
        with self._lock:
            return self.current.retry_after(self)

    def _take_changes(self) -> list[MemoryChange]:
        changes, self._changes = self._changes, []
        return changes
