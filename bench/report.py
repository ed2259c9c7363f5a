"""Targets of issue 6 checked against the results, and the readable Markdown table."""

from dataclasses import dataclass

from bench.limits import SERVER_FD_HEADROOM
from bench.servers import BASELINE, OURS

CORRECTNESS_SCENARIOS = ("fanout_", "latency")


@dataclass(frozen=True)
class Target:
    label: str
    section: str
    metric: str
    limit: float
    relation: str  # "ratio<=", "ratio>=", "<", ">="
    unit: str = ""


def targets_for(results: dict) -> list[Target]:
    found = []
    history_size = results.get("history", {}).get("median", {}).get(OURS, {}).get("messages_in_room", 0)
    for section in results:
        if section.startswith("fanout_"):
            rooms, clients = section.removeprefix("fanout_").split("x")
            shape = f"{rooms} room{'s' if rooms != '1' else ''} × {clients} clients"
            found.append(Target(f"Fan-out {shape}: server CPU per delivery", section,
                                "server_cpu_us_per_delivery", 0.8, "ratio<=", "µs"))
    found += [
        Target("Latency at half the baseline's max: p99", "latency", "latency_p99_ms", 1.2, "ratio<=", "ms"),
        Target("Idle: RSS per socket", "idle", "rss_kb_per_socket", 1.1, "ratio<=", "KB"),
        Target("Idle: sockets held", "idle", "sockets", 20_000, ">=", ""),
        Target("POST /users requests/s", "rest", "post_users_requests_per_s", 0.5, "ratio>=", "/s"),
        Target("GET /rooms/{id}/messages?limit=50 requests/s", "rest", "get_messages_requests_per_s", 0.7,
               "ratio>=", "/s"),
        Target(f"History page of 50 (room of {history_size:,} messages): server time", "history",
               "latest_server_ms_per_page", 1.0, "<", "ms"),
        Target("Start-up on that database", "history", "startup_s", 1.0, "<", "s"),
    ]
    return [t for t in found if t.section in results]


def evaluate(results: dict) -> list[dict]:
    rows = []
    for target in targets_for(results):
        medians = results[target.section]["median"]
        ours = medians[OURS].get(target.metric)
        limit, label = target.limit, target.label
        if target.metric == "sockets":
            # The quick run wants fewer; a sandbox without CAP_SYS_RESOURCE caps every process's files.
            limit = min(medians[OURS]["sockets_wanted"], medians[OURS]["open_files_hard_limit"] - SERVER_FD_HEADROOM)
            if limit < medians[OURS]["sockets_wanted"]:
                label += f" (capped by the hard open-file limit {medians[OURS]['open_files_hard_limit']:,})"
        base = medians.get(BASELINE, {}).get(target.metric)
        is_ratio = target.relation.startswith("ratio")
        ratio = ours / base if is_ratio and base else None
        value = ratio if is_ratio else ours
        if value is None or (is_ratio and not ours):
            passed = None  # a run too short for the 10 ms CPU clock (the quick smoke): nothing to judge
        else:
            passed = {"ratio<=": value <= limit, "ratio>=": value >= limit,
                      "<": value < limit, ">=": value >= limit}[target.relation]
        rows.append({"target": label, "section": target.section, "metric": target.metric,
                     "baseline": base, "ours": ours, "ratio": ratio, "relation": target.relation,
                     "limit": limit, "unit": target.unit, "pass": passed})
    return rows


def correctness(results: dict) -> list[dict]:
    """Over every run of the server under test, not the median: one lost message is a failure."""
    rows = []
    for section, data in results.items():
        if not section.startswith(CORRECTNESS_SCENARIOS):
            continue
        runs = data["runs"][OURS]
        row = {"section": section, "runs": len(runs)}
        for key in ("lost", "duplicated", "out_of_order", "closed_by_server"):
            row[key] = sum(run[key] for run in runs)
        row["history_complete"] = all(run["history_complete"] for run in runs)
        row["pass"] = row["history_complete"] and not any(row[k] for k in ("lost", "duplicated", "out_of_order",
                                                                           "closed_by_server"))
        rows.append(row)
    return rows


RESULT = {True: "pass", False: "FAIL", None: "n/a (too short to time)"}


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
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
        f"Server under test at commit {report.get('server_commit', 'unknown')}.",
        f"Command: `{report['command']}` — {report['sizes']['repeats']} alternating runs per server "
        f"({max(report['sizes']['repeats'], report['sizes']['latency_repeats'])} for latency), medians; "
        f"took {report['duration_s']:.0f} s on {report['started']}.",
        "",
        "| Target | Baseline | Ours | Ratio | Limit | Result |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in report["targets"]:
        unit = f" {row['unit']}" if row["unit"] else ""
        ratio = f"{row['ratio']:.3f}×" if row["ratio"] is not None else "—"
        lines.append(f"| {row['target']} | {_number(row['baseline'])}{unit if row['baseline'] is not None else ''} "
                     f"| {_number(row['ours'])}{unit} | {ratio} | {_limit(row)} | {RESULT[row['pass']]} |")
    for row in report["correctness"]:
        lines.append(f"| {row['section']}: lost / duplicated / out of order / dropped sockets, all runs "
                     f"| | {row['lost']} / {row['duplicated']} / {row['out_of_order']} / {row['closed_by_server']}"
                     f"{'' if row['history_complete'] else ', history incomplete'} | | 0 | "
                     f"{'pass' if row['pass'] else 'FAIL'} |")
    d = report["scenarios"].get("durability")
    if d:
        lines.append(f"| Every delivered message stored (kill -9 mid-run, restart) | | {d['missing']} missing of "
                     f"{d['delivered_max_seq_total']:,} | | 0 | {'pass' if d['pass'] else 'FAIL'} |")
    lines += ["", *details(report["scenarios"])]
    return "\n".join(lines) + "\n"


DETAILS = {
    "fanout_": [("messages_per_s", "messages/s (closed loop)"), ("deliveries_per_s", "deliveries/s"),
                ("server_cpu_us_per_delivery", "server CPU µs/delivery"),
                ("server_tcp_segments_per_delivery", "server TCP segments/delivery (≈ writes)"),
                ("server_file_writes_per_message", "server file writes/message (SQLite)")],
    "latency": [("offered_messages_per_s", "offered messages/s"), ("latency_p50_ms", "p50 ms"),
                ("latency_p90_ms", "p90 ms"), ("latency_p99_ms", "p99 ms"), ("latency_p99.9_ms", "p99.9 ms"),
                ("server_cpu_us_per_delivery", "server CPU µs/delivery"),
                ("server_tcp_segments_per_delivery", "server TCP segments/delivery (≈ writes)"),
                ("server_file_writes_per_message", "server file writes/message (SQLite)")],
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
    lines = ["| Scenario | Measure | Baseline | Ours |", "| --- | --- | ---: | ---: |"]
    for section, data in scenarios.items():
        if "median" not in data:
            continue
        for prefix, metrics in DETAILS.items():
            if not section.startswith(prefix):
                continue
            for key, label in metrics:
                cells = []
                for kind in (BASELINE, OURS):
                    value = data["median"].get(kind, {}).get(key)
                    cells.append(str(value).lower() if isinstance(value, bool) else _number(value))
                lines.append(f"| {section} | {label} | {cells[0]} | {cells[1]} |")
    return lines
