"""The one timestamp format of the wire and the database."""

from datetime import UTC, datetime


def utc_now() -> str:
    """Now as ISO 8601 UTC with milliseconds and a `Z`, as JavaScript's toISOString() writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
