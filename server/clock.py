"""The one timestamp format of the wire and the database."""

import time
from functools import lru_cache


def utc_now() -> str:
    """Now as ISO 8601 UTC with milliseconds and a `Z`, as JavaScript's toISOString() writes it."""
    now = time.time()
    second = int(now)
    return f"{_utc_second(second)}.{int((now - second) * 1000):03d}Z"


@lru_cache(maxsize=1)
def _utc_second(second: int) -> str:
    # Formatting a time is most of the cost, and a busy server asks for the same second many times.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
