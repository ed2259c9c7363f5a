"""Targets of issues 6 and 10 checked against the results, and the readable Markdown table."""

import math
from dataclasses import dataclass

from bench.limits import SERVER_FD_HEADROOM
from bench.servers import BASELINE, KINDS, NAIVE, OURS, OURS_BEFORE, OURS_KINDS, OURS_PG3, OURS_PG3_ROOMS

CORRECTNESS_SCENARIOS = ("fanout_", "latency")


@dataclass(frozen=True)
class Target:
    label: str
    section: str
    metric: str
    limit: float
    relation: str  # "ratio<=", "ratio>=", "<", ">="
    unit: str = ""
    kind: str = OURS  # the server measured
    versus: str = BASELINE  # the server it is compared with, for a ratio


def targets_for(results: dict) -> list[Target]:
    found = []
    history_size = results.get("history", {}).get("median", {}).get(OURS, {}).get("messages_in_room", 0)
    for section in results:
        if section.startswith("fanout_"):
            rooms, clients = section.removeprefix("fanout_").split("x")
            shape = f"{rooms} room{'s' if rooms != '1' else ''} × {clients} clients"
            cpu = "server_cpu_us_per_delivery"
            found += [
                Target(f"Fan-out {shape}: server CPU per delivery", section, cpu, 0.8, "ratio<=", "µs"),
                Target(f"Fan-out {shape}: server CPU per delivery, vs the naive baseline", section, cpu, 0.8,
                       "ratio<=", "µs", versus=NAIVE),
                Target(f"Fan-out {shape}: SQLite no slower than before PostgreSQL (CPU per delivery)", section, cpu,
                       1.05, "ratio<=", "µs", versus=OURS_BEFORE),
                Target(f"Fan-out {shape}: PostgreSQL × 3 processes, summed CPU per delivery vs SQLite × 1",
                       section, cpu, 1.5, "ratio<=", "µs", kind=OURS_PG3, versus=OURS),
                Target(f"Fan-out {shape}: PostgreSQL × 3 processes, each room on one, summed CPU per delivery "
                       "vs SQLite × 1", section, cpu, 1.5, "ratio<=", "µs", kind=OURS_PG3_ROOMS, versus=OURS),
            ]
    found += [
        Target("Latency at the fixed load: p99", "latency", "latency_p99_ms", 1.2, "ratio<=", "ms"),
        Target("Latency at the fixed load: SQLite p99 vs before PostgreSQL", "latency", "latency_p99_ms", 1.2,
               "ratio<=", "ms", versus=OURS_BEFORE),
        Target("Latency at the fixed load: PostgreSQL × 3, cross-process p99", "latency", "cross_latency_p99_ms",
               50, "<", "ms", kind=OURS_PG3),
        Target("Idle: RSS per socket", "idle", "rss_kb_per_socket", 1.1, "ratio<=", "KB"),
        Target("Idle: sockets held", "idle", "sockets", 20_000, ">=", ""),
        Target("POST /users requests/s", "rest", "post_users_requests_per_s", 0.5, "ratio>=", "/s"),
        Target("GET /rooms/{id}/messages?limit=50 requests/s", "rest", "get_messages_requests_per_s", 0.7,
               "ratio>=", "/s"),
        Target(f"History page of 50 (room of {history_size:,} messages): server time", "history",
               "latest_server_ms_per_page", 1.0, "<", "ms"),
        Target("Start-up on that database", "history", "startup_s", 1.0, "<", "s"),
    ]
    present = []
    for t in found:
        medians = results.get(t.section, {}).get("median", {})
        if t.kind in medians and (not t.relation.startswith("ratio") or t.versus in medians):
            present.append(t)
    return present


def evaluate(results: dict) -> list[dict]:
    rows = []
    for target in targets_for(results):
        medians = results[target.section]["median"]
        measured = medians[target.kind].get(target.metric)
        limit, label = target.limit, target.label
        if target.metric == "sockets":
            # The quick run wants fewer; a sandbox without CAP_SYS_RESOURCE caps every process's files.
            limit = min(medians[OURS]["sockets_wanted"], medians[OURS]["open_files_hard_limit"] - SERVER_FD_HEADROOM)
            if limit < medians[OURS]["sockets_wanted"]:
                label += f" (capped by the hard open-file limit {medians[OURS]['open_files_hard_limit']:,})"
        is_ratio = target.relation.startswith("ratio")
        reference = medians[target.versus].get(target.metric) if is_ratio else None
        ratio = measured / reference if is_ratio and reference else None
        value = ratio if is_ratio else measured
        if value is None or (is_ratio and not measured) or value != value:  # NaN: nothing measured
            passed = None  # a run too short for the 10 ms CPU clock (the quick smoke): nothing to judge
        else:
            passed = {"ratio<=": value <= limit, "ratio>=": value >= limit,
                      "<": value < limit, ">=": value >= limit}[target.relation]
        rows.append({"target": label, "section": target.section, "metric": target.metric,
                     "kind": target.kind, "versus": target.versus if is_ratio else None,
                     "reference": reference, "measured": measured, "ratio": ratio, "relation": target.relation,
                     "limit": limit, "unit": target.unit, "pass": passed})
    return rows


def correctness(results: dict) -> list[dict]:
    """Over every run of the chat server, each store, not the median: one lost message is a failure."""
    rows = []
    for section, data in results.items():
        if not section.startswith(CORRECTNESS_SCENARIOS):
            continue
        for kind in OURS_KINDS:
            runs = data["runs"].get(kind)
            if not runs:
                continue
            row = {"section": section, "kind": kind, "runs": len(runs)}
            for key in ("lost", "duplicated", "out_of_order", "closed_by_server"):
                row[key] = sum(run[key] for run in runs)
            row["history_complete"] = all(run["history_complete"] for run in runs)
            row["pass"] = row["history_complete"] and not any(row[k] for k in ("lost", "duplicated", "out_of_order",
                                                                               "closed_by_server"))
            rows.append(row)
    ordering = results.get("ordering")
    if ordering:
        runs = ordering["runs"][next(iter(ordering["runs"]))]
        rows.append({"section": "ordering", "kind": "postgresql", "runs": len(runs), "lost": 0, "duplicated": 0,
                     "out_of_order": 0, "closed_by_server": 0,
                     "history_complete": all(run["seq_gapless"] for run in runs),
                     "pass": all(run["seq_gapless"] for run in runs)})
    return rows


RESULT = {True: "pass", False: "FAIL", None: "n/a (too short to time)"}


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or math.isnan(value):  # not measured, or nothing to measure (no delivery crossed processes)
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _limit(row: dict) -> str:
    symbol = {"ratio<=": "≤", "ratio>=": "≥", "<": "<", ">=": "≥"}[row["relation"]]
    if row["relation"].startswith("ratio"):
        return f"{symbol} {row['limit']:g}×"
    return f"{symbol} {_number(row['limit'])} {row['unit']}".rstrip()


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [
        f"Machine: {machine['nproc']} cores ({machine['cpu_model']}), shared by the server and the load generator; "
        f"Python {machine['python']}, aiohttp {machine['aiohttp']}, Linux {machine['kernel']}; "
        f"load average {machine['load_average_at_start'][0]:.1f} at the start. "
        f"Server under test at commit {report.get('server_commit', 'unknown')}"
        + (f", before PostgreSQL at {report['before_commit']}" if report.get("before_commit") else "")
        + (f"; PostgreSQL 15 durable ({report['postgres']}) on the same machine" if report.get("postgres") else "")
        + ".",
        f"Command: `{report['command']}` — {report['sizes']['repeats']} alternating runs per server "
        f"({max(report['sizes']['repeats'], report['sizes']['latency_repeats'])} for latency), medians; "
        f"took {report['duration_s']:.0f} s on {report['started']}.",
        "",
        "| Target | Reference | Measured | Ratio | Limit | Result |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in report["targets"]:
        unit = f" {row['unit']}" if row["unit"] else ""
        ratio = f"{row['ratio']:.3f}×" if row["ratio"] is not None else "—"
        reference = f"{_number(row['reference'])}{unit} ({row['versus']})" if row["reference"] is not None else ""
        lines.append(f"| {row['target']} | {reference} | {_number(row['measured'])}{unit} ({row['kind']}) "
                     f"| {ratio} | {_limit(row)} | {RESULT[row['pass']]} |")
    for row in report["correctness"]:
        if row["section"] == "ordering":
            lines.append(f"| ordering: seq 1, 2, 3, ... without gaps in the one room, all runs | | "
                         f"{'gapless' if row['pass'] else 'GAPS'} | | | {'pass' if row['pass'] else 'FAIL'} |")
            continue
        lines.append(f"| {row['section']} {row['kind']}: lost / duplicated / out of order / dropped sockets, "
                     f"all runs | | {row['lost']} / {row['duplicated']} / {row['out_of_order']} / "
                     f"{row['closed_by_server']}{'' if row['history_complete'] else ', history incomplete'} | | 0 | "
                     f"{'pass' if row['pass'] else 'FAIL'} |")
    d = report["scenarios"].get("durability")
    if d:
        lines.append(f"| Every delivered message stored (kill -9 mid-run, restart) | | {d['missing']} missing of "
                     f"{d['delivered_max_seq_total']:,} | | 0 | {'pass' if d['pass'] else 'FAIL'} |")
    lines += ["", *details(report["scenarios"])]
    return "\n".join(lines) + "\n"


DETAILS = {
    "fanout_": [("processes", "server processes"),
                ("messages_per_s", "messages/s committed (closed loop)"), ("deliveries_per_s", "deliveries/s"),
                ("server_cpu_us_per_delivery", "server CPU µs/delivery (all its processes)"),
                ("postgres_cpu_us_per_delivery", "PostgreSQL CPU µs/delivery (its own processes)"),
                ("server_tcp_segments_per_delivery", "server TCP segments/delivery (≈ writes)"),
                ("server_file_writes_per_message", "server file writes/message (SQLite)")],
    "latency": [("offered_messages_per_s", "offered messages/s"), ("latency_p50_ms", "p50 ms"),
                ("latency_p90_ms", "p90 ms"), ("latency_p99_ms", "p99 ms"), ("latency_p99.9_ms", "p99.9 ms"),
                ("cross_latency_p50_ms", "cross-process p50 ms"), ("cross_latency_p99_ms", "cross-process p99 ms"),
                ("cross_latency_samples", "cross-process deliveries timed"),
                ("server_cpu_us_per_delivery", "server CPU µs/delivery (all its processes)"),
                ("postgres_cpu_us_per_delivery", "PostgreSQL CPU µs/delivery (its own processes)"),
                ("server_tcp_segments_per_delivery", "server TCP segments/delivery (≈ writes)"),
                ("server_file_writes_per_message", "server file writes/message (SQLite)")],
    "ordering": [("writers", "concurrent writers (over three stores)"),
                 ("many_rooms_messages_per_s", "messages/s committed, a room per writer"),
                 ("many_rooms_postgres_cpu_us_per_message", "PostgreSQL CPU µs/message, a room per writer"),
                 ("one_room_messages_per_s", "messages/s committed, all into one room"),
                 ("one_room_postgres_cpu_us_per_message", "PostgreSQL CPU µs/message, one room")],
    "rest": [("post_users_requests_per_s", "POST /users req/s"),
             ("post_users_server_cpu_us_per_request", "POST /users server CPU µs/req"),
             ("post_users_p99_ms", "POST /users p99 ms"),
             ("get_messages_requests_per_s", "GET messages req/s"),
             ("get_messages_server_cpu_us_per_request", "GET messages server CPU µs/req"),
             ("get_messages_p99_ms", "GET messages p99 ms")],
    "idle": [("sockets", "sockets held"), ("rss_kb_per_socket", "RSS KB/socket"),
             ("connects_per_s", "connects/s"), ("server_cpu_us_per_connect", "server CPU µs/connect")],
    "history": [("messages_in_room", "messages in the room"), ("startup_s", "start-up s"),
                ("baseline_startup_s", "baseline start-up s (empty)"),
                ("latest_server_ms_per_page", "latest page: server ms"),
                ("latest_client_p99_ms", "latest page: client p99 ms"),
                ("middle_server_ms_per_page", "page from the middle: server ms"),
                ("pages_correct", "pages correct")],
}


def details(scenarios: dict) -> list[str]:
    measured = {kind for data in scenarios.values() for kind in data.get("median", {})}
    kinds = [kind for kind in KINDS if kind in measured]
    lines = [f"| Scenario | Measure | {' | '.join(kinds)} |", f"| --- | --- |{' ---: |' * len(kinds)}"]
    for section, data in scenarios.items():
        if "median" not in data:
            continue
        for prefix, metrics in DETAILS.items():
            if not section.startswith(prefix):
                continue
            for key, label in metrics:
                values = [data["median"].get(kind, {}).get(key) for kind in kinds]
                if all(value is None for value in values):
                    continue  # e.g. PostgreSQL's CPU where only SQLite ran
                cells = [str(value).lower() if isinstance(value, bool) else _number(value) for value in values]
                lines.append(f"| {section} | {label} | {' | '.join(cells)} |")
    return lines
