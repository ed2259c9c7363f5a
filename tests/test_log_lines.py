"""A client cannot write lines of its own into the server's log."""

from __future__ import annotations

import http.client

FORGED = "FORGED 2026-01-01 00:00:00,000 ERROR chat: the admin password is hunter2"


def test_a_path_with_an_encoded_newline_cannot_forge_a_log_line(start_server):
    server = start_server(LOG_LEVEL="DEBUG")
    quoted = FORGED.replace(" ", "%20").replace(",", "%2C")
    for path in (f"/x%0A{quoted}", f"/x%0D%0A{quoted}", f"/rooms/x%0A{quoted}/messages?limit=1"):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("GET", path)
        assert connection.getresponse().status == 404
        connection.close()
    server.stop()
    lines = server.log_text().splitlines()
    assert not [line for line in lines if line.lstrip("\r").startswith("FORGED")], lines
    # Each request still has its one access line, the path as the client encoded it.
    assert sum('"GET /x%0AFORGED%202026' in line for line in lines) == 1, lines
    assert sum('"GET /rooms/x%0AFORGED%202026' in line and "limit" not in line for line in lines) == 1, lines
