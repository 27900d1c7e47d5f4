"""Rate limiting per credential (a token bucket, answered with Jira's 429 headers) and faults."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field


@dataclass
class Bucket:
    tokens: float
    refilled_at: float
    retry_until: float = 0.0  # monotonic time until which the last 429 told the client to wait


@dataclass
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int
    reset_in_s: float
    inside_retry_window: bool


@dataclass
class RateLimiter:
    """A token bucket per credential: `rate` tokens/s, at most `burst` saved up; rate 0 = off."""

    rate: float
    burst: int
    buckets: dict[str, Bucket] = field(default_factory=dict)

    def check(self, credential: str, now: float | None = None) -> RateDecision:
        now = time.monotonic() if now is None else now
        bucket = self.buckets.get(credential)
        if bucket is None:
            bucket = self.buckets[credential] = Bucket(float(self.burst), now)
        inside = now < bucket.retry_until
        if self.rate <= 0:
            return RateDecision(True, self.burst, self.burst, 0, 0.0, inside)
        capacity = max(self.burst, 1)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.refilled_at) * self.rate)
        bucket.refilled_at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return RateDecision(True, capacity, int(bucket.tokens), 0,
                                (capacity - bucket.tokens) / self.rate, inside)
        wait = (1.0 - bucket.tokens) / self.rate
        retry_after = max(1, math.ceil(wait))
        bucket.retry_until = max(bucket.retry_until, now + retry_after)
        return RateDecision(False, capacity, 0, retry_after, wait, inside)

    def reconfigure(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        for bucket in self.buckets.values():
            bucket.tokens = min(bucket.tokens, float(max(burst, 1)))


@dataclass
class FaultInjector:
    """Answers a share of requests with a server error; seeded so a run's faults repeat."""

    rate: float
    rng: random.Random

    def pick(self) -> int | None:
        if self.rate <= 0 or self.rng.random() >= self.rate:
            return None
        return self.rng.choice((500, 502, 503))


GATEWAY_503 = (
    "<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head><body>"
    "<h1>Service Unavailable</h1><p>The server is temporarily unable to service your request. "
    "Please try again later.</p></body></html>"
)
GATEWAY_502 = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
    "<h1>Bad Gateway</h1></body></html>"
)
