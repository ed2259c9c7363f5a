"""The benchmark of issue 6, in one command: python -m bench.run [--quick] [--only ...] [--repeats N].

Runs each scenario against the bare in-memory baseline and the chat server, in
alternating runs, and writes results/latest.json, results/latest.md (printed
too) and results/latency.svg.
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

from bench import machine, plot, report, suite  # noqa: E402
from bench.config import FULL, QUICK  # noqa: E402
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
    raise_open_files()  # inherited by the servers and the load-generator processes
    names = [name for name in suite.SCENARIOS if name in args.only.split(",")]
    started, began = datetime.now(timezone.utc), time.monotonic()
    progress = Progress()
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as workdir:
        ctx = Context(sizes, Path(workdir), progress, server_root=args.server_tree.resolve())
        scenarios = suite.run_all(ctx, names)
    progress.finish()
    latencies = scenarios.get("latency", {}).pop("all_latencies_us", None)
    result = {
        "command": command_line(argv),
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": time.monotonic() - began,
        "machine": machine.describe(),
        "server_commit": machine.commit_of(args.server_tree),
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
