"""Latency at a fixed offered load: every sender sends on a schedule, whatever the server does."""

from array import array

from bench import servers
from bench.context import Context
from bench.scenarios.rooms import drive, plan_rooms


def run_once(ctx: Context, kind: str, rate: float) -> tuple[dict, array]:
    """rate: messages per second into the whole server, spread evenly over all senders."""
    sizes = ctx.sizes
    rooms, clients = sizes.latency_shape
    senders = rooms * sizes.senders_per_room
    per_sender = max(1, int(rate / senders * sizes.latency_duration_s))
    expected = sizes.senders_per_room * per_sender
    with servers.running_cluster(kind, ctx) as cluster:
        plans = plan_rooms(cluster, rooms, clients, sizes.senders_per_room, expected)
        summary, latencies = drive(ctx, cluster, plans, f"latency at {rate:.0f} msg/s {kind}", mode="rate",
                                   messages_per_sender=per_sender, rate_per_sender=rate / senders,
                                   senders_in_run=senders, warmup_s=sizes.latency_warmup_s,
                                   deadline_s=sizes.latency_duration_s + 60)
    summary["offered_messages_per_s"] = rate
    return summary, latencies
