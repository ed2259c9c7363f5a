"""The benchmark of issues 6 and 10, in one command: python -m bench.run [--quick] [--only ...] [--repeats N].

Runs each scenario against the bare in-memory baselines and the chat server (on
SQLite, and on PostgreSQL in one and in three processes when PostgreSQL is
installed), in alternating runs, and writes results/latest.json,
results/latest.md (printed too) and results/latency.svg.
"""

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py` works as well as `python -m bench.run`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import machine, pgserver, plot, report, servers, suite  # noqa: E402
from bench.config import FULL, QUICK, Sizes  # noqa: E402
from bench.context import Context  # noqa: E402
from bench.limits import raise_open_files  # noqa: E402
from bench.progress import Progress  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the chat server against a bare aiohttp baseline.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run each (the CI smoke)")
    parser.add_argument("--only", default=",".join(suite.SCENARIOS),
                        help=f"comma-separated scenarios, of: {', '.join(suite.SCENARIOS)}")
    parser.add_argument("--repeats", type=int, help="runs of each server per scenario (default 3, and 5 for latency; quick 1)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for latest.json/.md and latency.svg")
    parser.add_argument("--server-tree", type=Path, default=REPO_ROOT,
                        help="checkout whose run.py is the server under test, e.g. a `git worktree` of one commit "
                             "(default: this one)")
    parser.add_argument("--before-tree", type=Path,
                        help="a checkout of an earlier commit, measured beside --server-tree on SQLite in the "
                             "fan-out and latency scenarios (\"ours-before\"), e.g. the commit before PostgreSQL")
    parser.add_argument("--no-postgres", action="store_true", help="measure SQLite only")
    parser.add_argument("--latency-rate", type=float,
                        help="messages/s offered in the latency scenario (default: half the baseline's fan-out max)")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(suite.SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args


def command_line(argv: list[str] | None) -> str:
    return " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.repeats:
        sizes = dataclasses.replace(sizes, repeats=args.repeats, latency_repeats=args.repeats)
    if args.latency_rate:
        sizes = dataclasses.replace(sizes, latency_from_fanout=False, default_latency_rate=args.latency_rate)
    raise_open_files()  # inherited by the servers and the load-generator processes
    names = [name for name in suite.SCENARIOS if name in args.only.split(",")]
    started, began = datetime.now(timezone.utc), time.monotonic()
    progress = Progress()
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as workdir:
        ctx = Context(sizes, Path(workdir), progress, server_root=args.server_tree.resolve(),
                      before_root=args.before_tree.resolve() if args.before_tree else None,
                      room_kinds=room_kinds(args, sizes))
        try:
            if not args.no_postgres and {"fanout", "latency", "ordering"} & set(names):
                ctx.postgres = pgserver.start_durable() if pgserver.available() else None
                if ctx.postgres is None:
                    ctx.room_kinds = tuple(k for k in ctx.room_kinds if k not in servers.POSTGRES_KINDS)
            scenarios = suite.run_all(ctx, names)
        finally:
            if ctx.postgres:
                ctx.postgres.remove()
    progress.finish()
    latencies = scenarios.get("latency", {}).pop("all_latencies_us", None)
    result = {
        "command": command_line(argv),
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": time.monotonic() - began,
        "machine": machine.describe(),
        "server_commit": machine.commit_of(args.server_tree),
        "before_commit": machine.commit_of(args.before_tree) if args.before_tree else None,
        "postgres": "fsync on, synchronous_commit on" if ctx.postgres else None,
        "sizes": dataclasses.asdict(sizes),
        "scenarios": scenarios,
    }
    result["targets"] = report.evaluate(scenarios)
    result["correctness"] = report.correctness(scenarios)
    result["all_correct"] = (all(row["pass"] for row in result["correctness"])
                             and scenarios.get("durability", {}).get("pass", True))
    if latencies:
        result["latency_percentiles_ms"] = plot.percentile_curves(latencies)
    write(args.out, result)
    return 0 if result["all_correct"] else 1


def room_kinds(args: argparse.Namespace, sizes: Sizes) -> tuple[str, ...]:
    """The servers of the fan-out and latency scenarios, in the order of their first runs."""
    kinds = [servers.BASELINE, servers.NAIVE]
    if args.before_tree:
        kinds.append(servers.OURS_BEFORE)
    kinds.append(servers.OURS)
    if not args.no_postgres:
        kinds += sizes.postgres_kinds
    return tuple(kinds)


def write(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table = report.markdown(result)
    (out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "latest.md").write_text(table)
    curves = result.get("latency_percentiles_ms")
    if curves:
        rate = result["scenarios"]["latency"]["median"]["ours"]["offered_messages_per_s"]
        (out / "latency.svg").write_text(plot.svg(curves, f"Latency at {rate:,.0f} messages/s offered"))
    print(table)


if __name__ == "__main__":
    sys.exit(main())
