"""How big each scenario is: the full benchmark, and the tiny --quick one the CI smoke runs."""

from dataclasses import dataclass

from bench.servers import OURS_PG, OURS_PG3, OURS_PG3_ROOMS


@dataclass(frozen=True)
class Sizes:
    repeats: int = 3  # runs of each server per scenario, alternating; the median is reported
    fanout_shapes: tuple[tuple[int, int], ...] = ((10, 20), (1, 200))  # (rooms, clients per room)
    senders_per_room: int = 2
    messages_per_sender: int = 400
    window: int = 10  # fan-out: messages a sender may have unanswered
    latency_shape: tuple[int, int] = (10, 20)
    latency_duration_s: float = 8.0
    latency_warmup_s: float = 1.0
    latency_repeats: int = 5  # tail latency moves with anything else on the machine: more runs, steadier median
    idle_sockets: int = 20_000
    idle_room_size: int = 20
    rest_duration_s: float = 3.0
    rest_connections: int = 16  # per worker process
    history_messages: int = 1_000_000
    history_requests: int = 2_000
    ws_workers: int = 2
    idle_workers: int = 4
    rest_workers: int = 2
    latency_from_fanout: bool = True  # offered load = half the baseline's fan-out maximum (else the default)
    default_latency_rate: float = 500.0  # messages/s
    durability_rate: float = 1000.0  # messages/s while the server is killed
    durability_duration_s: float = 3.0
    durability_kill_after_s: float = 1.0
    # Measured beside SQLite when PostgreSQL is installed.
    postgres_kinds: tuple[str, ...] = (OURS_PG, OURS_PG3, OURS_PG3_ROOMS)
    ordering_writers: int = 32  # concurrent add_message() callers over three PostgresStores (PostgreSQL only)
    ordering_seconds: float = 5.0


FULL = Sizes()

QUICK = Sizes(
    repeats=1,
    fanout_shapes=((2, 4), (1, 8)),
    messages_per_sender=20,
    latency_shape=(2, 4),
    latency_duration_s=1.0,
    latency_warmup_s=0.2,
    latency_repeats=1,
    idle_sockets=100,
    idle_room_size=10,
    rest_duration_s=0.5,
    rest_connections=4,
    history_messages=2_000,
    history_requests=100,
    idle_workers=2,
    latency_from_fanout=False,
    default_latency_rate=100.0,
    durability_rate=200.0,
    durability_duration_s=1.0,
    durability_kill_after_s=0.5,
    postgres_kinds=(OURS_PG3, OURS_PG3_ROOMS),  # the smoke's PostgreSQL paths: three processes cover one
    ordering_writers=4,
    ordering_seconds=0.5,
)
