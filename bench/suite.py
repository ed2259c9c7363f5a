"""The scenarios in order, each server measured in alternating runs, medians kept with the raw runs."""

from array import array
from typing import Callable

from bench.context import Context
from bench.scenarios import durability, fanout, history, idle, latency, ordering, rest
from bench.servers import BASELINE, OURS, OURS_PG
from bench.stats import median_of_runs

SCENARIOS = ("fanout", "latency", "ordering", "durability", "rest", "idle", "history")


def alternate(ctx: Context, measure: Callable[[str], dict], repeats: int | None = None,
              kinds: tuple[str, ...] = (BASELINE, OURS)) -> dict:
    """baseline, ours, ..., then ..., ours, baseline: a drift in the machine's load hits all alike."""
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for rep in range(repeats or ctx.sizes.repeats):
        for kind in kinds if rep % 2 == 0 else reversed(kinds):
            runs[kind].append(measure(kind))
    return {"median": {kind: median_of_runs(kind_runs) for kind, kind_runs in runs.items()}, "runs": runs}


def run_fanout(ctx: Context, results: dict) -> None:
    for rooms, clients in ctx.sizes.fanout_shapes:
        section = alternate(ctx, lambda kind: fanout.run_once(ctx, kind, rooms, clients), kinds=ctx.room_kinds)
        results[f"fanout_{rooms}x{clients}"] = section
        if (rooms, clients) == ctx.sizes.latency_shape:
            ctx.baseline_max_rate = section["median"][BASELINE]["messages_per_s"]


def run_latency(ctx: Context, results: dict) -> None:
    # Half the baseline's closed-loop maximum in the same shape, as the issue asks.
    rate = ctx.sizes.default_latency_rate
    if ctx.sizes.latency_from_fanout and ctx.baseline_max_rate:
        rate = ctx.baseline_max_rate / 2
    latencies: dict[str, array] = {kind: array("I") for kind in ctx.room_kinds}

    def measure(kind: str) -> dict:
        summary, samples = latency.run_once(ctx, kind, rate)
        latencies[kind].extend(samples)
        return summary

    section = alternate(ctx, measure, max(ctx.sizes.repeats, ctx.sizes.latency_repeats), kinds=ctx.room_kinds)
    section["all_latencies_us"] = latencies  # for the plot; not written to the JSON
    results["latency"] = section


def run_ordering(ctx: Context, results: dict) -> None:
    if ctx.postgres is None:
        return  # PostgreSQL is not installed, or not asked for
    runs = [ordering.run_once(ctx) for _ in range(ctx.sizes.repeats)]
    results["ordering"] = {"median": {OURS_PG: median_of_runs(runs)}, "runs": {OURS_PG: runs}}


def run_durability(ctx: Context, results: dict) -> None:
    results["durability"] = durability.run_once(ctx)


def run_rest(ctx: Context, results: dict) -> None:
    results["rest"] = alternate(ctx, lambda kind: rest.run_once(ctx, kind))


def run_idle(ctx: Context, results: dict) -> None:
    results["idle"] = alternate(ctx, lambda kind: idle.run_once(ctx, kind))


def run_history(ctx: Context, results: dict) -> None:
    db_path = ctx.workdir / "history.db"
    room = history.build_database(ctx, db_path, ctx.sizes.history_messages)
    runs = [history.run_once(ctx, db_path, room) for _ in range(ctx.sizes.repeats)]
    results["history"] = {"median": {OURS: median_of_runs(runs)}, "runs": {OURS: runs}}


RUNNERS = {"fanout": run_fanout, "latency": run_latency, "ordering": run_ordering, "durability": run_durability,
           "rest": run_rest, "idle": run_idle, "history": run_history}


def run_all(ctx: Context, names: list[str]) -> dict:
    results: dict = {}
    for name in names:
        RUNNERS[name](ctx, results)
    return results
