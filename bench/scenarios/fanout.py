"""Fan-out: senders in every room, each with a bounded window of unanswered messages; server CPU per delivery."""

from bench import servers
from bench.context import Context
from bench.scenarios.rooms import drive, plan_rooms


def run_once(ctx: Context, kind: str, rooms: int, clients: int) -> dict:
    sizes = ctx.sizes
    expected = sizes.senders_per_room * sizes.messages_per_sender
    with servers.running_cluster(kind, ctx) as cluster:
        plans = plan_rooms(cluster, rooms, clients, sizes.senders_per_room, expected)
        summary, _ = drive(ctx, cluster, plans, f"fan-out {rooms}x{clients} {kind}", mode="fanout",
                           messages_per_sender=sizes.messages_per_sender, window=sizes.window, deadline_s=120)
    # Closed-loop latency says little (it is mostly the window); the latency scenario measures it.
    return {key: value for key, value in summary.items() if "latency_" not in key}
