"""Run a call in a thread of its own and wait for it, optionally with a deadline."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

__all__ = ["call_in_thread"]

T = TypeVar("T")


def call_in_thread(fn: Callable[[], T], what: str, timeout_s: float | None = None) -> T:
    """Return ``fn()`` run in a fresh daemon thread; its exception is re-raised here.

    A fresh thread has a fresh TVM thread pool (they are thread-local). The thread is a daemon
    (not a ``ThreadPoolExecutor`` worker, which the interpreter joins at exit), so a network
    call that never returns is abandoned after ``timeout_s`` and cannot keep the process alive.

    Args:
        fn: The call.
        what: What is called, for the thread's name and the timeout message.
        timeout_s: Seconds to wait; None waits as long as it takes.

    Raises:
        TimeoutError: ``fn`` did not return within ``timeout_s``.
    """
    future: Future[T] = Future()

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn())
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            future.set_exception(err)

    threading.Thread(target=run, name=f"archkit-{what}", daemon=True).start()
    try:
        return future.result(timeout=timeout_s)
    except TimeoutError:
        if future.done():  # fn itself raised TimeoutError (concurrent.futures' is the builtin)
            raise
        raise TimeoutError(f"{what} did not answer within {timeout_s:g} s") from None
