"""What the page says and does when things go wrong."""

from __future__ import annotations

import re

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
expect = sync_api.expect


def start_conversation(open_chat, server, room="Lobby"):
    alice = open_chat(server)
    alice.start_room("alice", room)
    bob = open_chat(server)
    bob.create_user("bob")
    bob.join_and_wait(room)
    return alice, bob


def test_server_restart_mid_conversation_loses_nothing_and_doubles_nothing(open_chat, chat_server):
    alice, bob = start_conversation(open_chat, chat_server)
    alice.send("before 1")
    bob.send("before 2")
    expect(alice.message_texts).to_have_text(["before 1", "before 2"])

    chat_server.stop()
    for person in (alice, bob):
        expect(person.notice).to_contain_text("The server is restarting")
        expect(person.status).to_have_text(re.compile("Reconnecting"))
    # Let Bob's backoff grow so that he is still away when Alice talks:
    # he must catch up with since=SEQ when he comes back.
    expect(bob.status).to_have_text(re.compile(r"attempt [5-9]"), timeout=20_000)
    expect(bob.page.get_by_role("button", name="Reconnect now")).to_be_visible()

    chat_server.start()
    # Alice comes back at once. Her own backoff timer may fire first and hide the button, so the
    # click is dispatched rather than waited for; the page ignores it when no retry is pending.
    alice.page.get_by_role("button", name="Reconnect now").dispatch_event("click")
    alice.expect_connected()
    expect(alice.notice).to_be_hidden()
    expect(bob.status).to_have_text(re.compile("Reconnecting"))
    alice.send("during 1")
    alice.send("during 2")

    expect(bob.status).to_have_text("Connected", timeout=20_000)
    bob.send("after 1")
    everything = ["before 1", "before 2", "during 1", "during 2", "after 1"]
    expect(alice.message_texts).to_have_text(everything)
    expect(bob.message_texts).to_have_text(everything)
    expect(bob.events.filter(has_text="Reconnected.")).to_have_count(1)


def test_dropped_connection_says_so_and_comes_back_by_itself(open_chat, chat_server):
    alice, bob = start_conversation(open_chat, chat_server)
    alice.send("saved before the crash")
    # Only a message the server sent back is acknowledged, and so sure to survive the crash.
    expect(alice.message_texts).to_have_text(["saved before the crash"])

    chat_server.kill()  # no close frame: the browser sees 1006
    expect(alice.notice).to_contain_text("The connection to the server was lost")
    expect(alice.notice).to_contain_text("Reconnecting by itself")
    # Typing goes on; Enter explains instead of losing the text.
    box = alice.page.get_by_label("Message", exact=True)
    box.fill("typed while offline")
    box.press("Enter")
    expect(alice.notice).to_contain_text("Not connected right now, so this was not sent")
    expect(box).to_have_value("typed while offline")

    chat_server.start()
    alice.expect_connected()
    bob.expect_connected()
    expect(alice.notice).to_be_hidden()
    box.press("Enter")
    expect(box).to_have_value("")
    bob.send("still here")
    for person in (alice, bob):
        expect(person.message_texts).to_have_text(["saved before the crash", "typed while offline", "still here"])


def test_a_message_the_server_refuses_is_shown_as_refused(open_chat, start_server):
    server = start_server(MAX_MESSAGE_LENGTH="10")
    alice = open_chat(server)
    alice.start_room("alice", "Short")

    alice.send("far too long for this server")
    expect(alice.events.last).to_contain_text("The server refused a message")
    alice.send("short")
    expect(alice.message_texts).to_have_text(["short"])
    alice.expect_connected()


def test_unknown_room_link_says_room_not_found_and_what_to_do(open_chat, chat_server):
    alice = open_chat(chat_server)
    alice.create_user("alice")

    alice.open("/chat#room=no-such-room")
    expect(alice.notice).to_contain_text("Room not found")
    expect(alice.notice).to_contain_text("Load the rooms and join one of them, or create a new room")
    expect(alice.page.locator("#room-title")).to_have_text("No room joined")
    expect(alice.page).to_have_url(chat_server.url + "/chat")


def test_a_mangled_room_link_is_treated_as_an_unknown_room(open_chat, chat_server):
    alice = open_chat(chat_server)
    alice.create_user("alice")
    # A fresh load of the link. (Changing only the hash and reloading raced the page: when the
    # hash change's own lookup finished first, the page forgot the link, as it should, before the reload.)
    alice.page.goto("about:blank")
    alice.open("/chat#room=%E0%A4%A")
    expect(alice.notice).to_contain_text("Room not found")


def test_the_servers_reason_for_refusing_a_username_is_shown(open_chat, chat_server):
    alice = open_chat(chat_server)
    alice.page.get_by_placeholder("Pick a username").fill("  a  ")  # 2 characters only with spaces
    alice.page.get_by_role("button", name="Create user").click()
    expect(alice.notice).to_contain_text("Could not create the user: Username must be at least 2 characters long")
    expect(alice.page.get_by_role("button", name="Create user")).to_be_enabled()


def test_socket_closed_with_4004_room_not_found_is_explained(open_chat, chat_server):
    """The socket's own 4004 (room gone between join and connect), from the real server."""
    alice = open_chat(chat_server)
    alice.create_user("alice")
    ghost = {"id": "ghost-room", "name": "Ghost", "created_at": "2026-01-01T00:00:00Z", "users": []}
    # Pretend the HTTP side still knew the room, so the page reaches the socket.
    alice.page.route("**/rooms/ghost-room", lambda route: route.fulfill(json=ghost))
    alice.page.route("**/rooms/ghost-room/join", lambda route: route.fulfill(json={"message": "ok"}))
    alice.page.route("**/rooms/ghost-room/messages*", lambda route: route.fulfill(json=[]))

    alice.open("/chat#room=ghost-room")
    expect(alice.notice).to_contain_text("Room not found")
    expect(alice.status).to_have_text("Disconnected")
    expect(alice.page.get_by_label("Message", exact=True)).to_be_disabled()


def test_saved_user_unknown_to_a_reset_server_is_offered_a_new_user(open_chat, chat_server, tmp_path):
    alice = open_chat(chat_server)
    alice.create_user("alice")

    chat_server.stop()
    chat_server.db_path = tmp_path / "fresh.db"  # same address, empty database
    chat_server.start()
    alice.page.reload()
    expect(alice.page.locator("#whoami-name")).to_have_text("alice")
    alice.create_room("Fresh start")
    alice.join("Fresh start")
    expect(alice.notice).to_contain_text("does not know your saved user “alice”")

    alice.notice.get_by_role("button", name="Create new user “alice”").click()
    alice.expect_connected()
    expect(alice.page.locator("#room-title")).to_have_text("Fresh start")
    assert [user["username"] for user in chat_server.get_json("/users")] == ["alice"]


def test_wrong_token_is_refused_with_an_explanation(open_chat, start_server):
    server = start_server(REQUIRE_TOKENS="true")
    alice = open_chat(server)
    alice.start_room("alice", "Private")  # the page sends its token, so this works

    # A token from somewhere else (another server, an old copy of the browser data).
    alice.page.evaluate(
        "const user = JSON.parse(localStorage.getItem('chat.user'));"
        "user.token = 'not-the-right-token';"
        "localStorage.setItem('chat.user', JSON.stringify(user));"
    )
    alice.page.reload()
    expect(alice.notice).to_contain_text("did not accept the saved token for “alice”")
    expect(alice.notice.get_by_role("button", name="Create new user “alice”")).to_be_visible()


def test_with_tokens_required_the_page_reads_history_and_presence_with_its_token(open_chat, start_server):
    server = start_server(REQUIRE_TOKENS="true")
    alice = open_chat(server)
    alice.start_room("alice", "Members only")
    alice.send("Said before Bob came")

    bob = open_chat(server)
    bob.create_user("bob")
    bob.join_and_wait("Members only")

    # History over HTTP and presence both need a member's token: the page sends its own.
    expect(bob.message_texts).to_have_text(["Said before Bob came"])
    expect(bob.online).to_have_text(["alice", "bob (you)"])
    expect(alice.online).to_have_text(["alice (you)", "bob"])
    expect(bob.notice).to_be_hidden()


def test_refused_origin_is_explained(open_chat, chat_server):
    """4003 as a browser gets it when a proxy in front of the server rewrites Host.

    The server always accepts pages it serves itself, so the socket's answer
    is a stand-in here: it closes the way the server does for a foreign origin.
    """
    alice = open_chat(chat_server)
    alice.create_user("alice")
    alice.create_room("Lobby")
    alice.page.route_web_socket(
        re.compile(r"/ws/"), lambda socket: socket.close(code=4003, reason="Origin not allowed"))
    alice.join("Lobby")
    expect(alice.notice).to_contain_text("does not accept chat connections from this page's address")
    expect(alice.notice).to_contain_text("CORS_ORIGINS")
    expect(alice.status).to_have_text("Disconnected")


def test_unreachable_server_is_explained(open_chat, chat_server):
    alice = open_chat(chat_server)
    alice.create_user("alice")
    chat_server.stop()

    alice.page.get_by_placeholder("New room name").fill("Nowhere")
    alice.page.get_by_role("button", name="Create room").click()
    expect(alice.notice).to_contain_text("Could not create the room: the server cannot be reached")
    alice.page.get_by_role("button", name="Dismiss").click()
    expect(alice.notice).to_be_hidden()


def test_markup_in_names_and_messages_stays_inert_text(open_chat, chat_server):
    payload = "<img src=x onerror=alert(1)>"
    script = "<script>alert(2)</script>"
    mallory = open_chat(chat_server)
    mallory.start_room(payload, "<b>bold room</b>")
    mallory.send(payload)
    mallory.send(script)

    viewer = open_chat(chat_server)
    viewer.create_user("viewer")
    viewer.join_and_wait("<b>bold room</b>")
    viewer.send("I see only text")
    for person in (mallory, viewer):
        page = person.page
        expect(person.message_texts).to_have_text([payload, script, "I see only text"])
        expect(page.locator("#messages .author").first).to_have_text(payload)
        expect(page.locator("#room-title")).to_have_text("<b>bold room</b>")
        expect(person.online).to_contain_text([payload])
        expect(page.locator("body img, body b, body script")).to_have_count(0)
    expect(mallory.page.locator("#whoami-name")).to_have_text(payload)
    # The conftest fails the test if any alert() box opened or CSP was violated.
