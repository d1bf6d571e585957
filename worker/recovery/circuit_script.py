"""Runs ``circuit_script.lua`` and parses its reply.

The script is sent by its SHA-1 digest (EVALSHA). A server that does not have it
cached, after a restart or SCRIPT FLUSH, returns a NOSCRIPT error, and the
script is then sent in full with EVAL, which caches it again.
"""

from __future__ import annotations

import enum
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from worker.recovery.circuit_config import BoardConfig, BreakerConfig
from worker.recovery.circuit_states import BreakerView, Reason, State, Verdict

SCRIPT_SOURCE = (Path(__file__).with_name("circuit_script.lua")).read_text("utf-8")
# Redis names cached scripts by the SHA-1 digest of their source; it is an
# identifier here, not a security measure.
SCRIPT_SHA = hashlib.sha1(
    SCRIPT_SOURCE.encode("utf-8"), usedforsecurity=False
).hexdigest()


class Operation(enum.StrEnum):
    ALLOW = "allow"
    SUCCESS = "success"
    FAILURE = "failure"
    RELEASE = "release"
    STATUS = "status"
    FORCE_OPEN = "force_open"
    FORCE_CLOSE = "force_close"
    RESET = "reset"


@dataclass(frozen=True)
class BreakerKeys:
    """Redis keys of one breaker. The braces put them in one Redis Cluster slot."""

    state: str
    trials: str
    window: str

    @classmethod
    def for_breaker(cls, prefix: str, name: str) -> BreakerKeys:
        base = f"{prefix}:{{{name}}}"
        return cls(state=base, trials=f"{base}:trials", window=f"{base}:window")

    def as_list(self) -> list[str]:
        return [self.state, self.trials, self.window]


@dataclass(frozen=True)
class ScriptReply:
    view: BreakerView
    verdict: Verdict
    # Set only when this call changed the breaker's state.
    old_state: State | None
    reason: Reason | None


def run_script(
    client: redis.Redis,
    keys: BreakerKeys,
    arguments: Sequence[str | int | float],
) -> list[object]:
    """Run the script with EVALSHA, falling back to EVAL on NOSCRIPT."""
    try:
        reply = client.evalsha(SCRIPT_SHA, 3, *keys.as_list(), *arguments)
    except redis.exceptions.NoScriptError:
        reply = client.eval(SCRIPT_SOURCE, 3, *keys.as_list(), *arguments)
    return list(reply)


def script_arguments(
    operation: Operation,
    name: str,
    config: BreakerConfig,
    board: BoardConfig,
    *,
    successes: int = 0,
    token: str = "",
) -> list[str | int | float]:
    return [
        operation.value,
        name,
        board.channel,
        config.failure_threshold,
        round(config.recovery_timeout_s * 1000),
        config.success_threshold,
        config.half_open_max_calls,
        round(config.trial_lease_s * 1000),
        config.failure_rate or 0,
        round(config.window_s * 1000),
        config.minimum_calls,
        successes,
        token,
    ]


def text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def parse_forced(value: object) -> State | None:
    forced = text(value)
    return State.parse(forced) if forced else None


def parse_reply(reply: Sequence[object], received_at: float) -> ScriptReply:
    """Turn the script's reply list into a view of the breaker and a verdict."""
    (
        state,
        failures,
        retry_at,
        seq,
        generation,
        now,
        changed_at,
        half_open_successes,
        trials,
        forced,
        verdict,
        old_state,
        reason,
        next_lease_expiry,
    ) = reply
    view = BreakerView(
        state=State.parse(text(state)),
        failures=int(failures),  # type: ignore[call-overload]
        retry_at_ms=int(retry_at),  # type: ignore[call-overload]
        changed_at_ms=int(changed_at),  # type: ignore[call-overload]
        forced=parse_forced(forced),
        seq=int(seq),  # type: ignore[call-overload]
        generation=text(generation),
        redis_now_ms=int(now),  # type: ignore[call-overload]
        received_at=received_at,
        half_open_successes=int(half_open_successes),  # type: ignore[call-overload]
        trials=int(trials),  # type: ignore[call-overload]
        next_lease_expiry_ms=int(next_lease_expiry),  # type: ignore[call-overload]
    )
    old = text(old_state)
    reason_value = text(reason)
    return ScriptReply(
        view=view,
        verdict=Verdict(text(verdict)),
        old_state=State.parse(old) if old else None,
        reason=Reason(reason_value) if reason_value else None,
    )


def parse_message(
    data: bytes | str, received_at: float
) -> tuple[str, BreakerView] | None:
    """Parse a published change into (breaker name, view); None if malformed."""
    try:
        fields = json.loads(data)
        view = BreakerView(
            state=State.parse(fields["state"]),
            failures=int(fields["failures"]),
            retry_at_ms=int(fields["retry_at"]),
            changed_at_ms=int(fields["changed_at"]),
            forced=parse_forced(fields["forced"]),
            seq=int(fields["seq"]),
            generation=str(fields["generation"]),
            redis_now_ms=int(fields["now"]),
            received_at=received_at,
        )
        return str(fields["name"]), view
    except (ValueError, KeyError, TypeError):
        return None


class ScriptRunner:
    """Runs the script for one breaker with its keys and configuration."""

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        config: BreakerConfig,
        board: BoardConfig,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.name = name
        self.config = config
        self.board = board
        self.keys = BreakerKeys.for_breaker(board.key_prefix, name)
        self.monotonic = monotonic

    def __call__(
        self, operation: Operation, *, successes: int = 0, token: str = ""
    ) -> ScriptReply:
        """Run one operation; redis-py's errors reach the caller unchanged."""
        arguments = script_arguments(
            operation,
            self.name,
            self.config,
            self.board,
            successes=successes,
            token=token,
        )
        reply = run_script(self.client, self.keys, arguments)
        return parse_reply(reply, self.monotonic())
