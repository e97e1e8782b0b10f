"""Backoff between attempts: exponential with jitter (pure, no I/O)."""

from __future__ import annotations

import dataclasses
import random

from .errors import InvalidInput


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry n (n = the attempt that just failed, from 1):

    ``min(max_delay, base * factor ** (n - 1))``, then multiplied by a random factor in
    ``[1 - jitter, 1 + jitter]`` so that jobs failing together do not retry together.
    """

    base: float = 2.0
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.base <= 86400:
            raise InvalidInput(f"backoff base must be 0 to 86400 seconds, got {self.base!r}")
        if not 1 <= self.factor <= 10:
            raise InvalidInput(f"backoff factor must be between 1 and 10, got {self.factor!r}")
        if not self.base <= self.max_delay <= 30 * 86400:
            raise InvalidInput(f"backoff max_delay must be between base and 30 days, got {self.max_delay!r}")
        if not 0 <= self.jitter < 1:
            raise InvalidInput(f"backoff jitter must be in [0, 1), got {self.jitter!r}")

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest delay after failed attempt ``attempt``."""
        exponent = min(attempt - 1, 64)  # avoids float overflow for absurd attempt counts
        delay = min(self.max_delay, self.base * self.factor**exponent)
        return delay * (1 - self.jitter), delay * (1 + self.jitter)

    def delay(self, attempt: int) -> float:
        low, high = self.bounds(attempt)
        return random.uniform(low, high)


DEFAULT_BACKOFF = Backoff()


def retries(attempt: int, max_attempts: int, retryable: bool = True) -> bool:
    """Whether a failed attempt is tried again: the one rule for the executor, remote reports
    and (in SQL, job_rescue_expired.sql, kept in step by tests/unit) the rescue of lost leases.

    >>> retries(1, 3), retries(3, 3), retries(1, 3, retryable=False)
    (True, False, False)
    """
    return retryable and attempt < max_attempts
