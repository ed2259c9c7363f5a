"""Server CPU time and memory, read from /proc so that the load generator's own work is never counted."""

import asyncio
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces and parentheses: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def process_tree(pid: int) -> list[int]:
    """The pid and its live descendants (a server might fork workers)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        try:
            todo += _children(current)
        except OSError:
            pass
    return tree


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of the process tree, all threads included, and of the children its members
    have reaped: a PostgreSQL backend whose connection closed during a measurement still counts."""
    ticks = 0
    for member in process_tree(pid):
        try:
            fields = _stat_fields(member)
        except OSError:
            continue
        # Fields 14 to 17 of stat (utime, stime, cutime, cstime), counted from 1 with pid and comm removed.
        ticks += sum(int(field) for field in fields[11:15])
    return ticks / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of the process tree."""
    total = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


async def steady_rss(pid: int, timeout_s: float = 60.0) -> int:
    """The RSS of the process tree once it has not grown for a second (or after `timeout_s`)."""
    deadline, rss = time.monotonic() + timeout_s, rss_bytes(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        rss, previous = rss_bytes(pid), rss
        if rss <= previous:
            break
    return rss


def write_syscalls(pid: int) -> int:
    """write() calls so far (/proc/PID/io syscw): file writes such as SQLite's; socket sends are not counted."""
    total = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/io").read_text().splitlines():
                if line.startswith("syscw:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def tcp_data_segments_out(pid: int) -> int:
    """Data segments sent so far on the process's open TCP connections (ss's data_segs_out).

    With TCP_NODELAY every send() leaves as at least one segment, so per delivered
    frame this says how many writes the server made: 1.0 is one write per frame,
    less is writes coalesced. Counts only connections that are still open.
    """
    try:
        out = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True, text=True,
                             check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0  # no ss here: the measure is left out, nothing else depends on it
    owner, total = f"pid={pid},", 0
    lines = out.splitlines()
    for head, info in zip(lines, lines[1:]):
        if owner in head and info[:1].isspace():  # a socket's line, then its indented details
            found = re.search(r"data_segs_out:(\d+)", info)
            total += int(found.group(1)) if found else 0
    return total


class CpuMeter:
    """CPU spent by some processes (and their children) between start() and stop(), summed, and the file
    writes and TCP segments they made meanwhile."""

    def __init__(self, pids: int | Sequence[int], count_segments: bool = False) -> None:
        self.pids = [pids] if isinstance(pids, int) else list(pids)
        self.count_segments = count_segments and shutil.which("ss") is not None
        self.segments_begin = 0
        self.segments: int | None = None
        self.begin = 0.0
        self.seconds = 0.0
        self.writes_begin = 0
        self.writes = 0

    def _sum(self, measure: Callable[[int], float]) -> float:
        return sum(measure(pid) for pid in self.pids)

    def start(self) -> None:
        if self.count_segments:
            self.segments_begin = int(self._sum(tcp_data_segments_out))
        self.writes_begin = int(self._sum(write_syscalls))
        self.begin = self._sum(cpu_seconds)

    def stop(self) -> float:
        self.seconds = self._sum(cpu_seconds) - self.begin
        self.writes = int(self._sum(write_syscalls)) - self.writes_begin
        if self.count_segments:
            self.segments = int(self._sum(tcp_data_segments_out)) - self.segments_begin
        return self.seconds
