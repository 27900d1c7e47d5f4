"""When and how long to wait before retrying a Jira request: exponential backoff, full jitter."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from jira_pipeline.jira._exceptions import (
    JiraAuthError,
    JiraBadRequest,
    JiraError,
    JiraMalformedBody,
    JiraPermissionError,
    JiraRateLimited,
    JiraServerError,
    JiraTransportError,
)
from jira_pipeline.settings import ConfigurationError


def is_retryable(error: BaseException) -> bool:
    """Only what may succeed unchanged later: 429, 5xx, transport failures and a 2xx body cut
    short (a dropped proxy connection: the same request usually reads whole next time)."""
    return isinstance(
        error, JiraTransportError | JiraRateLimited | JiraServerError | JiraMalformedBody
    )


def cannot_succeed(error: BaseException) -> bool:
    """What no retry can fix: Jira refused the request itself (400), the credential (401) or
    the account's access (403), or the configuration is wrong. Such errors fail at once, in
    the client and in the Dagster step alike."""
    return isinstance(
        error, JiraBadRequest | JiraAuthError | JiraPermissionError | ConfigurationError
    )


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in total; the wait before retry n is uniform in [0, min(cap, base * 2^n)).

    Full jitter spreads the retries of many workers so they do not hit Jira in lock-step.
    """

    attempts: int = 6
    base: float = 1.0
    cap: float = 60.0
    jitter: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must not be negative")

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry `retry_number` (0 for the first retry)."""
        ceiling = min(self.cap, self.base * (2**retry_number))
        return ceiling * self.jitter()

    def max_total_wait(self) -> float:
        """The longest all backoffs together can last (429 pauses come on top of this)."""
        return sum(min(self.cap, self.base * (2**n)) for n in range(self.attempts - 1))

    def should_retry(self, error: JiraError, attempt: int) -> bool:
        """`attempt` counts from 1: whether a failure on that attempt deserves another try."""
        return attempt < self.attempts and is_retryable(error)
