"""/docs, the interactive API page, as a person uses it: Swagger UI from this server alone."""

from __future__ import annotations

import json
import re

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
expect = sync_api.expect


def test_the_api_page_lists_the_routes_and_try_it_out_creates_a_user(open_chat, chat_server):
    requested: list[str] = []
    docs = open_chat(chat_server, path="/docs")  # the fixture fails the test on a CSP violation or a page error
    docs.page.on("request", lambda request: requested.append(request.url))
    response = docs.open("/docs")  # again, watching every request

    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "connect-src 'self';" in csp and "unsafe" not in csp
    document = chat_server.get_json("/openapi.json")
    paths = docs.page.locator(".opblock-summary-path")
    expect(paths.first).to_be_visible()
    listed = {(text.split()[0]) for text in paths.all_inner_texts()}
    assert listed == set(document["paths"])

    create_user = docs.page.locator(".opblock-post").filter(
        has=docs.page.locator(".opblock-summary-path", has_text=re.compile(r"^/users$")))
    create_user.locator(".opblock-summary").click()
    create_user.get_by_role("button", name="Try it out").click()
    create_user.locator("textarea.body-param__text").fill(json.dumps({"username": "swagger"}))
    create_user.get_by_role("button", name="Execute").click()

    expect(create_user.locator(".live-responses-table tbody td.response-col_status").first).to_have_text("200")
    expect(create_user.locator(".live-responses-table .microlight").first).to_contain_text('"username": "swagger"')
    assert [user["username"] for user in chat_server.get_json("/users")] == ["swagger"]
    # Everything came from this server: no CDN, no validator badge.
    assert [url for url in requested if not url.startswith(chat_server.url)] == []
