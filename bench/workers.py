"""Load-generator processes and the ready / go / done / close handshake with them.

Every worker connects first and reports ready, so that the server's CPU is
measured only over the traffic; it holds its sockets after reporting done, so
that the server's memory can be read with every socket still open.
"""

import multiprocessing as mp
import time
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

from bench.progress import Progress

_SPAWN = mp.get_context("spawn")  # a fresh interpreter: nothing inherited from the coordinator's state


class WorkerError(RuntimeError):
    pass


class WorkerGroup:
    """N processes running target(job, pipe, counters, index); a context manager that always reaps them."""

    def __init__(self, target: Callable, jobs: list[Any], progress: Progress | None = None) -> None:
        self.counters = _SPAWN.RawArray("q", len(jobs))  # frames or requests done, for the progress line
        self.pipes: list[Connection] = []
        self.procs = []
        for index, job in enumerate(jobs):
            mine, theirs = _SPAWN.Pipe()
            proc = _SPAWN.Process(target=target, args=(job, theirs, self.counters, index), daemon=True)
            proc.start()
            theirs.close()
            self.pipes.append(mine)
            self.procs.append(proc)
        self.progress = progress

    def __enter__(self) -> "WorkerGroup":
        return self

    def __exit__(self, *exc: object) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("close",))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(20)
            if proc.is_alive():
                proc.kill()
                proc.join()

    def done_count(self) -> int:
        return sum(self.counters)

    def gather(self, expected: str, timeout: float, total: int = 0) -> list[Any]:
        """One reply of kind `expected` from every worker, showing progress while waiting."""
        replies: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while len(replies) < len(self.pipes):
            if time.monotonic() > deadline:
                raise WorkerError(f"workers did not report {expected!r} within {timeout:.0f} s")
            waiting = [p for i, p in enumerate(self.pipes) if i not in replies]
            for pipe in wait(waiting, timeout=0.25):
                index = self.pipes.index(pipe)
                try:
                    kind, payload = pipe.recv()
                except EOFError:
                    raise WorkerError(f"worker {index} died (exit code {self.procs[index].exitcode})") from None
                if kind == "error":
                    raise WorkerError(f"worker {index}: {payload}")
                if kind != expected:
                    raise WorkerError(f"worker {index} said {kind!r}, expected {expected!r}")
                replies[index] = payload
            if self.progress:
                self.progress.update(self.done_count(), total)
        return [replies[i] for i in range(len(self.pipes))]

    def send_all(self, *message: Any) -> None:
        for pipe in self.pipes:
            pipe.send(message)


def split(items: list[Any], parts: int) -> list[list[Any]]:
    """Round-robin split, so that each part gets a share of every room."""
    return [items[i::parts] for i in range(parts)]
