"""TVM libraries compiled ahead of their timing, several at once, in worker processes.

A TVM network compiles in about 5 s here (``torch.export``, Relax import, ``tvm.compile``,
the link; 8-20 s before BatchNorm was folded in PyTorch), on one core, and cares nothing for
load; its timing needs a quiet machine. So :func:`compile_ahead` compiles a group's missing
libraries on every core *before* the group is timed (never while), each in a worker process
of a pool kept for the process's life (spawned: torch and TVM do not survive ``fork``; each
worker imports them once). As with any spawned worker, a script that builds TVM models must
keep its top level under ``if __name__ == "__main__":`` (a worker imports the script);
otherwise the workers fail and this process compiles everything itself, as with one worker.
Measured on this 2-core host (2026-12-01): six random networks of the three MobileNet spaces
in 33.0 s one after another, 18.9 s on two workers (their start included).

``ARCHKIT_COMPILE_JOBS`` sets how many workers (default: the cores this process may use, at
most 8, each holding its own torch and TVM; 1 compiles in this process, as before). A library
a worker failed to compile is compiled again in this process by
:func:`~archkit.device._latency._runtimes.compiled_library`, which then reports the error as
it always has.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["compile_ahead", "compile_jobs", "shutdown_compile_workers"]

#: At most this many workers by default: each holds its own torch, TVM and LLVM (716-753 MiB
#: peak resident each, compiling six random MobileNets here).
_MAX_DEFAULT_JOBS = 8

_LOCK = threading.Lock()
_POOL: Any = None
_POOL_JOBS = 0
#: Set when the workers failed (died: a script without a ``__main__`` guard, memory; or could
#: not take the job): this process compiles on its own from then on, instead of spawning
#: workers that fail again.
_BROKEN = False


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


#: A worker's tuning database, opened once per folder.
_DATABASES: dict[str, Any] = {}


def _start_worker() -> None:
    # One compile per worker, one core each: torch's intra-op threads would only contend.
    import torch

    torch.set_num_threads(1)


def _compile_in_worker(spec: Any, device: Any, database_folder: str | None,
                       folder: str) -> str | None:
    """Compile one library into ``folder`` with the tuning database in ``database_folder``
    (None: untuned); None, or why it failed (compiled again, and reported, by the caller's
    process)."""
    from archkit.device._latency._runtimes import compiled_library

    try:
        database = None
        if database_folder is not None:
            database = _DATABASES.get(database_folder)
            if database is None:
                from tvm.s_tir import meta_schedule as ms

                database = _DATABASES[database_folder] = ms.database.JSONDatabase(
                    work_dir=database_folder)
        compiled_library(spec, device, database, Path(folder), Path(folder))
    except Exception as err:  # noqa: BLE001 - reported by the caller's own compile
        return f"{type(err).__name__}: {err}"
    return None


def _database_folder(database: Any) -> str | None:
    """The folder of a MetaSchedule JSON database (what a worker opens it from)."""
    return str(Path(database.path_tuning_record).parent)


def _pool(jobs: int) -> Any:
    global _POOL, _POOL_JOBS
    if _POOL is None or _POOL_JOBS != jobs:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if _POOL is not None:
            _POOL.shutdown(wait=True)
        _POOL = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_start_worker)
        _POOL_JOBS = jobs
    return _POOL


def shutdown_compile_workers() -> None:
    """Stop the worker processes (started again by the next :func:`compile_ahead`)."""
    global _POOL, _POOL_JOBS
    with _LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=True)
        _POOL, _POOL_JOBS = None, 0


atexit.register(shutdown_compile_workers)


def compile_ahead(specs: list[Any], device: Any, database: Any, folder: Path | None) -> float:
    """Compile the libraries of ``specs`` missing from ``folder``, on every worker at once.

    Does nothing without a folder, with one worker or with fewer than two libraries to
    compile (the caller's own compile is as fast then). Never raises for the workers: what
    they could not compile, the caller compiles (and reports). Returns the wall seconds it
    took.
    """
    global _POOL, _POOL_JOBS, _BROKEN
    import multiprocessing

    from archkit.device._latency._kernels import network_fingerprint
    from archkit.ops import lower

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A compile worker importing a main script without a __main__ guard, which compiles
        # at its top level: the worker must die (its parent then compiles on its own), not
        # compile everything the script compiles and then serve.
        raise RuntimeError("archkit compile worker: the main script compiles at import; guard "
                           "its top level with `if __name__ == \"__main__\":`")
    if folder is None or _BROKEN:
        return 0.0
    jobs = compile_jobs()
    missing = {}
    for spec in specs:
        name = f"{network_fingerprint(lower(spec))}.so"
        if not (folder / name).is_file():
            missing.setdefault(name, spec)
    if jobs < 2 or len(missing) < 2:
        return 0.0
    database_folder = None
    if database is not None:
        if not hasattr(database, "path_tuning_record"):  # not a JSON database: no folder
            return 0.0
        database_folder = _database_folder(database)
    start = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    pool = None
    try:
        with _LOCK:  # (farm threads share the workers: each submits, then waits on its own)
            if _BROKEN:
                return 0.0
            pool = _pool(jobs)
            futures = [pool.submit(_compile_in_worker, spec, device, database_folder,
                                   str(folder)) for spec in missing.values()]
        for future in futures:
            future.result()
    except Exception as err:  # noqa: BLE001 - the caller compiles what is missing, one by one
        import warnings

        from archkit.errors import ArchkitWarning

        with _LOCK:
            if pool is not None and _POOL is pool:
                _POOL, _POOL_JOBS = None, 0
            if not _BROKEN:
                warnings.warn(
                    f"archkit's TVM compile workers failed ({type(err).__name__}: a script "
                    "they import has no `if __name__ == \"__main__\":` guard, memory ran out, "
                    "or the job could not be sent): compiling on one core from now on",
                    ArchkitWarning, stacklevel=2)
            _BROKEN = True
    return time.monotonic() - start
