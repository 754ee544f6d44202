"""The board-side functions ``archkit serve`` registers in TVM's RPC server.

- onnxruntime: the host uploads the ``.onnx`` file over the RPC session (``session.upload``)
  and calls :data:`MEASURE_FUNC` on the board; the board runs the model with onnxruntime, checks
  nothing itself, and returns its outputs and timings as JSON (with ``profile_runs``, also
  onnxruntime's per-node profile events), so the host compares them with PyTorch. The timing
  protocol (:func:`time_calls`) is the one the host baselines use.
- TVM per-call times: a Python callback cannot be passed to a VM on the board, so
  :data:`PROFILE_TVM_FUNC` loads the library the host uploaded, runs the network with
  ``VirtualMachine.set_instrument`` there (:func:`instrumented_runs`, which a local device runs
  in-process too) and returns every call's median time as JSON.

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
    "PROFILE_TVM_FUNC",
    "VERSION_FUNC",
    "decode_outputs",
    "instrumented_runs",
    "measure_onnx",
    "onnxruntime_version",
    "profile_tvm",
    "register",
    "register_in_server",
    "time_calls",
]

#: Global function name of the onnxruntime timing function in the board's RPC server.
MEASURE_FUNC = "archkit.onnxruntime.measure"
#: Global function name that returns the board's onnxruntime version ("" when not installed).
VERSION_FUNC = "archkit.onnxruntime.version"
#: Global function name of the TVM per-call profiler (``VirtualMachine.set_instrument``).
PROFILE_TVM_FUNC = "archkit.tvm.profile_calls"


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
        config_json: ``{"threads": int, "repeats": int, "min_repeat_ms": float}``, and
            optionally ``"warmup"`` (untimed runs before timing and before profiling, default
            3), ``"spinning"`` (``session.intra_op.allow_spinning``; default: onnxruntime's,
            which spins) and ``"profile_runs"``: > 0 also runs the model that many times (after
            the warm-up runs) in a second session with onnxruntime's profiler on.

    Returns:
        JSON: ``times_ms`` (per call, one per repeat), ``number``, ``outputs`` (``.npy`` bytes,
        base64), ``onnxruntime_version``, ``threads``, ``providers``, ``machine``; with
        ``profile_runs``, ``profile``: ``events`` (the profiler's per-node kernel events, warm-up
        runs included: ``name``, ``dur`` in us, ``op_name``), ``warmup_runs`` and ``run_ms``
        (wall time of each profiled run).
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
    if "spinning" in config:
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if config["spinning"] else "0"
        )
    session = ort.InferenceSession(
        _resolve(model_file), sess_options=options, providers=["CPUExecutionProvider"]
    )
    feed = {session.get_inputs()[0].name: _npy_array(input_npy)}
    outputs = session.run(None, feed)
    samples, number = time_calls(
        lambda: session.run(None, feed),
        int(config.get("repeats", 30)),
        float(config.get("min_repeat_ms", 20.0)),
        int(config.get("warmup", 3)),
    )
    profile = None
    if int(config.get("profile_runs") or 0) > 0:
        profile = _profile_onnx(_resolve(model_file), options, feed, int(config["profile_runs"]),
                                int(config.get("warmup", 3)))
    return json.dumps(
        {
            "times_ms": samples,
            "number": number,
            "outputs": [base64.b64encode(_npy_bytes(o)).decode() for o in outputs],
            "onnxruntime_version": ort.__version__,
            "threads": threads or None,
            "providers": session.get_providers(),
            "machine": platform.machine(),
            "profile": profile,
        }
    )


def _profile_onnx(path: str, options: Any, feed: dict[str, Any], runs: int,
                  warmup: int = 3) -> dict[str, Any]:
    """onnxruntime's per-node kernel events of ``warmup`` + ``runs`` runs of a profiled session."""
    import json
    import os
    import shutil
    import tempfile

    import onnxruntime as ort

    folder = tempfile.mkdtemp(prefix="archkit-ort-profile-")
    try:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "profile")
        session = ort.InferenceSession(path, sess_options=options,
                                       providers=["CPUExecutionProvider"])
        run_ms = []
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            session.run(None, feed)
            if i >= warmup:
                run_ms.append((time.perf_counter() - t0) * 1e3)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    kernels = [
        {"name": e["name"], "dur": e["dur"], "op_name": e.get("args", {}).get("op_name", "")}
        for e in events
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")
    ]
    return {"events": kernels, "warmup_runs": warmup, "run_ms": run_ms}


def instrumented_runs(vm: Any, runs: int, warmup: int = 1) -> dict[str, Any]:
    """Run a Relax VM's ``main`` ``warmup`` + ``runs`` times with a callback around every call.

    ``vm`` is a ``tvm.runtime.vm.VirtualMachine`` whose ``main`` input is set. Every run makes
    the same calls in the same order, so each call's time is its median over the ``runs``
    runs; the first ``warmup`` runs (the callback's own first calls) are not counted.

    Returns:
        ``calls``: ``[name, median seconds, argument shapes]`` per call, in call order;
        ``run_ms``: wall time of each counted run (the callbacks included).
    """
    import statistics

    recorded: list[list[list[Any]]] = []

    def instrument(func: Any, name: str, before: bool, ret: Any, *args: Any) -> int:
        if before:
            shapes = [[int(d) for d in a.shape] for a in args if hasattr(a, "shape")]
            recorded[-1].append([str(name), time.perf_counter(), shapes])
        else:
            call = recorded[-1][-1]
            call[1] = time.perf_counter() - call[1]
        return 0

    run_ms = []
    vm.set_instrument(instrument)
    try:
        for i in range(warmup + runs):
            recorded.append([])
            t0 = time.perf_counter()
            vm.invoke_stateful("main")
            if i >= warmup:
                run_ms.append((time.perf_counter() - t0) * 1e3)
    finally:
        vm.set_instrument(lambda *a: 0)
    counted = recorded[warmup:]
    calls = [
        [same[0][0], statistics.median(c[1] for c in same), same[0][2]]
        for same in zip(*counted, strict=True)
    ]
    return {"calls": calls, "run_ms": run_ms}


def profile_tvm(lib_file: str, input_npy: bytes, config_json: str) -> str:
    """Per-call times of a compiled network on this machine (:func:`instrumented_runs`).

    Args:
        lib_file: The compiled library (relative: uploaded into the RPC session's work folder).
        input_npy: The input batch as ``.npy`` bytes.
        config_json: ``{"runs": int, "warmup": int}``.

    Returns:
        JSON: :func:`instrumented_runs`'s answer.
    """
    import json

    import tvm
    from tvm.runtime.vm import VirtualMachine

    config = json.loads(config_json)
    dev = tvm.cpu()
    vm = VirtualMachine(tvm.runtime.load_module(_resolve(lib_file)), dev)
    vm.set_input("main", tvm.runtime.tensor(_npy_array(input_npy), dev))
    vm.invoke_stateful("main")
    answer = instrumented_runs(vm, int(config.get("runs", 20)), int(config.get("warmup", 1)))
    return json.dumps(answer)


def decode_outputs(answer: dict[str, Any]) -> list[Any]:
    """The output arrays of a :func:`measure_onnx` answer."""
    import base64

    return [_npy_array(base64.b64decode(text)) for text in answer["outputs"]]


def register() -> None:
    """Register :data:`MEASURE_FUNC`, :data:`VERSION_FUNC` and :data:`PROFILE_TVM_FUNC` in this
    process's TVM registry."""
    import tvm_ffi

    tvm_ffi.register_global_func(MEASURE_FUNC, measure_onnx, override=True)
    tvm_ffi.register_global_func(VERSION_FUNC, onnxruntime_version, override=True)
    tvm_ffi.register_global_func(PROFILE_TVM_FUNC, profile_tvm, override=True)


def register_in_server() -> None:
    """``server_init_callback`` of ``tvm.rpc.Server``: runs in the server process.

    Sessions are served in ``multiprocessing`` children of that process; they inherit the
    registry only when forked, so the start method is pinned to ``fork`` (Python 3.14 changes
    Linux's default to ``forkserver``).
    """
    import multiprocessing

    multiprocessing.set_start_method("fork", force=True)
    register()
