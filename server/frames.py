"""What the server sends on a socket: JSON frames, encoded once into wire bytes.

A broadcast frame is built once per message (JSON, UTF-8 and the WebSocket
header) and the same bytes are written to every socket of the room.
"""

from __future__ import annotations

import json
import struct
from typing import Any, NamedTuple

from .clock import utc_now

_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

TEXT_OPCODE_FIN = 0x81


def to_json(value: Any) -> str:
    """Compact JSON, as sent on the wire and in HTTP bodies."""
    return _encode_json(value)


def text_frame(payload: dict[str, Any]) -> bytes:
    """A complete, unmasked server-to-client WebSocket text frame holding `payload` as JSON."""
    return _frame(_encode_json(payload).encode())


class Stored(NamedTuple):
    """A committed message as a store announces it: its room, its seq, and its history item (its JSON)."""

    room_id: str
    seq: int
    item: bytes


def stored(message: dict[str, Any]) -> Stored:
    """A committed message (a dict with its seq) as a store announces it."""
    return Stored(message["room_id"], message["seq"], _encode_json(message).encode())


def numbered(item: str, seq: int) -> bytes:
    """The item of a message encoded before its seq was known (as 0), with its seq.

    The id (a uuid) comes first and the seq second, so the first '"seq":0,' is the key's:
    a string value cannot hold it, as JSON escapes every quote inside a string.
    """
    return item.replace('"seq":0,', f'"seq":{seq},', 1).encode()


def message_frame(item: bytes) -> bytes:
    """A message's socket frame, from its history item."""
    return _frame(_typed(item))


def message_payload(message: dict[str, Any]) -> bytes:
    """A stored message's frame without the WebSocket header, for aiohttp's send_frame."""
    return _typed(_encode_json(message).encode())


def _typed(item: bytes) -> bytes:
    # The frame is the history item with its type first: '{"id":...}' -> '{"type":"message","id":...}'.
    return b'{"type":"message",' + item[1:]


def payload_of(frame: bytes) -> bytes:
    """The JSON of a text frame built here, without its WebSocket header."""
    size = frame[1] & 0x7F
    return frame[2 if size < 126 else 4 if size == 126 else 10:]


def text_frame_of(payload: bytes) -> bytes:
    """A text frame holding JSON that is already encoded (the inverse of payload_of)."""
    return _frame(payload)


def _frame(data: bytes) -> bytes:
    size = len(data)
    if size < 126:
        header = bytes((TEXT_OPCODE_FIN, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", TEXT_OPCODE_FIN, 126, size)
    else:
        header = struct.pack("!BBQ", TEXT_OPCODE_FIN, 127, size)
    return header + data


def user_joined(user_id: str, username: str) -> bytes:
    return text_frame({"type": "user_joined", "user_id": user_id, "username": username,
                       "message": f"{username} joined the chat", "timestamp": utc_now()})


def user_left(user_id: str, username: str) -> bytes:
    return text_frame({"type": "user_left", "user_id": user_id, "username": username,
                       "message": f"{username} left the chat", "timestamp": utc_now()})


def error(text: str) -> bytes:
    return text_frame({"type": "error", "message": text})


def token(value: str) -> bytes:
    return text_frame({"type": "token", "token": value})
