"""Rate limits: a token bucket per socket for chat messages, and per client address for creations."""

from __future__ import annotations

import math
import time

from aiohttp import web

CREATE_BURST = 200  # users and rooms one address may create at once, before CREATE_RATE_PER_MINUTE applies
FORGET_IDLE_SECONDS = 60.0  # how often addresses whose bucket has refilled are forgotten


class TokenBucket:
    """Allows `rate` events a second on average and bursts of up to `burst`."""

    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self.tokens = float(self.burst)
        self.updated = time.monotonic()

    def take(self, count: int = 1) -> bool:
        """Spend `count` tokens if there are that many."""
        self._refill()
        if self.tokens >= count:
            self.tokens -= count
            return True
        return False

    def seconds_until(self, count: int) -> float:
        """How long until `count` tokens are there (never, for more than a burst)."""
        self._refill()
        return max(0.0, (min(count, self.burst) - self.tokens) / self.rate)

    def full(self) -> bool:
        self._refill()
        return self.tokens >= self.burst

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now


class CreationLimit:
    """CREATE_RATE_PER_MINUTE: how many users and rooms each client address may create (0: no limit)."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60
        self.buckets: dict[str, TokenBucket] = {}
        self.forgotten_at = time.monotonic()

    def retry_after(self, address: str, count: int = 1) -> int | None:
        """Spend `count` creations of this address; None if allowed, else the whole seconds to wait."""
        if not self.rate or not count:
            return None
        self._forget_idle()
        bucket = self.buckets.get(address)
        if bucket is None:
            bucket = self.buckets[address] = TokenBucket(self.rate, CREATE_BURST)
        if bucket.take(count):
            return None
        return max(1, math.ceil(bucket.seconds_until(count)))

    def _forget_idle(self) -> None:
        # A full bucket is what a new address would get: keeping it only costs memory.
        now = time.monotonic()
        if now - self.forgotten_at >= FORGET_IDLE_SECONDS:
            self.forgotten_at = now
            self.buckets = {address: bucket for address, bucket in self.buckets.items() if not bucket.full()}


def too_many_creations(retry_after: int) -> str:
    """What a client over CREATE_RATE_PER_MINUTE is told."""
    return f"Too many users and rooms created from your address; try again in {retry_after} s"


creation_limit_key = web.AppKey("chat.creation_limit", CreationLimit)
