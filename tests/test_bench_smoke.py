"""A short smoke of the benchmark (bench/, issues 6 and 10): its tiniest run against every server.

It checks that the benchmark works and that nothing was lost, doubled or
reordered; it never asserts a timing, which on shared cores would be noise.
"""

import json
import subprocess
import sys
from pathlib import Path

import postgres_server

REPO = Path(__file__).resolve().parent.parent
SCENARIO_KEYS = {"fanout_2x4", "fanout_1x8", "latency", "durability", "rest", "idle", "history"}


def test_quick_benchmark_runs_against_every_server_and_loses_nothing(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    result = json.loads((tmp_path / "latest.json").read_text())
    assert {"command", "machine", "sizes", "scenarios", "targets", "correctness", "all_correct"} <= result.keys()
    assert SCENARIO_KEYS <= result["scenarios"].keys()
    # Without PostgreSQL installed the benchmark measures SQLite alone (and fails when CHAT_REQUIRE_ALL is set).
    with_postgres = postgres_server.available()
    room_kinds = {"baseline", "naive", "ours"} | ({"ours-pg×3", "ours-pg×3-rooms"} if with_postgres else set())
    for section in ("fanout_2x4", "fanout_1x8", "latency"):
        assert room_kinds <= result["scenarios"][section]["median"].keys(), section
    for section in ("rest", "idle"):
        assert {"baseline", "ours"} <= result["scenarios"][section]["median"].keys(), section
    if with_postgres:
        three = result["scenarios"]["latency"]["median"]["ours-pg×3"]
        assert three["processes"] == 3 and three["cross_latency_samples"] > 0  # deliveries crossed processes
        together = result["scenarios"]["latency"]["median"]["ours-pg×3-rooms"]
        assert together["processes"] == 3 and together["cross_latency_samples"] == 0  # each room on one process
        assert result["scenarios"]["ordering"]["median"]["ours-pg"]["one_room_messages_per_s"] > 0

    assert result["all_correct"] is True
    for row in result["correctness"]:
        assert (row["lost"], row["duplicated"], row["out_of_order"], row["closed_by_server"]) == (0, 0, 0, 0), row
        assert row["history_complete"], row
    for section in ("fanout_2x4", "fanout_1x8", "latency"):
        for kind in room_kinds:
            assert result["scenarios"][section]["median"][kind]["deliveries"] > 0
    assert result["scenarios"]["durability"]["missing"] == 0
    assert result["scenarios"]["history"]["median"]["ours"]["pages_correct"] is True

    for row in result["targets"]:
        assert {"target", "reference", "measured", "ratio", "limit", "pass"} <= row.keys()
    assert (tmp_path / "latest.md").read_text().startswith("Machine:")
    assert (tmp_path / "latency.svg").read_text().startswith("<svg")


def test_the_stalled_replays_tool_reports_memory_and_live_latency() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.replays", "--sockets", "5", "--messages", "50", "--size", "10"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "5 stalled replays: server RSS" in done.stdout
    assert "live messages meanwhile:" in done.stdout and " 0 timed" not in done.stdout
