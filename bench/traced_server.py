"""Run a server script under tracemalloc; each SIGUSR1 writes a snapshot (for `bench.profile idle`).

    python -m bench.traced_server SNAPSHOT_PREFIX run.py --port ...
    python -m bench.traced_server SNAPSHOT_PREFIX -m bench.baseline_server --port ...
"""

import runpy
import signal
import sys
import tracemalloc


def main() -> None:
    prefix, target, *rest = sys.argv[1:]
    taken = 0

    def snapshot(*_: object) -> None:
        nonlocal taken
        taken += 1
        tracemalloc.take_snapshot().dump(f"{prefix}.{taken}")

    signal.signal(signal.SIGUSR1, snapshot)
    tracemalloc.start()
    if target == "-m":
        sys.argv = [rest[0], *rest[1:]]
        runpy.run_module(rest[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = [target, *rest]
        sys.path.insert(0, ".")  # as `python run.py` would have it
        runpy.run_path(target, run_name="__main__")


if __name__ == "__main__":
    main()
