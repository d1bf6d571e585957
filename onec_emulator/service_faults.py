"""Faults that the 1C HTTP service emulator applies to the next requests.

Tests queue faults per endpoint, and each request to that endpoint takes the
first queued fault, so ``add("customers", Fault.status(503), times=2)`` fails the next
two customer exports. Every fault kind is a small class with ``apply``, and
``Fault.from_dict`` builds one from the JSON that the admin endpoint receives.

Refused and stalled connections are not per-request faults, because they happen
before a request arrives; ``EmulatorService`` controls them.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Protocol

# Maximum seconds that a fault holds a request or an admin refusal or stall
# lasts, so a mistaken value cannot keep a test's server busy for hours.
MAX_HOLD_S = 600.0
MAX_TIMES = 10_000


class FaultTarget(Protocol):
    """Interface of the request being handled that faults act on."""

    def pause(self, seconds: float) -> None:
        """Wait, but return early when the emulator stops."""

    def send_json(
        self, status: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None: ...

    def send_raw(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None: ...

    def reset_connection(self) -> None:
        """Close the connection with a TCP RST instead of a response."""

    def drop_connection(self) -> None:
        """Close the connection with a FIN instead of a response."""


def check_number(name: str, value: object, minimum: float, maximum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum}, got {value}")


def check_status(name: str, value: object, minimum: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer HTTP status, got {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum}, got {value}")


@dataclass(frozen=True)
class Fault:
    """Base of the fault kinds; ``apply`` returns True if it sent the response."""

    kind: ClassVar[str] = ""

    def apply(self, target: FaultTarget) -> bool:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Fault:
        """Build a fault from ``{"kind": ..., <fields>}``, or raise ValueError."""
        fields = dict(data)
        kind = fields.pop("kind", None)
        fault_class = FAULT_KINDS.get(kind) if isinstance(kind, str) else None
        if fault_class is None:
            raise ValueError(
                f"unknown fault kind {kind!r}; expected one of "
                + ", ".join(sorted(FAULT_KINDS))
            )
        try:
            return fault_class(**fields)
        except TypeError as err:
            raise ValueError(f"invalid fields for fault kind {kind!r}: {err}") from err

    # Factories, so that tests read as Fault.status(503) or Fault.reset().

    @staticmethod
    def latency(ms: float) -> Fault:
        """Respond normally after ``ms`` milliseconds."""
        return Latency(ms)

    @staticmethod
    def status(http_status: int, retry_after: str | int | None = None) -> Fault:
        """Respond with an error status and the contract's JSON error body."""
        return StatusFault(
            http_status, None if retry_after is None else str(retry_after)
        )

    @staticmethod
    def rate_limit(retry_after: str | int = 1) -> Fault:
        """Respond 429 with ``Retry-After`` in seconds or as an HTTP-date."""
        return StatusFault(429, str(retry_after))

    @staticmethod
    def hang(seconds: float) -> Fault:
        """Send nothing for ``seconds``, then close: a client's read timeout fires."""
        return Hang(seconds)

    @staticmethod
    def reset() -> Fault:
        """Reset the connection (TCP RST) after reading the request."""
        return Reset()

    @staticmethod
    def malformed_json() -> Fault:
        """Respond 200 with a JSON body that is cut off in the middle."""
        return RawBody('{"id": "', 200)

    @staticmethod
    def raw_body(
        body: str, http_status: int = 200, content_type: str = "application/json"
    ) -> Fault:
        """Respond with ``body`` as UTF-8, for bodies of an unexpected shape."""
        return RawBody(body, http_status, content_type)

    @staticmethod
    def reject(code: str, message: str, http_status: int = 422) -> Fault:
        """Respond with a business rejection ``{"code": ..., "message": ...}``."""
        return Reject(code, message, http_status)


@dataclass(frozen=True)
class Latency(Fault):
    kind: ClassVar[str] = "latency"
    ms: float

    def __post_init__(self) -> None:
        check_number("ms", self.ms, 0, MAX_HOLD_S * 1000)

    def apply(self, target: FaultTarget) -> bool:
        target.pause(self.ms / 1000)
        return False


@dataclass(frozen=True)
class StatusFault(Fault):
    kind: ClassVar[str] = "status"
    http_status: int
    retry_after: str | None = None

    def __post_init__(self) -> None:
        check_status("http_status", self.http_status, 400, 599)
        if self.retry_after is not None and not isinstance(self.retry_after, str):
            raise ValueError("retry_after must be a string: seconds or an HTTP-date")

    def apply(self, target: FaultTarget) -> bool:
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        body = {
            "code": f"EMULATED_HTTP_{self.http_status}",
            "message": f"The emulator answered HTTP {self.http_status} on purpose.",
        }
        target.send_json(self.http_status, body, headers)
        return True


@dataclass(frozen=True)
class Hang(Fault):
    kind: ClassVar[str] = "hang"
    seconds: float

    def __post_init__(self) -> None:
        check_number("seconds", self.seconds, 0, MAX_HOLD_S)

    def apply(self, target: FaultTarget) -> bool:
        target.pause(self.seconds)
        target.drop_connection()
        return True


@dataclass(frozen=True)
class Reset(Fault):
    kind: ClassVar[str] = "reset"

    def apply(self, target: FaultTarget) -> bool:
        target.reset_connection()
        return True


@dataclass(frozen=True)
class RawBody(Fault):
    kind: ClassVar[str] = "raw_body"
    body: str
    http_status: int = 200
    content_type: str = "application/json"

    def __post_init__(self) -> None:
        if not isinstance(self.body, str) or not isinstance(self.content_type, str):
            raise ValueError("body and content_type must be strings")
        check_status("http_status", self.http_status, 200, 599)

    def apply(self, target: FaultTarget) -> bool:
        target.send_raw(self.http_status, self.body.encode("utf-8"), self.content_type)
        return True


@dataclass(frozen=True)
class Reject(Fault):
    kind: ClassVar[str] = "reject"
    code: str
    message: str
    http_status: int = 422

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not isinstance(self.message, str):
            raise ValueError("code and message must be strings")
        check_status("http_status", self.http_status, 400, 499)

    def apply(self, target: FaultTarget) -> bool:
        body = {"code": self.code, "message": self.message}
        target.send_json(self.http_status, body)
        return True


FAULT_KINDS: dict[str, type[Fault]] = {
    fault_class.kind: fault_class
    for fault_class in (Latency, StatusFault, Hang, Reset, RawBody, Reject)
}


@dataclass
class ScheduledFault:
    fault: Fault
    remaining: int


class FaultSchedule:
    """Per-endpoint queues of faults, each applied to its next ``times`` requests."""

    def __init__(self, endpoints: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[ScheduledFault]] = {
            endpoint: deque() for endpoint in endpoints
        }

    def add(self, endpoint: str, fault: Fault, times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` requests of ``endpoint``.

        Faults of one endpoint apply in the order they were added.
        """
        if endpoint not in self._queues:
            raise ValueError(
                f"unknown endpoint {endpoint!r}; expected one of "
                + ", ".join(sorted(self._queues))
            )
        if not isinstance(fault, Fault):
            raise ValueError(f"expected a Fault, got {type(fault).__name__}")
        if isinstance(times, bool) or not isinstance(times, int):
            raise ValueError(f"times must be an integer, got {times!r}")
        if not 1 <= times <= MAX_TIMES:
            raise ValueError(f"times must be between 1 and {MAX_TIMES}, got {times}")
        with self._lock:
            self._queues[endpoint].append(ScheduledFault(fault, times))

    def take(self, endpoint: str) -> Fault | None:
        """Return the fault for the next request of ``endpoint``, or None."""
        with self._lock:
            queue = self._queues.get(endpoint)
            if not queue:
                return None
            scheduled = queue[0]
            scheduled.remaining -= 1
            if scheduled.remaining == 0:
                queue.popleft()
            return scheduled.fault

    def pending(self) -> list[dict[str, Any]]:
        """Return the queued faults as ``{"endpoint", "fault", "times"}`` dicts."""
        with self._lock:
            return [
                {
                    "endpoint": endpoint,
                    "fault": scheduled.fault.to_dict(),
                    "times": scheduled.remaining,
                }
                for endpoint, queue in self._queues.items()
                for scheduled in queue
            ]

    def clear(self) -> None:
        with self._lock:
            for queue in self._queues.values():
                queue.clear()
