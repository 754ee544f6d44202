"""One measuring job at a time on this machine, and exclusive locks on files.

Two archkit jobs timing networks on this machine at once time each other's work: a build of
the host's latency model beside an evaluation, a TVM build beside an onnxruntime one, a
host-1t adaptation, ``archkit profile --device host``, a search measuring its candidates or its
winners, or the compiling of libraries ahead of a timing. Each of them holds this machine's
lock (:func:`holding_this_machine`) for a device measured here (a ``local`` one: ``host``,
``host-1t``). A second long job (a build, an evaluation, a compile ahead) is refused with the
first one's pid, what it does and since when; a short measurement (one network's profile, a
search's candidate or its winners) waits for the machine instead, saying what it waits for, so
the workers of one search take turns. Boards reached over RPC or a tracker are not held.

The lock is ``archkit-<uid>/this-machine.lock`` in the temporary folder (``$TMPDIR``, else
``/tmp``): one per user and machine, whatever cache folder each job uses. It is an exclusive
``flock``, which the kernel lets go when the process ends, however it ends. Within one process
it is reentrant (a build's own measuring calls, the threads of one search).
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["exclusive_lock", "holding_this_machine", "holds_this_machine", "machine_lock_path"]


def machine_lock_path() -> Path:
    """This machine's measuring lock for the current user."""
    return Path(tempfile.gettempdir()) / f"archkit-{os.getuid()}" / "this-machine.lock"


def _refused(holder: str) -> Exception:
    from archkit.device._latency._errors import LatencyModelError

    return LatencyModelError(
        f"another archkit job is measuring on this machine ({holder}; lock "
        f"{machine_lock_path()}): two at once would time each other's work; wait for it, or "
        "stop it (a stopped build resumes)")


def _take(lock_path: Path, what: str, wait: bool = False) -> IO[str] | str:
    """The open lock file, locked and saying ``what`` holds it; or (not ``wait``) the holder's
    text. With ``wait``, a held lock is waited for, with one warning naming its holder."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(lock_path, "a+")  # noqa: SIM115 - held past this function, closed by _let_go
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        if not wait:
            lock.close()
            return holder
        import warnings

        from archkit.errors import ArchkitWarning

        warnings.warn(f"{what}: waiting for this machine, held by {holder} (lock "
                      f"{lock_path})", ArchkitWarning, stacklevel=4)
        fcntl.flock(lock, fcntl.LOCK_EX)
    lock.truncate(0)
    lock.write(f"{what} (pid {os.getpid()}, since {time.strftime('%H:%M:%S')})\n")
    lock.flush()
    return lock


def _let_go(lock: IO[str]) -> None:
    import fcntl

    lock.truncate(0)
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()


@contextmanager
def exclusive_lock(lock_path: Path, what: str, refusal: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path``, its text saying ``what`` holds it (not
    reentrant: a second hold in this process is refused too).

    Raises:
        LatencyModelError: Another holds it: ``refusal``, ``{holder}`` replaced by its text.
    """
    from archkit.device._latency._errors import LatencyModelError

    lock = _take(lock_path, what)
    if isinstance(lock, str):
        raise LatencyModelError(refusal.replace("{holder}", lock))
    try:
        yield
    finally:
        _let_go(lock)


#: This process's hold on the machine lock: the open file and how many holders share it.
_GUARD = threading.Lock()
_HELD: dict[str, Any] = {"file": None, "depth": 0}


@contextmanager
def holding_this_machine(device: Any, what: str, *, wait: bool = False) -> Iterator[None]:
    """Hold this machine while ``device`` is measured (``what``: the job, for the message of
    another one); nothing for a device reached over RPC or a tracker. With ``wait``, another
    process's hold is waited for (with one :class:`~archkit.errors.ArchkitWarning`).

    Raises:
        LatencyModelError: Another process holds it (its pid, what it does, since when), and
            not ``wait``.
    """
    if device.is_remote:
        yield
        return
    with _GUARD:
        if _HELD["depth"] == 0:
            lock = _take(machine_lock_path(), what, wait=wait)
            if isinstance(lock, str):
                raise _refused(lock)
            _HELD["file"] = lock
        _HELD["depth"] += 1
    try:
        yield
    finally:
        with _GUARD:
            _HELD["depth"] -= 1
            if _HELD["depth"] == 0:
                _let_go(_HELD["file"])
                _HELD["file"] = None


def holds_this_machine(doing: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate ``fn(model, example_input, device, ..., name=None, ...)`` to run holding this
    machine (:func:`holding_this_machine`, waiting for it), as ``doing NAME on DEVICE``."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def held(model: Any, example_input: Any, device: Any, *args: Any, **kwargs: Any) -> Any:
            what = f"{doing} {kwargs.get('name') or 'a network'} on {device.name}"
            with holding_this_machine(device, what, wait=True):
                return fn(model, example_input, device, *args, **kwargs)

        return held

    return wrap
