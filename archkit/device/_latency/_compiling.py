"""TVM libraries compiled (ONNX files exported) ahead of their timing, several at once, in
worker processes.

A TVM network compiles in about 5 s here (``torch.export``, Relax import, ``tvm.compile``,
the link; 8-20 s before BatchNorm was folded in PyTorch), on one core, and cares nothing for
load; its timing needs a quiet machine. So :func:`compile_ahead` compiles a group's missing
libraries on every core *before* the group is timed (never while), each in a worker process
kept for this process's life: ``python -m archkit.device._latency._compile_worker``, which
imports torch and TVM once and reads jobs from a pipe. Not ``multiprocessing``: torch and TVM
do not survive ``fork``, and a spawned worker imports its parent's main script (a script
without an ``if __name__ == "__main__":`` guard would then run in every worker); these
workers need no guard. Measured on this 2-core host (2026-12-01): six random networks of the
three MobileNet spaces in 33.0 s one after another, 18.9 s on two workers (their start
included). onnxruntime's ONNX files are exported the same way (``torch.onnx.export``, about
5 s a network, most of an onnxruntime build's time), into a temporary folder per group.

``ARCHKIT_COMPILE_JOBS`` sets how many workers (default: the cores this process may use, at
most 8, each holding its own torch and TVM; 1 compiles in this process, as before). A library
a worker failed to compile is compiled again in this process by
:func:`~archkit.device._latency._runtimes.compiled_library`, which then reports the error as
it always has. A worker that dies (memory ran out), or takes longer than
``ARCHKIT_COMPILE_TIMEOUT`` seconds (default 600; a network compiles in seconds) on one library
and is killed for it, stops them all, with one warning: this process then compiles on its own
(all but the libraries a worker was killed on: those networks fail).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["CompileTimeout", "check_not_timed_out", "compile_ahead", "compile_jobs",
           "compile_timeout", "shutdown_compile_workers"]

#: Seconds a worker may take on one library before it is killed (``ARCHKIT_COMPILE_TIMEOUT``;
#: a worker's first library includes its start, importing torch and TVM: a few seconds): a
#: MobileNet compiles in 5-20 s here; a worker past this is hung (a deadlock in a thread pool)
#: and would otherwise hold the build for ever. This process does not compile that library
#: again (its own compile has no timeout): the network fails, named, and the build goes on.
_DEFAULT_TIMEOUT_S = 600.0

#: At most this many workers by default: each holds its own torch, TVM and LLVM (716-753 MiB
#: peak resident each, compiling six random MobileNets here).
_MAX_DEFAULT_JOBS = 8

#: What a worker makes of a network, per runtime: a TVM library or an ONNX file.
_SUFFIX = {"tvm": ".so", "onnxruntime": ".onnx"}

_LOCK = threading.Lock()
#: The workers, and the queue of those idle (under ``_LOCK``).
_WORKERS: list[_Worker] = []
_IDLE: Any = None
#: Set when a worker failed (died: memory; or could not be started): this process compiles on
#: its own from then on, instead of starting workers that fail again.
_BROKEN = False
#: Libraries (paths) a worker was killed on for taking too long: not compiled again by this
#: process, whose own compile has no timeout (under ``_LOCK``).
_TIMED_OUT: set[str] = set()


def compile_jobs() -> int:
    """Worker processes for compiling: ``ARCHKIT_COMPILE_JOBS``, else the usable cores (at
    most :data:`_MAX_DEFAULT_JOBS`).

    Raises:
        DeviceError: ``ARCHKIT_COMPILE_JOBS`` is not a whole number.
    """
    value = os.environ.get("ARCHKIT_COMPILE_JOBS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            from archkit.device._errors import DeviceError

            raise DeviceError(f"must be a whole number of worker processes, got {value!r}",
                              source="environment", field="ARCHKIT_COMPILE_JOBS") from None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_DEFAULT_JOBS))


def compile_timeout() -> float:
    """Seconds a worker may take on one library: ``ARCHKIT_COMPILE_TIMEOUT``, else
    :data:`_DEFAULT_TIMEOUT_S`.

    Raises:
        DeviceError: ``ARCHKIT_COMPILE_TIMEOUT`` is not a positive number.
    """
    value = os.environ.get("ARCHKIT_COMPILE_TIMEOUT", "").strip()
    if not value:
        return _DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:  # (also nan)
        from archkit.device._errors import DeviceError

        raise DeviceError(f"must be a positive number of seconds, got {value!r}",
                          source="environment", field="ARCHKIT_COMPILE_TIMEOUT")
    return seconds


class CompileTimeout(RuntimeError):
    """A worker took longer than its timeout on one library (it was killed)."""


def check_not_timed_out(library: Path) -> None:
    """Refuse to compile ``library`` in this process when a worker was killed on it.

    Raises:
        CompileTimeout: A worker took longer than ``ARCHKIT_COMPILE_TIMEOUT`` on it (this
            process would have no timeout: the network fails instead of hanging the build).
    """
    with _LOCK:
        timed_out = str(library) in _TIMED_OUT
    if timed_out:
        raise CompileTimeout(
            f"a compile worker took over {compile_timeout():g} s on {library.name} and was "
            "killed; it is not compiled again in this process, where nothing would stop it "
            "(set ARCHKIT_COMPILE_TIMEOUT higher to try it again)")


def _database_folder(database: Any) -> str | None:
    """The folder of a MetaSchedule JSON database (what a worker opens it from)."""
    return str(Path(database.path_tuning_record).parent)


class _Worker:
    """One worker process (:mod:`~archkit.device._latency._compile_worker`) and its pipes."""

    def __init__(self) -> None:
        import subprocess
        import sys

        # The worker finds archkit (and whatever a script put on sys.path) where this
        # process does; -P: not the working folder first (a tvm.py there would shadow TVM).
        path = os.pathsep.join(p for p in sys.path if isinstance(p, str) and p)
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "archkit.device._latency._compile_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path})

    def compile(self, job: tuple, timeout: float) -> str | None:
        """Send one job and wait for its reply, killing the worker after ``timeout`` seconds.

        Raises:
            CompileTimeout: It took longer (the worker is dead).
            EOFError, OSError: The worker died.
        """
        from archkit.device._latency._compile_worker import receive, send

        # The timer kills only a worker still on this job; a reply that comes as it fires
        # (killed, or about to be) is a timeout too: the worker is dead either way.
        guard = threading.Lock()
        state = {"done": False, "expired": False}

        def expire() -> None:
            with guard:
                if state["done"]:
                    return
                state["expired"] = True
            self.process.kill()

        def finish() -> bool:
            with guard:
                state["done"] = True
                return state["expired"]

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            send(self.process.stdin, job)
            reply = receive(self.process.stdout)
        except (EOFError, OSError) as err:
            if finish():
                raise CompileTimeout(self._timed_out(timeout)) from err
            raise
        finally:
            timer.cancel()
        if finish():
            raise CompileTimeout(self._timed_out(timeout))
        return reply

    @staticmethod
    def _timed_out(timeout: float) -> str:
        return (f"a worker took over {timeout:g} s on one library and was killed "
                "(ARCHKIT_COMPILE_TIMEOUT)")

    def close(self) -> None:
        """End the worker (the end of its jobs), killing it if it does not go."""
        import subprocess

        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


def _idle_workers(jobs: int) -> Any:
    """The queue of idle workers, ``jobs`` of them started (again) if the count differs."""
    global _WORKERS, _IDLE
    if len(_WORKERS) != jobs:
        _stop_workers()
        import queue

        try:
            for _ in range(jobs):
                _WORKERS.append(_Worker())
        except BaseException:
            _stop_workers()  # the ones started
            raise
        _IDLE = queue.SimpleQueue()
        for worker in _WORKERS:
            _IDLE.put(worker)
    return _IDLE


def _stop_workers() -> None:
    """End every worker; a thread waiting for an idle one gets None (under ``_LOCK``)."""
    global _WORKERS
    workers, _WORKERS = _WORKERS, []
    for worker in workers:
        worker.close()
    if _IDLE is not None:
        for _ in range(64):  # more than any number of threads that can be waiting
            _IDLE.put(None)


def shutdown_compile_workers() -> None:
    """Stop the worker processes (started again by the next :func:`compile_ahead`)."""
    with _LOCK:
        _stop_workers()


atexit.register(shutdown_compile_workers)


def compile_ahead(specs: list[Any], device: Any, database: Any, folder: Path | None,
                  runtime: str = "tvm", upcoming: Iterable[Any] = (),
                  exporter: str = "dynamo") -> float:
    """Compile the libraries of ``specs`` missing from ``folder``, on every worker at once
    (``runtime`` ``onnxruntime``: export their ONNX files by ``exporter``, ``database``
    unused).

    Where some are missing, ``upcoming`` specs (the next group's) fill the workers' last
    round: three libraries on two workers would leave one idle for a whole compile, three
    plus one of the next group take the same time, and that group then has one fewer.

    Does nothing without a folder, with one worker or with fewer than two libraries to
    compile (the caller's own compile is as fast then). Never raises for the workers: what
    they could not compile, the caller compiles (and reports). Returns the wall seconds it
    took.
    """
    global _BROKEN
    from concurrent.futures import ThreadPoolExecutor

    from archkit.device._latency._kernels import network_fingerprint
    from archkit.ops import lower

    if folder is None or _BROKEN:
        return 0.0
    jobs = compile_jobs()
    timeout = compile_timeout()
    missing: dict[str, Any] = {}

    def add(spec: Any) -> None:
        name = f"{network_fingerprint(lower(spec))}{_SUFFIX[runtime]}"
        if not (folder / name).is_file():
            missing.setdefault(name, spec)

    for spec in specs:
        add(spec)
    if missing and jobs >= 2:
        for spec in upcoming:
            if len(missing) % jobs == 0:
                break
            add(spec)
    if jobs < 2 or len(missing) < 2:
        return 0.0
    database_folder = None
    if database is not None:
        if not hasattr(database, "path_tuning_record"):  # not a JSON database: no folder
            return 0.0
        database_folder = _database_folder(database)
    start = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)

    failures: list[BaseException] = []  # (in the order they happened)

    def compile_one(item: tuple[str, Any]) -> str | None:
        name, spec = item
        worker = idle.get()
        if worker is None:  # stopped (another thread's workers died)
            idle.put(None)
            raise RuntimeError("the compile workers were stopped")
        try:
            return worker.compile((runtime, spec, device, database_folder, str(folder),
                                   exporter), timeout)
        except CompileTimeout as err:
            with _LOCK:
                _TIMED_OUT.add(str(folder / name))
            failures.append(CompileTimeout(f"{err}: {spec.name}, {folder / name}"))
            raise failures[-1] from err
        except BaseException as err:
            failures.append(err)
            raise
        finally:
            # A dead worker is not handed to the next job: it tells the others to stop.
            idle.put(worker if worker.process.poll() is None else None)

    try:
        with _LOCK:  # (farm threads share the workers: each takes an idle one per library)
            if _BROKEN:
                return 0.0
            idle = _idle_workers(jobs)
        with ThreadPoolExecutor(min(jobs, len(missing))) as threads:
            list(threads.map(compile_one, missing.items()))
    except Exception as err:  # noqa: BLE001 - the caller compiles what is missing, one by one
        import warnings

        from archkit.errors import ArchkitWarning

        err = failures[0] if failures else err  # (the first to happen, not the first job's)
        with _LOCK:
            if not _BROKEN:
                _stop_workers()
                why = ("" if isinstance(err, CompileTimeout) else
                       "; a worker died, memory ran out, or it could not be started")
                warnings.warn(
                    f"archkit's compile workers failed ({type(err).__name__}: {err}{why}): "
                    "compiling (exporting) on one core from now on", ArchkitWarning,
                    stacklevel=2)
            _BROKEN = True
    return time.monotonic() - start
