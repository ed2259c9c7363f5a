"""Network-level smoke test of a running chat server.

Walks the path a chat client takes: create a user, create a room, join it,
open the socket, receive the join message, send, receive the broadcast, read
the history. Prints one line per step, PASS or FAIL with the reason (SKIP for
a step that could not run because an earlier one failed), and exits 0 only
when every step passed.

    python tools/ws_network_smoke.py                       # API_BASE / WS_BASE, or 127.0.0.1:8000
    python tools/ws_network_smoke.py --url https://chat.example.com
    python tools/ws_network_smoke.py --url http://127.0.0.1:8000 --origin https://app.example.com
    python tools/ws_network_smoke.py --url URL --room ROOM_ID --user USER_ID --token T --json

A refused socket is reported in the form the server chose for it: without
--origin the tool is a script, and the server answers a refusal over HTTP
(404, 401, 429, 503 with the close code in the body); with --origin it is a
browser page, and the server lets the socket open and then closes it with the
code and reason.

Needs only aiohttp (the server's own dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from dataclasses import dataclass, field

import aiohttp

from _checks import (
    UPGRADE_FIX_ONE_LINE,
    Bases,
    HttpAnswer,
    SocketOutcome,
    add_common_arguments,
    argument_problems,
    close_advice,
    describe_close,
    http_call,
    make_session,
    open_socket,
    resolve_bases,
    socket_url,
)

STEPS = (
    "create user",  # "use user" with --user
    "create room",  # "use room" with --room
    "join room",
    "connect socket",
    "receive join message",
    "send message",
    "receive broadcast",
    "read history",
)


@dataclass
class Report:
    quiet: bool = False  # --json: one document at the end instead of a line per step
    lines: list[tuple[str, str, str]] = field(default_factory=list)  # (verdict, step, detail)

    def record(self, verdict: str, step: str, detail: str) -> None:
        self.lines.append((verdict, step, detail))
        if not self.quiet:
            print(f"{verdict} {step}: {detail}", flush=True)

    def passed(self, step: str, detail: str) -> None:
        self.record("PASS", step, detail)

    def failed(self, step: str, detail: str) -> None:
        self.record("FAIL", step, detail)

    def skipped(self, step: str, detail: str) -> None:
        self.record("SKIP", step, detail)

    @property
    def all_passed(self) -> bool:
        return len(self.lines) == len(STEPS) and all(v == "PASS" for v, _, _ in self.lines)

    def summary(self) -> str:
        passed = sum(1 for v, _, _ in self.lines if v == "PASS")
        if self.all_passed:
            return f"smoke test passed ({passed}/{len(STEPS)} steps)"
        first = next(step for v, step, _ in self.lines if v != "PASS")
        return f"smoke test FAILED ({passed}/{len(STEPS)} steps passed; first problem: {first})"

    def to_json(self, bases: Bases) -> str:
        steps = [{"step": step, "verdict": verdict, "detail": detail} for verdict, step, detail in self.lines]
        return json.dumps({"url": bases.api, "socket_url": bases.ws, "ok": self.all_passed,
                           "summary": self.summary(), "steps": steps}, indent=2)


def http_failure(answer: HttpAnswer) -> str:
    """The reason an HTTP step failed, with what to do about it."""
    reason = answer.describe()
    detail = answer.detail
    if detail == "Room not found":
        return (
            f"{reason} — the room does not exist: create it first (POST /rooms) "
            "or set ALLOW_JOIN_AUTO_ROOMS=true"
        )
    if detail == "User not found":
        return (
            f"{reason} — the user does not exist: create it first (POST /users) "
            "or set ALLOW_JOIN_AUTO_USERS=true and send a username"
        )
    if answer.status == 404 and answer.body is None:
        return f"{reason} — nothing serves this path: is the URL the chat server's address?"
    if answer.status in (502, 503, 504) and answer.body is None:
        return f"{reason} — the proxy in front cannot reach the chat server"
    return reason


def socket_failure(outcome: SocketOutcome) -> str:
    reason = outcome.describe()
    if outcome.kind in ("closed", "refused"):
        return f"{reason} — {close_advice(outcome.close_code, outcome.close_reason)}"
    if outcome.kind == "plain_http":
        return f"{reason} — {UPGRADE_FIX_ONE_LINE}"
    if outcome.kind == "no_route":
        return f"{reason} — check the URL, and that the proxy passes /ws/ to the server"
    return reason


class Smoke:
    def __init__(self, session: aiohttp.ClientSession, bases: Bases, args: argparse.Namespace):
        self.session = session
        self.bases = bases
        self.args = args
        self.report = Report(quiet=args.json)
        self.nonce = secrets.token_hex(4)
        self.user: dict | None = None
        self.room_id: str | None = args.room
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.first_frame: object = None

    async def run(self) -> Report:
        try:
            await self.create_or_check_user()
            await self.create_or_check_room()
            await self.join_room()
            await self.connect_socket()
            self.receive_join_message()
            sent = await self.send_message()
            await self.receive_broadcast(sent)
            await self.read_history(sent)
        finally:
            if self.ws is not None:
                await self.ws.close()
        return self.report

    async def post(self, path: str, body: dict) -> HttpAnswer:
        return await http_call(self.session, "POST", self.bases.api + path, json_body=body)

    async def create_or_check_user(self) -> None:
        if self.args.user is not None:
            await self.check_given_user()
            return
        answer = await self.post("/users", {"username": f"smoke-{self.nonce}"})
        if answer.status == 200 and isinstance(answer.body, dict) and "id" in answer.body:
            self.user = answer.body
            self.report.passed("create user", f"id={self.user['id']} username={self.user['username']}")
        else:
            self.report.failed("create user", http_failure(answer))

    async def check_given_user(self) -> None:
        # --user (and --token): connect as an existing user, as a returning client would.
        user_id = self.args.user
        answer = await http_call(self.session, "GET", f"{self.bases.api}/users/{user_id}")
        if answer.status == 200 and isinstance(answer.body, dict):
            self.user = {"id": user_id, "username": answer.body.get("username", "?"), "token": self.args.token}
            self.report.passed("use user", f"id={user_id} username={self.user['username']} (given with --user)")
        else:
            self.report.failed("use user", f"user {user_id}: {http_failure(answer)}")

    async def create_or_check_room(self) -> None:
        if self.room_id is not None:
            await self.check_given_room()
            return
        answer = await self.post("/rooms", {"name": f"smoke-room-{self.nonce}"})
        if answer.status == 200 and isinstance(answer.body, dict) and "id" in answer.body:
            self.room_id = answer.body["id"]
            self.report.passed("create room", f"id={self.room_id} name={answer.body['name']}")
        else:
            self.report.failed("create room", http_failure(answer))

    async def check_given_room(self) -> None:
        # --room: use an existing room, as a client that joins one would.
        answer = await http_call(self.session, "GET", f"{self.bases.api}/rooms/{self.room_id}")
        if answer.status == 200:
            name = answer.body.get("name") if isinstance(answer.body, dict) else "?"
            self.report.passed("use room", f"id={self.room_id} name={name} (given with --room)")
        else:
            self.report.failed("use room", f"room {self.room_id}: {http_failure(answer)}")

    async def join_room(self) -> None:
        if self.user is None or self.room_id is None:
            self.report.skipped("join room", "needs a user and a room")
            return
        body = {"user_id": self.user["id"], "username": self.user["username"]}
        if self.user.get("token"):
            body["token"] = self.user["token"]
        answer = await self.post(f"/rooms/{self.room_id}/join", body)
        if answer.status == 200:
            message = answer.body.get("message", "") if isinstance(answer.body, dict) else ""
            self.report.passed("join room", message or "joined")
        else:
            self.report.failed("join room", http_failure(answer))

    async def connect_socket(self) -> None:
        # The socket is tried even when the join failed: a client may skip the
        # join, and auto-creation on the socket can differ from the join's.
        if self.user is None or self.room_id is None:
            self.report.skipped("connect socket", "needs a user and a room")
            return
        query = {}
        if self.user.get("token") and not self.args.no_token:
            query["token"] = self.user["token"]
        url = socket_url(self.bases.ws, self.room_id, self.user["id"], query)
        outcome = await open_socket(
            self.session, url, origin=self.args.origin, wait_seconds=self.args.timeout
        )
        shown = url.split("?")[0]
        if outcome.kind == "open":
            self.ws, self.first_frame = outcome.ws, outcome.first_frame
            via = f" with Origin {self.args.origin}" if self.args.origin else ""
            self.report.passed("connect socket", f"{shown}{via}")
        else:
            self.report.failed("connect socket", socket_failure(outcome))

    def receive_join_message(self) -> None:
        step = "receive join message"
        if self.ws is None:
            self.report.skipped(step, "the socket is not open")
            return
        frame = self.first_frame
        if not isinstance(frame, dict):
            self.report.failed(step, f"no join message within {self.args.timeout:g} s")
        elif frame.get("type") == "user_joined" and frame.get("user_id") == self.user["id"]:
            self.report.passed(step, frame.get("message", "user_joined"))
        else:
            self.report.failed(step, f"the first frame was not our user_joined: {json.dumps(frame)}")

    async def send_message(self) -> str | None:
        if self.ws is None or self.ws.closed:
            self.report.skipped("send message", "the socket is not open")
            return None
        content = f"smoke test {self.nonce}"
        try:
            await self.ws.send_str(json.dumps({"content": content}))
        except (aiohttp.ClientError, ConnectionError) as exc:
            self.report.failed("send message", f"could not send ({exc})")
            return None
        self.report.passed("send message", repr(content))
        return content

    async def receive_broadcast(self, content: str | None) -> None:
        step = "receive broadcast"
        if self.ws is None or content is None:
            self.report.skipped(step, "nothing was sent")
            return
        verdict, detail = await wait_for_own_message(self.ws, content, self.args.timeout)
        self.report.record(verdict, step, detail)

    async def read_history(self, content: str | None) -> None:
        step = "read history"
        if self.room_id is None or content is None:
            self.report.skipped(step, "nothing was sent")
            return
        url = f"{self.bases.api}/rooms/{self.room_id}/messages?limit=50"
        # With REQUIRE_TOKENS on, a room's history is for its members: send ours, as the chat page does.
        token = self.user.get("token") if self.user else None
        headers = {"Authorization": f"Bearer {token}"} if token else None
        answer = await http_call(self.session, "GET", url, headers=headers)
        if answer.status != 200 or not isinstance(answer.body, list):
            self.report.failed(step, http_failure(answer))
            return
        stored = [m for m in answer.body if isinstance(m, dict) and m.get("content") == content]
        if stored:
            seq = stored[0].get("seq", "?")
            self.report.passed(step, f"the message is stored (seq={seq}, {len(answer.body)} in history)")
        else:
            self.report.failed(step, f"the sent message is not among the last {len(answer.body)} messages")


async def wait_for_own_message(
    ws: aiohttp.ClientWebSocketResponse, content: str, timeout: float
) -> tuple[str, str]:
    """Read frames until our message comes back; others (joins of other
    clients, their messages) are passed over."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except asyncio.TimeoutError:
            break
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return "FAIL", f"{describe_close(msg.data, msg.extra or '')} — {close_advice(msg.data, msg.extra or '')}"
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return "FAIL", f"the connection dropped — {close_advice(None)}"
        frame = _json_or_none(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else None
        if not isinstance(frame, dict):
            continue
        if frame.get("type") == "error":
            return "FAIL", f"the server answered with an error frame: {frame.get('message')}"
        if frame.get("type") == "message" and frame.get("content") == content:
            return "PASS", f"got it back (id={frame.get('id')}, seq={frame.get('seq')})"
    return "FAIL", f"our message did not come back within {timeout:g} s"


def _json_or_none(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)  # --room and --user are used instead of creating a room and a user
    parser.add_argument("--no-token", action="store_true", help="open the socket without the user's token, as old clients do")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    bases = resolve_bases(args.url)
    if mistakes := argument_problems(args, bases):
        for problem in mistakes:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    if not args.json:
        print(f"smoke test of {bases.api} (socket {bases.ws})", flush=True)
    async with make_session(args.timeout, args.insecure) as session:
        report = await Smoke(session, bases, args).run()
    print(report.to_json(bases) if args.json else report.summary())
    return 0 if report.all_passed else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
