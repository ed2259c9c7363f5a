"""What every scenario gets: sizes, a scratch folder, the progress line, fresh client addresses."""

import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from bench.config import Sizes
from bench.progress import Progress
from bench.servers import BASELINE, NAIVE, OURS


def _loopback_addresses() -> Iterator[str]:
    # A fresh 127.x source address per worker process: its own ephemeral ports, and no
    # clash with the TIME_WAIT leftovers of an earlier run or an earlier benchmark.
    second = random.randrange(1, 250)
    for third, fourth in itertools.product(range(256), range(1, 255)):
        yield f"127.{second}.{third}.{fourth}"


@dataclass
class Context:
    sizes: Sizes
    workdir: Path
    progress: Progress
    source_ips: Iterator[str] = field(default_factory=_loopback_addresses)
    baseline_max_rate: float | None = None  # messages/s, set by the 10-room fan-out
    server_root: Path = Path(__file__).resolve().parent.parent  # where the server under test's run.py is
    before_root: Path | None = None  # a checkout of the commit before PostgreSQL, measured as OURS_BEFORE
    room_kinds: tuple[str, ...] = (BASELINE, NAIVE, OURS)  # the servers of the fan-out and latency scenarios
    postgres: Any = None  # a running pgserver.PostgresServer, when PostgreSQL is measured

    def next_source_ip(self) -> str:
        return next(self.source_ips)
