"""The chat page as people use it: two browsers in a room, history, reloads."""

from __future__ import annotations

import re

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
expect = sync_api.expect

PHONE = {"width": 390, "height": 844}


def test_page_is_served_with_its_own_assets_and_a_strict_csp(open_chat, chat_server):
    chat = open_chat(chat_server)
    response = chat.open()

    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    expect(chat.page).to_have_title("Chat rooms")
    for asset in ("/static/chat.js", "/static/chat.css"):
        assert chat.page.request.get(chat_server.url + asset).ok, asset
    expect(chat.page.get_by_role("button", name="Create user")).to_be_visible()

    # An injected inline script is refused (and would be reported as a problem).
    with pytest.raises(sync_api.Error, match="Content Security Policy"):
        chat.page.add_script_tag(content="window.injected = true")
    assert chat.page.evaluate("window.injected") is None
    assert [p for p in chat.problems if "CSP violation" in p] != []
    chat.problems.clear()


OPEN_SOCKET = """url => new Promise(resolve => {
    document.addEventListener("securitypolicyviolation", event => resolve("refused: " + event.effectiveDirective));
    const socket = new WebSocket(url);
    socket.addEventListener("open", () => resolve("open"));
    socket.addEventListener("close", event => resolve("closed " + event.code));
})"""


def test_the_page_may_open_sockets_to_its_own_host_only(open_chat, chat_server):
    chat = open_chat(chat_server)
    chat.open()
    own = chat_server.ws_url + "/ws/probe/probe"
    other_host = own.replace("127.0.0.1", "localhost")  # the same server under another name

    assert chat.page.evaluate(OPEN_SOCKET, own) == "open"  # CSP 'self' covers ws: on the same host
    assert chat.page.evaluate(OPEN_SOCKET, other_host) == "refused: connect-src"
    assert [p for p in chat.problems if "CSP violation" in p] != []
    chat.problems.clear()


def test_two_people_see_each_others_messages_joins_and_leaves(open_chat, chat_server):
    alice = open_chat(chat_server)
    alice.start_room("alice", "Lobby")
    expect(alice.page.locator("#room-title")).to_have_text("Lobby")
    expect(alice.page).to_have_title("Lobby · Chat rooms")
    expect(alice.room_row("Lobby").get_by_role("button", name="Joined")).to_be_disabled()
    expect(alice.online).to_have_text(["alice (you)"])

    bob = open_chat(chat_server)
    bob.create_user("bob")
    bob.join_and_wait("Lobby")
    expect(alice.events.last).to_have_text("bob joined the chat")
    expect(alice.online).to_contain_text(["alice", "bob"])
    expect(bob.online).to_contain_text(["alice", "bob"])

    alice.send("Hi Bob! Welcome to the lobby.")
    bob.send("Hello Alice, thanks. Is the page working on your side?")
    alice.send("Perfectly: Enter sends, and the view follows new messages.")
    conversation = [
        "Hi Bob! Welcome to the lobby.",
        "Hello Alice, thanks. Is the page working on your side?",
        "Perfectly: Enter sends, and the view follows new messages.",
    ]
    expect(alice.message_texts).to_have_text(conversation)
    expect(bob.message_texts).to_have_text(conversation)
    expect(bob.page.locator(".message.mine .content")).to_have_text([conversation[1]])
    expect(alice.page.locator(".message .author").first).to_have_text("alice")
    alice.screenshot("chat-conversation.png")

    bob.page.get_by_role("button", name="Leave").click()
    expect(bob.page.locator("#room-title")).to_have_text("No room joined")
    expect(alice.events.last).to_have_text("bob left the chat")
    expect(alice.online).to_have_text(["alice (you)"])


def test_history_appears_on_join_and_a_reload_keeps_the_user(open_chat, chat_server):
    alice = open_chat(chat_server)
    alice.start_room("alice", "Book club")
    for n in range(1, 4):
        alice.send(f"note {n}")
    expect(alice.message_texts).to_have_text(["note 1", "note 2", "note 3"])

    bob = open_chat(chat_server)
    bob.create_user("bob")
    bob.join_and_wait("Book club")
    expect(bob.message_texts).to_have_text(["note 1", "note 2", "note 3"])

    alice.page.reload()
    expect(alice.page.locator("#whoami-name")).to_have_text("alice")
    alice.expect_connected()  # the link (#room=...) brings her back into the room
    expect(alice.page.locator("#room-title")).to_have_text("Book club")
    expect(alice.page.locator(".message.mine .content")).to_have_text(["note 1", "note 2", "note 3"])
    assert sorted(user["username"] for user in chat_server.get_json("/users")) == ["alice", "bob"]


def test_earlier_messages_page_back_beyond_the_first_fifty(open_chat, start_server):
    server = start_server(RATE_LIMIT_PER_SECOND="0")  # 55 quick messages are not a flood here
    alice = open_chat(server)
    alice.start_room("alice", "Archive")
    for n in range(1, 56):
        alice.send(f"entry {n}")
    expect(alice.message_texts).to_have_count(55)

    bob = open_chat(server)
    bob.create_user("bob")
    bob.join_and_wait("Archive")
    expect(bob.message_texts).to_have_count(50)
    expect(bob.message_texts.first).to_have_text("entry 6")
    expect(bob.message_texts.last).to_be_in_viewport()

    bob.page.get_by_role("button", name="Show earlier messages").click()
    expect(bob.message_texts).to_have_text([f"entry {n}" for n in range(1, 56)])
    expect(bob.message_texts.nth(5)).to_be_in_viewport()  # the reader stays where they were
    expect(bob.message_texts.first).not_to_be_in_viewport()
    expect(bob.page.get_by_role("button", name="Show earlier messages")).to_have_count(0)
    alice.send("entry 56")
    expect(bob.message_texts).to_have_count(56)


def test_phone_sized_screen(open_chat, chat_server):
    host = open_chat(chat_server)
    host.start_room("host", "On the go")

    phone = open_chat(chat_server, viewport=PHONE, is_mobile=True, has_touch=True)
    phone.create_user("pat")
    phone.join_and_wait("On the go")
    host.send("Can you read this on your phone?")
    phone.send("Yes, it fits the screen nicely.")
    host.send("A long word to check wrapping: " + "supercalifragilistic" * 5)
    expect(phone.message_texts).to_have_count(3)

    page = phone.page
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    expect(page.get_by_label("Message", exact=True)).to_be_in_viewport()
    expect(page.get_by_role("button", name="Send")).to_be_in_viewport()
    expect(page.locator("#messages .message").last).to_be_in_viewport()
    phone.screenshot("chat-phone.png")

    page.get_by_role("button", name="Leave").click()
    expect(page.get_by_role("button", name="Load rooms")).to_be_in_viewport()
    phone.screenshot("chat-phone-rooms.png")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_a_new_user_is_asked_to_create_a_user_before_joining(open_chat, chat_server):
    owner = open_chat(chat_server)
    owner.create_user("owner")
    owner.create_room("Garden")

    newcomer = open_chat(chat_server)
    newcomer.join("Garden")
    expect(newcomer.notice).to_contain_text("First create a user")
    expect(newcomer.page.locator("#room-title")).to_have_text("No room joined")
    assert re.search("Not connected", newcomer.status.text_content())


def test_the_view_follows_new_messages_unless_the_reader_scrolled_up(open_chat, chat_server):
    alice = open_chat(chat_server)
    alice.start_room("alice", "Busy")
    reader = open_chat(chat_server, viewport={"width": 1024, "height": 600})
    reader.create_user("reader")
    reader.join_and_wait("Busy")

    for n in range(1, 26):
        alice.send(f"line {n}")
    expect(reader.message_texts).to_have_count(25)
    expect(reader.message_texts.last).to_be_in_viewport()

    reader.message_texts.first.scroll_into_view_if_needed()  # reading the start
    alice.send("line 26")
    expect(reader.message_texts).to_have_count(26)
    expect(reader.message_texts.first).to_be_in_viewport()
    expect(reader.message_texts.last).not_to_be_in_viewport()

    reader.send("back at the bottom")  # one's own message always shows
    expect(reader.message_texts.last).to_have_text("back at the bottom")
    expect(reader.message_texts.last).to_be_in_viewport()


def test_switch_user_forgets_the_saved_user_after_asking(open_chat, chat_server):
    alice = open_chat(chat_server)
    alice.start_room("alice", "Lobby")

    alice.page.get_by_role("button", name="Switch user").click()
    expect(alice.notice).to_contain_text("Forget “alice” in this browser?")
    alice.notice.get_by_role("button", name="Cancel").click()
    expect(alice.page.locator("#whoami-name")).to_have_text("alice")
    alice.expect_connected()

    alice.page.get_by_role("button", name="Switch user").click()
    alice.notice.get_by_role("button", name="Forget “alice”").click()
    expect(alice.page.locator("#room-title")).to_have_text("No room joined")
    alice.page.reload()
    expect(alice.page.get_by_role("button", name="Create user")).to_be_visible()
    alice.create_user("alice2")
    alice.join_and_wait("Lobby")
