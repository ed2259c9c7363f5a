"""Browser tests: the real server in a subprocess (tests/conftest.py's
start_server), driven by headless Chromium.

Chromium is Debian's `chromium` package, launched by Playwright's Python
package (no browser download). Without either, these tests are skipped.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from server_process import REPO_ROOT, ServerProcess

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # then the browser fixture skips every test here
    expect = sync_playwright = None

ARTIFACTS = REPO_ROOT / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",  # tests may run as root, where the sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
UI_TIMEOUT_MS = 10_000

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def chat_server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server()


# Per test, not per session: sync Playwright keeps an event loop running in
# this thread while it is started, which would break the async tests that
# pytest runs after these. Starting Chromium costs about half a second.
@pytest.fixture
def browser() -> Iterator[Any]:
    if sync_playwright is None:
        pytest.skip("Playwright's Python package is not installed (pip install playwright)")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        expect.set_options(timeout=UI_TIMEOUT_MS)
        yield browser
        browser.close()


class ChatPage:
    """One person using the chat page, in their own browser profile."""

    def __init__(self, page: Any, server: ServerProcess) -> None:
        self.page = page
        self.server = server
        self.problems: list[str] = []
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught error: {error}"))
        page.on("dialog", self._on_dialog)
        page.on("console", self._on_console)

    def _on_dialog(self, dialog: Any) -> None:
        self.problems.append(f"a {dialog.type} box opened: {dialog.message}")
        dialog.dismiss()

    def _on_console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.problems.append(f"CSP violation: {message.text}")

    # -- locators a person would look at
    @property
    def notice(self) -> Any:
        return self.page.locator("#notice")

    @property
    def status(self) -> Any:
        return self.page.locator("#connection-status")

    @property
    def message_texts(self) -> Any:
        return self.page.locator("#messages .message .content")

    @property
    def events(self) -> Any:
        return self.page.locator("#messages .event")

    @property
    def online(self) -> Any:
        return self.page.locator("#online-list .person")

    # -- actions, as a person would do them
    def open(self, path: str = "/chat") -> Any:
        return self.page.goto(self.server.url + path)

    def create_user(self, username: str) -> None:
        self.page.get_by_placeholder("Pick a username").fill(username)
        self.page.get_by_role("button", name="Create user").click()
        expect(self.page.locator("#whoami-name")).to_have_text(username)

    def create_room(self, name: str) -> None:
        self.page.get_by_placeholder("New room name").fill(name)
        self.page.get_by_role("button", name="Create room").click()
        expect(self.page.locator("#rooms-hint")).to_have_text(re.compile("created"))

    def load_rooms(self) -> None:
        self.page.get_by_role("button", name="Load rooms").click()

    def room_row(self, name: str) -> Any:
        return self.page.locator(".room").filter(
            has=self.page.locator(".room-name").get_by_text(name, exact=True))

    def join(self, room_name: str) -> None:
        self.load_rooms()
        self.room_row(room_name).get_by_role("button", name="Join").click()

    def join_and_wait(self, room_name: str) -> None:
        self.join(room_name)
        self.expect_connected()

    def start_room(self, username: str, room_name: str) -> None:
        """A new user who makes a room and joins it: how most stories here begin."""
        self.create_user(username)
        self.create_room(room_name)
        self.join_and_wait(room_name)

    def expect_connected(self) -> None:
        expect(self.status).to_have_text("Connected")

    def send(self, text: str) -> None:
        box = self.page.get_by_label("Message", exact=True)
        box.fill(text)
        box.press("Enter")
        expect(box).to_have_value("")  # the page clears the box once the message is on its way

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path))
        return path


@pytest.fixture
def open_chat(browser: Any) -> Iterator[Callable[..., ChatPage]]:
    """Opens /chat for a new person (fresh localStorage); checks no page broke CSP or threw."""
    contexts: list[Any] = []
    pages: list[ChatPage] = []

    def open_page(server: ServerProcess, viewport: dict[str, int] = DESKTOP, path: str = "/chat",
                  **context_options: Any) -> ChatPage:
        context = browser.new_context(viewport=viewport, **context_options)
        contexts.append(context)
        chat = ChatPage(context.new_page(), server)
        pages.append(chat)
        chat.open(path)
        return chat

    yield open_page
    problems = [problem for chat in pages for problem in chat.problems]
    for context in contexts:
        context.close()
    assert problems == [], "the page misbehaved:\n" + "\n".join(problems)
