"""`run.py --workers N`: N server processes on one port, kept running by this one.

Each worker is `run.py` again, listening with SO_REUSEPORT, so the kernel
spreads new connections over them; they share rooms through PostgreSQL, so
any worker can serve any room. A worker that dies is started again; SIGTERM
or SIGINT stops them all (each closes its sockets with 1001).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

log = logging.getLogger("chat.workers")

RESTART_DELAY_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 15.0
RUN_PY = Path(__file__).resolve().parent.parent / "run.py"


def supervise(count: int, worker_args: list[str]) -> int:
    """Run `count` workers with these run.py arguments until a signal; the exit status."""
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        log.info("Stopping %d workers (%s)", count, signal.Signals(signum).name)
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    def start(number: int) -> subprocess.Popen[bytes]:
        worker = subprocess.Popen([sys.executable, str(RUN_PY), *worker_args, "--reuse-port"])
        log.info("Worker %d started (pid %d)", number, worker.pid)
        return worker

    workers = [start(number) for number in range(1, count + 1)]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        time.sleep(0.2)
        for index, worker in enumerate(workers):
            code = worker.poll()
            if code is None or stopping:
                continue
            if code == 2:  # a bad setting: every worker would fail the same way
                log.error("Worker %d stopped on a bad setting; stopping", index + 1)
                stop(signal.SIGTERM, None)
                break
            log.error("Worker %d (pid %d) exited with %d; starting it again", index + 1, worker.pid, code)
            time.sleep(RESTART_DELAY_SECONDS)
            workers[index] = start(index + 1)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for worker in workers:
        try:
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
    return 0
