"""A compile worker (TVM libraries, ONNX exports):
``python -m archkit.device._latency._compile_worker``.

Started by :mod:`archkit.device._latency._compiling`, which sends it jobs on its stdin and reads
one reply per job on its stdout, each a length-prefixed pickle (a pipe between two processes of
the same interpreter and package: nothing is stored). A job is ``(runtime, spec, device, tuning
database folder or None, folder, ONNX exporter)``; the reply is ``None``, or why the library
(the ONNX file) was not made. It exits at the end of its stdin.

Started as a module, not spawned by ``multiprocessing``: a spawned worker imports its parent's
main script, so a script without an ``if __name__ == "__main__":`` guard would run again in
every worker. This one imports nothing of its parent's.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
from pathlib import Path
from typing import IO, Any

_LENGTH = struct.Struct(">Q")


def send(channel: IO[bytes], message: Any) -> None:
    """Write one message (a length, then its pickle) and flush."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    channel.write(_LENGTH.pack(len(data)) + data)
    channel.flush()


def receive(channel: IO[bytes]) -> Any:
    """Read one message.

    Raises:
        EOFError: The other end closed (or died) before a whole message came.
    """
    header = channel.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError("the compile channel closed")
    size = _LENGTH.unpack(header)[0]
    data = channel.read(size)
    if len(data) < size:
        raise EOFError("the compile channel closed mid-message")
    return pickle.loads(data)


#: A worker's tuning databases, opened once per folder.
_DATABASES: dict[str, Any] = {}


def compile_one(runtime: str, spec: Any, device: Any, database_folder: str | None,
                folder: str, exporter: str = "dynamo") -> str | None:
    """Compile one library into ``folder`` with the tuning database in ``database_folder``
    (None: untuned), or export one ONNX file by ``exporter`` (``runtime`` ``onnxruntime``);
    None, or why it failed (compiled again, and reported, by the caller's process)."""
    from archkit.device._latency._runtimes import compiled_library, exported_onnx

    try:
        if runtime == "onnxruntime":
            exported_onnx(spec, Path(folder), Path(folder), exporter)
            return None
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


def main() -> int:
    # Ctrl-C in a terminal reaches the whole process group: the parent decides (it ends the
    # workers by closing their stdin), so an interactive session keeps its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    jobs = sys.stdin.buffer
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    # What torch, TVM or LLVM print goes to stderr, never into the replies.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    import torch

    # One compile per worker, one core each: torch's intra-op threads would only contend.
    torch.set_num_threads(1)
    while True:
        try:
            job = receive(jobs)
        except EOFError:
            return 0
        send(replies, compile_one(*job))


if __name__ == "__main__":
    sys.exit(main())
