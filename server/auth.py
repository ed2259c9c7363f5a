"""Who may act as which user: the token a request carries, and the checks REQUIRE_TOKENS asks for.

The socket (ws.py) and the HTTP join (handlers.py) both let a client act as a
user, creating it when the auto flags allow; both go through here, so the two
cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .db import Database


class Unauthorized(Exception):
    """Tokens are required and the request's token is missing or wrong; `detail` says whose is needed."""

    def __init__(self, detail: str = "Unauthorized: a valid token for this user is required") -> None:
        super().__init__(detail)
        self.detail = detail


def presented_token(request: web.Request) -> str | None:
    """The token a request carries: `Authorization: Bearer` or `?token=`."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.query.get("token") or None


async def check_user_token(db: Database, require_tokens: bool, user_id: str, token: str | None) -> None:
    """Raise Unauthorized unless tokens are off or `token` is the existing user's."""
    if require_tokens and not await db.check_token(user_id, token):
        raise Unauthorized


async def create_user_or_check(db: Database, require_tokens: bool, user_id: str, username: str,
                               token: str | None) -> tuple[dict[str, Any], str | None]:
    """Create the user with this id for its caller: the user and its new token.

    Another request may have created the same id since the caller looked it up.
    The caller then did not create anything: it asks to act as an existing user,
    so its token is checked like anyone else's, and it gets no token.
    """
    user, new_token = await db.create_user(username, user_id)
    if new_token is None:
        await check_user_token(db, require_tokens, user_id, token)
    return user, new_token


async def check_member_token(db: Database, require_tokens: bool, room_id: str, token: str | None) -> None:
    """Raise Unauthorized unless tokens are off or `token` is that of a member of the room."""
    if require_tokens and await db.member_with_token(room_id, token) is None:
        raise Unauthorized("Unauthorized: the token of a member of this room is required")
