"""The listening socket under abuse, through a real run.py: half-sent requests, too many connections,
and an exhausted open-file limit."""

from __future__ import annotations

import datetime
import json
import re
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from server.listener import REFUSAL_DETAIL
from server_process import ServerProcess

HALF_SENT = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"
WHOLE = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def dropped_within(conn: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection within `seconds` (reading and skipping any answer)."""
    conn.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not conn.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def answer(conn: socket.socket) -> tuple[int, dict[str, object]]:
    """The status and JSON body of one HTTP answer read from the connection."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"closed before a whole answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += conn.recv(65536)
    return int(head.split()[1]), json.loads(body[:length])


@contextmanager
def connections(server: ServerProcess, count: int) -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        yield [stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=5))
               for _ in range(count)]


def test_half_sent_requests_are_dropped_after_the_header_timeout(start_server):
    server = start_server(HEADER_TIMEOUT_SECONDS="1")
    with connections(server, 20) as slow:
        for conn in slow:
            conn.sendall(HALF_SENT)
        with connections(server, 1) as (kept_alive,):
            kept_alive.sendall(WHOLE)
            assert answer(kept_alive)[0] == 200  # a whole request is answered, and the connection kept
            kept_alive.sendall(HALF_SENT)  # then the next request comes only half
            started = time.monotonic()
            assert all(dropped_within(conn, 5) for conn in [*slow, kept_alive])
            assert time.monotonic() - started < 4
    # Trickling a byte at a time does not keep a connection either.
    with connections(server, 1) as (trickling,):
        started = time.monotonic()
        trickling.settimeout(0.2)
        try:
            for byte in HALF_SENT:
                trickling.sendall(bytes([byte]))
                time.sleep(0.2)
                if time.monotonic() - started > 5:
                    break
            dropped = dropped_within(trickling, 5)
        except (BrokenPipeError, ConnectionResetError):
            dropped = True
        assert dropped and time.monotonic() - started < 5
    assert server.get_json("/health")["status"] == "healthy"


def test_a_request_body_that_trickles_in_is_answered_408_and_its_connection_closed(start_server):
    server = start_server(BODY_TIMEOUT_SECONDS="1")
    with connections(server, 1) as (slow,):
        slow.sendall(b"POST /users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"username\": ")  # and the rest never comes
        started = time.monotonic()
        status, body = answer(slow)
        assert (status, body) == (408, {"detail": "The request body did not arrive within 1 s"})
        assert time.monotonic() - started < 4
        # aiohttp reads on for up to 10 s (the rest of a body answered early, so that the answer is
        # not lost to a reset), then closes: no longer than that, however slowly the body comes.
        assert dropped_within(slow, 15)
        assert time.monotonic() - started < 14
    assert server.get_json("/users") == []  # nothing was created
    assert server.get_json("/health")["status"] == "healthy"


def test_connections_over_the_limit_are_answered_503_and_closed(start_server):
    server = start_server(MAX_OPEN_CONNECTIONS="5", HEADER_TIMEOUT_SECONDS="30")
    time.sleep(0.3)  # until the start-up check's own connection is closed
    with connections(server, 5) as held:
        for conn in held:
            conn.sendall(WHOLE)
            assert answer(conn)[0] == 200  # kept alive: five open connections
        with connections(server, 3) as refused:
            for conn in refused:
                conn.sendall(WHOLE)
                assert answer(conn) == (503, {"detail": REFUSAL_DETAIL})
                assert dropped_within(conn, 3)
        held[0].close()
        time.sleep(0.3)  # the server notices the close
        with connections(server, 1) as (conn,):
            conn.sendall(WHOLE)
            assert answer(conn)[0] == 200
    log = server.log_text()
    assert "Refused connections over the limit of 5" in log and "Traceback" not in log


def test_the_default_limit_stays_below_the_open_file_limit(start_server):
    """With only 160 descriptors and no setting, the limit is 96 open connections: the rest are refused
    with a 503 instead of making accept() fail for want of descriptors."""
    server = start_server(open_files=160)
    time.sleep(0.3)  # until the start-up check's own connection is closed
    with connections(server, 120) as held:
        answers = []
        for conn in held:
            conn.sendall(WHOLE)
        for conn in held:
            answers.append(answer(conn)[0])
        assert answers.count(200) == 96 and answers.count(503) == 24, answers
    assert server.get_json("/health")["status"] == "healthy"
    assert "out of system resource" not in server.log_text()


def test_at_the_open_file_limit_failed_accepts_are_logged_once_a_second_with_a_count(start_server):
    server = start_server(open_files=64, MAX_OPEN_CONNECTIONS="0", HEADER_TIMEOUT_SECONDS="30")
    with connections(server, 100):  # the kernel queues those the server cannot accept
        time.sleep(3)
    time.sleep(1.5)  # the server takes connections again once some are closed
    assert server.get_json("/health")["status"] == "healthy"
    log = server.log_text()
    assert log.count("Traceback") == 0, f"{log.count('Traceback')} tracebacks"
    lines = [line for line in log.splitlines() if "Cannot accept connections: Too many open files" in line]
    times = [datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in lines]
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(times, times[1:])]
    assert lines and all(gap >= 0.9 for gap in gaps), lines
    assert all(re.search(r"\(\d+ since the last such line\)$", line) for line in lines), lines
