"""A missing or unreachable device: a clear error within seconds, never a hang."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from archkit.device import DeviceError, check_reachable, load_device, measure_latency

from .conftest import free_port


def _assert_helpful(err: DeviceError) -> None:
    text = str(err)
    assert "archkit serve" in text and "--ssh user@board" in text
    assert "ARCHKIT_DEVICE_SSH" in text and "run any code" in text


def test_device_without_host_says_how_to_set_it_up():
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as info:
        check_reachable(load_device("rpi4"))
    assert time.monotonic() - t0 < 2
    assert "no rpc address configured" in str(info.value)
    _assert_helpful(info.value)


def test_closed_port_fails_fast():
    dev = load_device("rpi4", host="127.0.0.1", port=free_port())
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as info:
        check_reachable(dev)
    assert time.monotonic() - t0 < 5
    assert "cannot use device 'rpi4'" in str(info.value)
    assert "nothing listens there (connection refused)" in str(info.value)
    _assert_helpful(info.value)


def test_silent_server_fails_before_compiling(tiny):
    """Something listens but never speaks the RPC protocol: error after connect_timeout_s,
    before the model is compiled (the handshake comes first)."""
    import dataclasses

    model, x = tiny
    events = []
    with socket.socket() as sink:
        sink.bind(("127.0.0.1", 0))
        sink.listen(8)
        dev = load_device("host", host="127.0.0.1", port=sink.getsockname()[1])
        dev = dataclasses.replace(dev, connect_timeout_s=2.0)
        t0 = time.monotonic()
        with pytest.raises(DeviceError, match="said nothing within 2 s") as info:
            measure_latency(model, x, dev, repeats=2, on_event=lambda s, i: events.append(s))
        assert time.monotonic() - t0 < 10
    assert "compile" not in events
    assert "not a TVM RPC server" in str(info.value)


def test_tracker_without_boards_of_the_key(farm):
    tracker, _ = farm
    dev = load_device("rpi4", tracker=tracker.address, key="no-such-board")
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match="no board registered with key 'no-such-board'") as info:
        check_reachable(dev)
    # The tracker lists what it has (a server re-registering may show up twice for a moment).
    assert "boards registered there: 'loopback' x" in str(info.value)
    assert time.monotonic() - t0 < 10


def test_a_board_registering_a_moment_late_is_found():
    """TVM's RPC server leaves the tracker whenever a connection hangs up on it before the RPC
    handshake (a port scan) and registers again a moment later: the check waits a little for a
    board instead of reporting none. The board here registers the way TVM's server does."""
    from tvm.rpc import base
    from tvm.rpc.tracker import TrackerCode

    from .conftest import start_tracker

    tracker = start_tracker()
    board = socket.socket()

    def register() -> None:
        time.sleep(0.7)
        board.connect(("127.0.0.1", tracker.port))
        board.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
        base.recvall(board, 4)
        base.sendjson(
            board, [TrackerCode.UPDATE_INFO, {"key": "server:loopback", "addr": [None, 9]}]
        )
        base.recvjson(board)
        base.sendjson(board, [TrackerCode.PUT, "loopback", (9, "loopback:1"), None])
        base.recvjson(board)

    late = threading.Thread(target=register)
    try:
        dev = load_device("host", tracker=tracker.address, key="loopback")
        t0 = time.monotonic()
        late.start()
        check_reachable(dev)
        assert time.monotonic() - t0 > 0.6
    finally:
        late.join()
        board.close()
        tracker.kill()


def test_unreachable_tracker_fails_fast():
    dev = load_device("rpi4", tracker=f"127.0.0.1:{free_port()}")
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match="cannot use device .*connection refused"):
        check_reachable(dev)
    assert time.monotonic() - t0 < 5


def test_call_in_thread_deadline_errors_and_fresh_daemon_thread():
    """The one helper behind every network deadline and the measuring thread."""
    import threading

    from archkit.device._threads import call_in_thread

    never = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="board did not answer within 0.2 s"):
        call_in_thread(never.wait, "board", 0.2)
    assert time.monotonic() - t0 < 2
    never.set()
    with pytest.raises(KeyError):
        call_in_thread(lambda: {}["missing"], "lookup")
    with pytest.raises(TimeoutError, match="^its own$"):  # fn's own TimeoutError, unchanged
        call_in_thread(lambda: (_ for _ in ()).throw(TimeoutError("its own")), "x", 5)
    caller = threading.get_ident()
    ident, daemon = call_in_thread(
        lambda: (threading.get_ident(), threading.current_thread().daemon), "measure"
    )
    assert ident != caller and daemon
