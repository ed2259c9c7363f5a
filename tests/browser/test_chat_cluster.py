"""The chat page through nginx over three server processes on one PostgreSQL.

nginx runs the shipped site (tests/test_deploy.py renders it onto loopback)
with an upstream of the three processes, in plain round robin as shipped:
nothing steers a browser to a process. The test finds out from the servers'
logs which process holds each person's socket, and makes Bob join again
until his is on another process than Alice's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from server_process import ServerProcess
from test_deploy import needs_nginx, needs_openssl, start_nginx  # noqa: F401 (start_nginx: a fixture)

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
expect = sync_api.expect

REJOINS = 6  # round robin moves on with every request, so a few joins reach every process


@dataclass
class Site:
    """What ChatPage needs of a server: the address the browser opens."""

    url: str


def user_id(chat) -> str:
    return chat.page.evaluate("JSON.parse(localStorage.getItem('chat.user')).id")


def holding_process(servers: list[ServerProcess], user: str) -> int | None:
    """The index of the one process whose log shows this user's socket still open, if one does."""
    holding = []
    for index, server in enumerate(servers):
        log = server.log_text()
        opened = len(re.findall(rf"User {user} connected to room", log))
        closed = len(re.findall(rf"User {user} disconnected from room", log))
        if opened > closed:
            holding.append(index)
    return holding[0] if len(holding) == 1 else None


@needs_nginx
@needs_openssl
def test_two_people_on_different_processes_chat_and_see_each_other_online(open_chat, start_server, start_nginx,
                                                                          postgres):
    database = postgres.new_database()
    servers = [start_server(DATABASE_URL=database) for _ in range(3)]
    site = Site(start_nginx(servers).https_url)

    alice = open_chat(site, ignore_https_errors=True)
    alice.start_room("alice", "Lobby")
    expect(alice.online).to_have_text(["alice (you)"])
    bob = open_chat(site, ignore_https_errors=True)
    bob.create_user("bob")
    bob.join_and_wait("Lobby")

    def processes() -> tuple[int | None, int | None]:
        return holding_process(servers, user_id(alice)), holding_process(servers, user_id(bob))

    for _ in range(REJOINS):
        if None not in processes() and len(set(processes())) == 2:
            break
        bob.page.get_by_role("button", name="Leave").click()
        expect(bob.page.locator("#room-title")).to_have_text("No room joined")
        bob.join_and_wait("Lobby")
    alices, bobs = processes()
    assert None not in (alices, bobs) and alices != bobs, f"alice on {alices}, bob on {bobs}"

    expect(alice.online).to_have_text(["alice (you)", "bob"])
    expect(bob.online).to_have_text(["alice", "bob (you)"])
    conversation = ["Hello from one process", "And hello from another"]
    alice.send(conversation[0])
    # Bob answers what he has read. (Sent at once, the two could commit in either order: they go
    # through two processes, and the room's order is the order of the commits.)
    expect(bob.message_texts).to_have_text(conversation[:1])
    bob.send(conversation[1])
    expect(alice.message_texts).to_have_text(conversation)
    expect(bob.message_texts).to_have_text(conversation)
    alice.screenshot("chat-two-processes.png")

    bob.page.get_by_role("button", name="Leave").click()
    expect(alice.events.last).to_have_text("bob left the chat")
    expect(alice.online).to_have_text(["alice (you)"])
