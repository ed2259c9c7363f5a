"""A minimal WebSocket client on an asyncio Protocol.

The load generator shares two cores with the server, so its clients must be
cheap: no task per socket, frames parsed straight from data_received, and a
callback per text frame.
"""

import asyncio
import base64
import hashlib
import os
import socket
from typing import Callable

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_IP_BIND_ADDRESS_NO_PORT = 24  # Linux: pick the port at connect(), unique per 4-tuple

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame, as RFC 6455 requires of clients."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    key = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return header + mask + masked


class WSClient(asyncio.Protocol):
    """One socket: on_text(payload) for each text frame; `opened` resolves after the handshake."""

    def __init__(self, path: str, host: str, on_text: Callable[[bytes], None]) -> None:
        self.on_text = on_text
        self.key = base64.b64encode(os.urandom(16))
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self.key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshaken = False
        self.fragments: list[bytes] = []
        self.close_code: int | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost during handshake: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.handshaken and not self._finish_handshake():
            return
        self._parse_frames()

    def _finish_handshake(self) -> bool:
        if self.opened.done():  # refused already; the rest of the bytes do not matter
            return False
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[: end + 4]
        accept = base64.b64encode(hashlib.sha1(self.key + _GUID).digest()).decode()
        if not head.startswith("HTTP/1.1 101") or accept not in head:
            self.opened.set_exception(ConnectionError(f"handshake refused: {head.splitlines()[0]}"))
            self.transport.close()
            return False
        self.handshaken = True
        self.opened.set_result(self)
        return True

    def _parse_frames(self) -> None:
        buf, pos, end_of_data = self.buffer, 0, len(self.buffer)
        while end_of_data - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            size, head = second & 0x7F, 2
            if size == 126:
                if end_of_data - pos < 4:
                    break
                size, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif size == 127:
                if end_of_data - pos < 10:
                    break
                size, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            end = pos + head + size
            if end > end_of_data:
                break
            self._frame(first & 0x0F, bool(first & 0x80), bytes(buf[pos + head : end]))
            pos = end
        del buf[:pos]

    def _frame(self, opcode: int, final: bool, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY, OP_CONT) and not final:
            self.fragments.append(payload)
        elif opcode == OP_CONT:
            self.on_text(b"".join(self.fragments) + payload)
            self.fragments.clear()
        elif opcode == OP_TEXT:
            self.on_text(payload)
        elif opcode == OP_PING:
            self.transport.write(encode_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close()

    def send_text(self, text: str) -> None:
        if not self.closed:
            self.transport.write(encode_frame(OP_TEXT, text.encode()))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.write(encode_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
            self.transport.close()


async def connect(host: str, port: int, path: str, on_text: Callable[[bytes], None],
                  source_ip: str = "127.0.0.1", timeout: float = 30.0) -> WSClient:
    """Open a socket from source_ip (any 127.x address: more ephemeral ports) and shake hands."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source_ip, 0))
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
    except BaseException:
        sock.close()
        raise
    _, client = await loop.create_connection(lambda: WSClient(path, f"{host}:{port}", on_text), sock=sock)
    await asyncio.wait_for(client.opened, timeout)
    return client
