"""Countdowns of retries: exponential backoff with a cap and full jitter.

``full_jitter_countdown`` is the one formula: a uniform draw between 0 and
``min(cap, base * 2 ** (attempt - 1))``, raised to the server's Retry-After when
that is longer. Full jitter spreads the retries of many tasks that failed
together over the whole window, so they do not hit 1C again at the same moment.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings


class RandomSource(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def backoff_ceiling(attempt: int, base_s: float, cap_s: float) -> float:
    """Return the longest countdown after failed attempt number ``attempt`` (from 1)."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    # Past 2**64 the float product overflows long before it matters: cap it.
    exponent = min(attempt - 1, 64)
    return min(cap_s, base_s * 2.0**exponent)


def full_jitter_countdown(
    attempt: int,
    base_s: float,
    cap_s: float,
    retry_after_s: float | None = None,
    rng: RandomSource = random,
) -> float:
    """Return the countdown in seconds after failed attempt number ``attempt``."""
    countdown = rng.uniform(0.0, backoff_ceiling(attempt, base_s, cap_s))
    if retry_after_s is not None:
        countdown = max(countdown, retry_after_s)
    return countdown


@dataclass(frozen=True)
class Backoff:
    """One retry's countdown, with the ceiling and Retry-After it came from."""

    countdown_s: float
    ceiling_s: float
    retry_after_s: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff parameters and the attempt limit of retried integration tasks.

    ``max_countdown_s`` is the longest countdown sent to the broker as a delayed
    message. A longer one is kept in the database until it is due (see
    ``worker.recovery.scheduling``).
    """

    base_s: float
    cap_s: float
    max_attempts: int
    max_countdown_s: float

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        return cls(
            base_s=float(settings.RECOVERY_RETRY_BASE_S),
            cap_s=float(settings.RECOVERY_RETRY_CAP_S),
            max_attempts=int(settings.RECOVERY_MAX_ATTEMPTS),
            max_countdown_s=float(settings.RECOVERY_MAX_COUNTDOWN_S),
        )

    def is_exhausted(self, attempt: int) -> bool:
        """Return whether failed attempt number ``attempt`` was the last one allowed."""
        return attempt >= self.max_attempts

    def backoff(
        self,
        attempt: int,
        retry_after_s: float | None = None,
        rng: RandomSource = random,
    ) -> Backoff:
        countdown = full_jitter_countdown(
            attempt, self.base_s, self.cap_s, retry_after_s, rng
        )
        return Backoff(
            countdown_s=countdown,
            ceiling_s=backoff_ceiling(attempt, self.base_s, self.cap_s),
            retry_after_s=retry_after_s,
        )
