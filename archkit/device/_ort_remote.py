"""onnxruntime on the board: the timing function ``archkit serve`` registers in TVM's RPC server.

The host uploads the ``.onnx`` file over the RPC session (``session.upload``) and calls
:data:`MEASURE_FUNC` on the board; the board runs the model with onnxruntime, checks nothing
itself, and returns its outputs and timings as JSON, so the host compares them with PyTorch. The
timing protocol (:func:`time_calls`) is the one the host baselines use.

This module runs on the board, where only archkit's small ``runtime`` extra is installed, and
under the emulated board's Python (which loads it by file path, outside the package), so it is
self-contained: standard library, numpy, onnxruntime and tvm_ffi, imported inside the functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "MEASURE_FUNC",
    "VERSION_FUNC",
    "decode_outputs",
    "measure_onnx",
    "onnxruntime_version",
    "register",
    "register_in_server",
    "time_calls",
]

#: Global function name of the onnxruntime timing function in the board's RPC server.
MEASURE_FUNC = "archkit.onnxruntime.measure"
#: Global function name that returns the board's onnxruntime version ("" when not installed).
VERSION_FUNC = "archkit.onnxruntime.version"


def time_calls(
    fn: Callable[[], Any], repeats: int, min_repeat_ms: float = 20.0, warmup: int = 3
) -> tuple[list[float], int]:
    """Time ``fn``: ``warmup`` calls, then ``repeats`` repeats of ``number`` back-to-back calls.

    ``number`` is sized from one timed call so that a repeat lasts at least ``min_repeat_ms``.

    Returns:
        (milliseconds per call for each repeat, ``number``).
    """
    import math

    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    number = max(1, math.ceil(min_repeat_ms / 1e3 / once))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number * 1e3)
    return samples, number


def _npy_bytes(array: Any) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _npy_array(data: bytes) -> Any:
    import io

    import numpy as np

    return np.load(io.BytesIO(bytes(data)), allow_pickle=False)


def onnxruntime_version() -> str:
    """The installed onnxruntime version, or "" when it cannot be imported."""
    try:
        import onnxruntime
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return ""
    return str(onnxruntime.__version__)


def _resolve(model_file: str) -> str:
    """A relative name is a file uploaded into this RPC session's work folder."""
    import os

    if os.path.isabs(model_file):
        return model_file
    import tvm_ffi

    workpath = tvm_ffi.get_global_func("tvm.rpc.server.workpath", allow_missing=True)
    return str(workpath(model_file)) if workpath is not None else os.path.abspath(model_file)


def measure_onnx(model_file: str, input_npy: bytes, config_json: str) -> str:
    """Run an ONNX model with onnxruntime's CPU provider and time it.

    Args:
        model_file: Path of the ``.onnx`` file (relative: in the RPC session's work folder).
        input_npy: The input batch as ``.npy`` bytes.
        config_json: ``{"threads": int, "repeats": int, "min_repeat_ms": float}``.

    Returns:
        JSON: ``times_ms`` (per call, one per repeat), ``number``, ``outputs`` (``.npy`` bytes,
        base64), ``onnxruntime_version``, ``threads``, ``providers``, ``machine``.
    """
    import base64
    import json
    import platform

    import onnxruntime as ort

    config = json.loads(config_json)
    options = ort.SessionOptions()
    threads = int(config.get("threads") or 0)
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        _resolve(model_file), sess_options=options, providers=["CPUExecutionProvider"]
    )
    feed = {session.get_inputs()[0].name: _npy_array(input_npy)}
    outputs = session.run(None, feed)
    samples, number = time_calls(
        lambda: session.run(None, feed),
        int(config.get("repeats", 30)),
        float(config.get("min_repeat_ms", 20.0)),
    )
    return json.dumps(
        {
            "times_ms": samples,
            "number": number,
            "outputs": [base64.b64encode(_npy_bytes(o)).decode() for o in outputs],
            "onnxruntime_version": ort.__version__,
            "threads": threads or None,
            "providers": session.get_providers(),
            "machine": platform.machine(),
        }
    )


def decode_outputs(answer: dict[str, Any]) -> list[Any]:
    """The output arrays of a :func:`measure_onnx` answer."""
    import base64

    return [_npy_array(base64.b64decode(text)) for text in answer["outputs"]]


def register() -> None:
    """Register :data:`MEASURE_FUNC` and :data:`VERSION_FUNC` in this process's TVM registry."""
    import tvm_ffi

    tvm_ffi.register_global_func(MEASURE_FUNC, measure_onnx, override=True)
    tvm_ffi.register_global_func(VERSION_FUNC, onnxruntime_version, override=True)


def register_in_server() -> None:
    """``server_init_callback`` of ``tvm.rpc.Server``: runs in the server process.

    Sessions are served in ``multiprocessing`` children of that process; they inherit the
    registry only when forked, so the start method is pinned to ``fork`` (Python 3.14 changes
    Linux's default to ``forkserver``).
    """
    import multiprocessing

    multiprocessing.set_start_method("fork", force=True)
    register()
