"""TVM's RPC and tracker handshakes over plain sockets, with deadlines, saying what answered.

``tvm.rpc.connect`` blocks forever on a listener that accepts and says nothing, and reports any
other listener as "not a TVM RPC server" without saying what it is. These probes speak the same
handshake (``tvm/rpc/server.py``: ``[RPC_MAGIC, keysize, "client:KEY"]``, answered by a code and
the server's key; the tracker: ``RPC_TRACKER_MAGIC`` echoed, then length-prefixed JSON), under a
deadline, and name what they found instead: nothing listening, a silent listener, an HTTP or SSH
server, a TVM RPC server with another key. No tvm import: they run before anything heavy.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

__all__ = ["ProbeError", "probe_rpc_server", "tracker_summary"]

# The protocol constants of tvm.rpc.base (TVM 0.27); copied so a probe needs no tvm import.
RPC_MAGIC = 0xFF271
RPC_TRACKER_MAGIC = 0x2F271
RPC_CODE_SUCCESS = RPC_MAGIC + 0
RPC_CODE_DUPLICATE = RPC_MAGIC + 1
RPC_CODE_MISMATCH = RPC_MAGIC + 2
TRACKER_SUCCESS = 0
TRACKER_SUMMARY = 6

#: Seconds an HTTP probe waits for an answer after a listener stayed silent to TVM's handshake.
HTTP_PROBE_S = 1.5


class ProbeError(Exception):
    """The peer is not what was expected; ``found`` says what it is."""

    def __init__(self, found: str):
        self.found = found
        super().__init__(found)


def _open(host: str, port: int, timeout_s: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout_s)
    except ConnectionRefusedError:
        raise ProbeError("nothing listens there (connection refused)") from None
    except TimeoutError:
        raise ProbeError(
            f"no answer to the TCP connection within {timeout_s:g} s (a wrong address, or a "
            "firewall dropping the packets)"
        ) from None
    except OSError as err:
        raise ProbeError(f"cannot connect: {err.strerror or err}") from None


def _recv_exactly(sock: socket.socket, n: int, deadline: float) -> bytes:
    """Up to ``n`` bytes: fewer when the peer closes or the deadline passes."""
    data = b""
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(n - len(data))
        except TimeoutError:
            break
        except OSError:  # reset by peer
            break
        if not chunk:
            break
        data += chunk
    return data


def _more(sock: socket.socket, data: bytes, wait_s: float = 0.3) -> bytes:
    """``data`` plus whatever else the peer sends within ``wait_s`` (for the message)."""
    return data + _recv_exactly(sock, 200, time.monotonic() + wait_s)


def _first_line(data: bytes) -> str:
    text = data.decode("utf-8", "replace").splitlines()
    return text[0].strip()[:80] if text else ""


def describe_answer(data: bytes) -> str:
    """What kind of server sends ``data`` as its first bytes."""
    if data.startswith(b"HTTP/"):
        return f"an HTTP server (it answered {_first_line(data)!r}), not a TVM RPC server"
    if data.startswith(b"SSH-"):
        return f"an SSH server ({_first_line(data)!r}), not a TVM RPC server"
    return f"not a TVM RPC server (it answered {data[:40]!r})"


def _http_probe(host: str, port: int) -> str | None:
    """The first line of an HTTP answer from ``host:port``, or None if it does not answer."""
    try:
        with socket.create_connection((host, port), timeout=HTTP_PROBE_S) as sock:
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            data = _recv_exactly(sock, 64, time.monotonic() + HTTP_PROBE_S)
    except OSError:
        return None
    return _first_line(data) if data.startswith(b"HTTP/") else None


def _silent(host: str, port: int, what: str, timeout_s: float) -> ProbeError:
    http = _http_probe(host, port)
    protocol = what.replace(" server", "")
    if http is not None:
        return ProbeError(
            f"it accepted the connection but did not answer the {protocol} handshake within "
            f"{timeout_s:g} s; it answers HTTP ({http!r}): an HTTP server, not a {what}"
        )
    return ProbeError(
        f"it accepted the connection but said nothing within {timeout_s:g} s, to the {protocol} "
        "handshake nor to an HTTP request: a silent listener, not a "
        f"{what}" + (" (or one busy with another session)" if what == "TVM RPC server" else "")
    )


def probe_rpc_server(host: str, port: int, key: str = "", timeout_s: float = 5.0) -> str:
    """TVM's RPC handshake with ``host:port`` (then hang up); return the server's key.

    Raises:
        ProbeError: Nothing listens, the listener is silent or speaks another protocol, or the
            TVM RPC server refused the key.
    """
    deadline = time.monotonic() + timeout_s
    with _open(host, port, timeout_s) as sock:
        client_key = f"client:{key}".encode()
        try:
            sock.sendall(struct.pack("<i", RPC_MAGIC) + struct.pack("<i", len(client_key)))
            sock.sendall(client_key)
        except OSError as err:
            raise ProbeError(f"it dropped the connection during the handshake: {err}") from None
        data = _recv_exactly(sock, 4, deadline)
        if not data and time.monotonic() >= deadline:
            raise _silent(host, port, "TVM RPC server", timeout_s)
        if len(data) < 4:
            if data:
                raise ProbeError(describe_answer(_more(sock, data)))
            raise ProbeError(
                "it accepted the connection and closed it without answering the TVM RPC "
                "handshake (not a TVM RPC server; through an SSH tunnel: nothing listens on "
                "the board's end of it)"
            )
        (code,) = struct.unpack("<i", data)
        if code == RPC_CODE_MISMATCH:
            raise ProbeError(
                f"a TVM RPC server that refused the key {key!r} (it was started with another "
                "--key, or it is registered with a tracker: connect through the tracker)"
            )
        if code == RPC_CODE_DUPLICATE:
            raise ProbeError("a TVM RPC proxy that already serves this key")
        if code != RPC_CODE_SUCCESS:
            raise ProbeError(describe_answer(_more(sock, data)))
        size = _recv_exactly(sock, 4, deadline)
        if len(size) < 4:
            raise ProbeError("a TVM RPC server that hung up after accepting the handshake")
        (length,) = struct.unpack("<i", size)
        return _recv_exactly(sock, max(0, min(length, 4096)), deadline).decode("utf-8", "replace")


def tracker_summary(host: str, port: int, timeout_s: float = 5.0) -> dict[str, Any]:
    """The summary of the TVM RPC tracker at ``host:port`` (``server_info``, ``queue_info``).

    Raises:
        ProbeError: Nothing listens, or the listener is not a TVM RPC tracker.
    """
    deadline = time.monotonic() + timeout_s
    with _open(host, port, timeout_s) as sock:
        try:
            sock.sendall(struct.pack("<i", RPC_TRACKER_MAGIC))
        except OSError as err:
            raise ProbeError(f"it dropped the connection during the handshake: {err}") from None
        data = _recv_exactly(sock, 4, deadline)
        if not data and time.monotonic() >= deadline:
            raise _silent(host, port, "TVM RPC tracker", timeout_s)
        if len(data) < 4 or struct.unpack("<i", data)[0] != RPC_TRACKER_MAGIC:
            if not data:
                raise ProbeError(
                    "it accepted the connection and closed it without answering the TVM RPC "
                    "tracker handshake: not a TVM RPC tracker (a TVM RPC server hangs up like "
                    "this: give it with --host/--port, not --tracker)"
                )
            found = describe_answer(_more(sock, data)).replace("TVM RPC server", "TVM RPC tracker")
            raise ProbeError(found)
        message = json.dumps([TRACKER_SUMMARY]).encode()
        sock.sendall(struct.pack("<i", len(message)) + message)
        size = _recv_exactly(sock, 4, deadline)
        if len(size) < 4:
            raise ProbeError("a TVM RPC tracker that did not answer the summary request")
        (length,) = struct.unpack("<i", size)
        body = _recv_exactly(sock, length, deadline)
        try:
            answer = json.loads(body.decode())
        except ValueError:
            raise ProbeError("a TVM RPC tracker whose summary is not JSON") from None
    if not isinstance(answer, list) or answer[0] != TRACKER_SUCCESS:
        raise ProbeError(f"a TVM RPC tracker that refused the summary request: {answer!r}")
    return answer[1]
