"""Server side of RFC 6455 (the handshake, masked client frames, fragmentation, ping, close), enough for
the Kubernetes exec channels (``v5.channel.k8s.io`` / ``v4.channel.k8s.io``)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import threading
from typing import BinaryIO

__all__ = ["WebSocket", "accept_key"]

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()


class WebSocket:
    """One upgraded connection: read whole messages, write binary messages, close."""

    def __init__(self, rfile: BinaryIO, wfile: BinaryIO, sock: socket.socket) -> None:
        self.rfile, self.wfile, self.sock = rfile, wfile, sock
        self._write_lock = threading.Lock()
        self.closed = False

    def _read_exact(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.rfile.read(count - len(data))
            if not chunk:
                raise EOFError("connection closed")
            data += chunk
        return data

    def receive(self) -> tuple[int, bytes] | None:
        """The next data message (opcode, payload), or None when the peer closed."""
        message = b""
        opcode = 0
        while True:
            try:
                head = self._read_exact(2)
            except (EOFError, OSError):
                return None
            fin, op = head[0] & 0x80, head[0] & 0x0F
            masked, length = head[1] & 0x80, head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read_exact(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read_exact(8))[0]
            mask = self._read_exact(4) if masked else b""
            payload = self._read_exact(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if op == OP_CLOSE:
                self.close()
                return None
            if op == OP_PING:
                self._send(OP_PONG, payload)
                continue
            if op == OP_PONG:
                continue
            if op != OP_CONTINUATION:
                opcode = op
            message += payload
            if fin:
                return opcode, message

    def _send(self, opcode: int, payload: bytes) -> None:
        head = bytes([0x80 | opcode])
        size = len(payload)
        if size < 126:
            head += bytes([size])
        elif size < 65536:
            head += bytes([126]) + struct.pack("!H", size)
        else:
            head += bytes([127]) + struct.pack("!Q", size)
        with self._write_lock:
            if self.closed and opcode != OP_CLOSE:
                return
            try:
                self.wfile.write(head + payload)
                self.wfile.flush()
            except OSError:
                self.closed = True

    def send_binary(self, payload: bytes) -> None:
        self._send(OP_BINARY, payload)

    def close(self, code: int = 1000) -> None:
        if self.closed:
            return
        self._send(OP_CLOSE, struct.pack("!H", code))
        self.closed = True

    def drop(self) -> None:
        """Cut the connection without a close frame (a dropped network)."""
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
