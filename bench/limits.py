"""Open-file limit high enough for tens of thousands of sockets (children inherit it)."""

import resource

WANTED_OPEN_FILES = 65536


def raise_open_files(wanted: int = WANTED_OPEN_FILES) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    try:
        # As root the hard limit can be raised too (up to fs.nr_open).
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
