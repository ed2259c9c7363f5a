"""A WebSocket client by hand, for what a polite library will not do: send garbage, or never read.

The socket is non-blocking and driven by the event loop; after the handshake
nothing reads from it unless the test asks, so the kernel's buffers and then
the server's fill up exactly as with a client that stopped reading.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

CLOSE = 0x8
TEXT = 0x1
PING = 0x9
PONG = 0xA


class RawSocket:
    def __init__(self, sock: socket.socket, unread: bytes) -> None:
        self.sock = sock
        self.unread = unread  # bytes after the handshake's headers, read with them

    @classmethod
    async def connect(cls, host: str, port: int, path: str, receive_buffer: int | None = None,
                      timeout: float = 5.0, extra_headers: bytes = b"") -> RawSocket:
        """Open the TCP connection (with a small receive buffer if asked) and upgrade it."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            # Before connect(), so that the window offered to the server is small from the start.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            # Extra headers go as bytes: a test may want bytes that no client library would send.
            await loop.sock_sendall(sock, request.encode()[:-2] + extra_headers + b"\r\n")
            response = b""
            while b"\r\n\r\n" not in response:
                chunk = await loop.sock_recv(sock, 4096)
                if not chunk:
                    raise ConnectionError(f"closed during the handshake: {response!r}")
                response += chunk
        headers, _, unread = response.partition(b"\r\n\r\n")
        assert headers.startswith(b"HTTP/1.1 101"), headers
        return cls(sock, unread)

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def read_until_closed(self, timeout: float) -> tuple[bytes, bool]:
        """Everything the server sends until it closes the connection; and whether it did within `timeout`."""
        loop = asyncio.get_running_loop()
        data, self.unread = bytearray(self.unread), b""
        try:
            async with asyncio.timeout(timeout):
                while chunk := await loop.sock_recv(self.sock, 1 << 16):
                    data += chunk
        except TimeoutError:
            return bytes(data), False
        except ConnectionResetError:
            pass  # dropped without a close handshake: also closed
        return bytes(data), True

    async def read_until_close_frame(self, timeout: float) -> list[tuple[int, bytes]]:
        """The frames the server sends up to and including its close frame."""
        loop = asyncio.get_running_loop()
        data, self.unread = self.unread, b""
        async with asyncio.timeout(timeout):
            while True:
                frames, _ = server_frames(data)
                if any(opcode == CLOSE for opcode, _ in frames):
                    return frames
                chunk = await loop.sock_recv(self.sock, 1 << 16)
                if not chunk:
                    raise ConnectionError(f"closed without a close frame after {frames}")
                data += chunk

    def close(self) -> None:
        self.sock.close()


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client-to-server frame."""
    mask = os.urandom(4)
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return header + mask + masked


def server_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The complete (unmasked) frames at the start of `data`, and what is left of an incomplete one."""
    frames, at = [], 0
    while len(data) - at >= 2:
        opcode, size, start = data[at] & 0x0F, data[at + 1] & 0x7F, at + 2
        if len(data) < at + {126: 4, 127: 10}.get(size, 2):
            break  # the extended length has not all arrived yet
        if size == 126:
            size, start = struct.unpack_from("!H", data, at + 2)[0], at + 4
        elif size == 127:
            size, start = struct.unpack_from("!Q", data, at + 2)[0], at + 10
        if len(data) < start + size:
            break
        frames.append((opcode, data[start:start + size]))
        at = start + size
    return frames, data[at:]


def close_code(payload: bytes) -> tuple[int, str]:
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()
