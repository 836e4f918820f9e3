"""Hand-made HTTP/2 bytes for tests that misbehave on purpose (no preface, half-sent bodies),
which no gRPC client library will send."""

from __future__ import annotations

import socket
import struct
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _SETTINGS = 0x0, 0x1, 0x4
_END_HEADERS = 0x4
_ACK = 0x1


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _literal(name: str, value: str) -> bytes:
    """A header as an HPACK literal without indexing (no Huffman coding)."""
    raw_name, raw_value = name.encode(), value.encode()
    return b"\x00" + _hpack_int(len(raw_name), 7) + raw_name + _hpack_int(len(raw_value), 7) + raw_value


def grpc_headers(stream: int, authority: str, path: str, metadata: dict[str, str] | None = None) -> bytes:
    """The HEADERS frame that starts a gRPC call of `path` on `stream`."""
    fields = {
        ":method": "POST",
        ":scheme": "http",
        ":path": path,
        ":authority": authority,
        "content-type": "application/grpc",
        "te": "trailers",
        **(metadata or {}),
    }
    block = b"".join(_literal(name, value) for name, value in fields.items())
    return frame(_HEADERS, _END_HEADERS, stream, block)


def _connect(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    return socket.create_connection((host.strip("[]"), int(port)), timeout=10)


def idle_connection(address: str) -> socket.socket:
    """A connection that completes the HTTP/2 handshake (the server's SETTINGS acknowledged
    ahead of reading them) and then makes no call."""
    sock = _connect(address)
    sock.sendall(PREFACE + frame(_SETTINGS, 0, 0) + frame(_SETTINGS, _ACK, 0))
    return sock


def half_sent_call(address: str, path: str, *, declared: int = 100, sent: int = 10) -> socket.socket:
    """A connection that completes the HTTP/2 handshake, starts a call of `path`, announces a
    `declared`-byte message, sends `sent` bytes of it and then stalls (never answering pings)."""
    sock = idle_connection(address)
    body = b"\x00" + struct.pack(">I", declared) + b"\x00" * sent
    sock.sendall(grpc_headers(1, address, path) + frame(_DATA, 0, 1, body))
    return sock


def preface_less(address: str) -> socket.socket:
    """A TCP connection that never sends the HTTP/2 preface."""
    return _connect(address)


def seconds_until_closed(sock: socket.socket, bound: float) -> float | None:
    """Read (and drop) whatever the server sends until it closes the connection; the seconds
    that took, or None if it was still open after `bound` seconds."""
    start = time.monotonic()
    while True:
        left = bound - (time.monotonic() - start)
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except TimeoutError:
            return None
        except ConnectionResetError:
            return time.monotonic() - start
