"""Open-file limit high enough for tens of thousands of sockets (children inherit it)."""

import resource

WANTED_OPEN_FILES = 65536


# Descriptors a server needs besides its client sockets: listener, database files, epoll, stdio.
SERVER_FD_HEADROOM = 100


def hard_open_files() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def sockets_a_server_can_hold(wanted: int) -> int:
    """Without CAP_SYS_RESOURCE (as in a sandbox) the hard limit cannot be raised: stay under it."""
    return min(wanted, hard_open_files() - SERVER_FD_HEADROOM)


def raise_open_files(wanted: int = WANTED_OPEN_FILES) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    try:
        # With CAP_SYS_RESOURCE the hard limit can be raised too (up to fs.nr_open).
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
