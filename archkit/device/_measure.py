"""Compile, upload, check against PyTorch, then time on the device with TVM's time evaluator."""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archkit.device._devices import DeviceProfile
from archkit.device._errors import MeasurementError
from archkit.device._kernel_times import KernelProfile
from archkit.device._machine import holds_this_machine
from archkit.device._threads import call_in_thread

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["LatencyResult", "check_outputs", "measure_latency", "results_frame"]

# Progress events: (stage, detail). Stages: compile, tune, connect, upload, check, timing, done.
EventFn = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class LatencyResult:
    """One network measured on one device.

    Times are over ``repeats`` repeats, each the mean of ``number`` back-to-back runs, after
    warm-up. ``emulated`` results come from an emulator (qemu): they check the path and the
    outputs but are not device latency.

    Attributes:
        name: Name of the network (job name), if given.
        device: Device name.
        median_ms: Median latency.
        p90_ms: 90th percentile.
        min_ms: Fastest repeat.
        max_ms: Slowest repeat.
        std_ms: Standard deviation over repeats.
        max_abs_diff: Max |TVM - PyTorch| over all outputs on the same input.
        emulated: True when measured on an emulated board.
        repeats: Number of timed repeats.
        number: Runs per repeat.
        metadata: What makes it reproducible: tvm_version, target, threads, tuning state and
            records reused, governor (Linux boards, when readable), server, versions, ...
        kernel_profile: Measured time per node from profiled runs (``profile_runs`` > 0), with
            the profiler's overhead; None when not asked for.
    """

    name: str | None
    device: str
    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    max_abs_diff: float
    emulated: bool
    repeats: int
    number: int
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    kernel_profile: KernelProfile | None = field(default=None, hash=False, compare=False)

    @property
    def label(self) -> str:
        """``emulated`` or ``device``: how to present the timing."""
        return "emulated" if self.emulated else "device"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out = asdict(self)
        out["label"] = self.label
        if self.kernel_profile is None:
            del out["kernel_profile"]
        else:
            out["kernel_profile"] = self.kernel_profile.to_dict()
        return out


def results_frame(results: list[LatencyResult | MeasurementError]) -> Any:
    """A pandas DataFrame, one row per result (errors as rows with an ``error`` column)."""
    import pandas as pd

    rows = []
    for r in results:
        if isinstance(r, LatencyResult):
            rows.append(
                {
                    "name": r.name,
                    "device": r.device,
                    "label": r.label,
                    "median_ms": r.median_ms,
                    "p90_ms": r.p90_ms,
                    "min_ms": r.min_ms,
                    "max_ms": r.max_ms,
                    "std_ms": r.std_ms,
                    "max_abs_diff": r.max_abs_diff,
                    "tuning": r.metadata.get("tuning", {}).get("state"),
                    "server": r.metadata.get("server"),
                    "error": None,
                }
            )
        else:
            rows.append({"name": r.job, "error": str(r.reason), "stage": r.stage})
    return pd.DataFrame(rows)


def _stats_ms(seconds: list[float]) -> dict[str, float]:
    import numpy as np

    ms = np.asarray(seconds, dtype=float) * 1e3
    return {
        "median_ms": float(np.median(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "std_ms": float(ms.std()),
    }


def check_outputs(
    outputs: list[Any],
    reference: list[Any],
    atol: float,
    rtol: float,
    where: str,
    runtime: str = "TVM",
) -> tuple[float, dict[str, Any]]:
    """Compare a runtime's outputs with PyTorch's on the same input.

    Returns:
        (max |output - PyTorch|, check metadata: ``max_abs_output``, ``max_rel_diff``,
        ``check_is_weak``).

    Raises:
        MeasurementError: Different count or shapes, or max |diff| > atol + rtol x max|PyTorch|.
    """
    import numpy as np

    if len(outputs) != len(reference):
        raise MeasurementError(
            f"{runtime} returned {len(outputs)} outputs, PyTorch {len(reference)}", stage="check"
        )
    max_abs_diff, scale = 0.0, 0.0
    for got, want in zip(outputs, reference, strict=True):
        if got.shape != want.shape:
            raise MeasurementError(
                f"{runtime} output shape {got.shape} differs from PyTorch's {want.shape}",
                stage="check",
            )
        max_abs_diff = max(max_abs_diff, float(np.max(np.abs(got - want))))
        scale = max(scale, float(np.max(np.abs(want))))
    tolerance = atol + rtol * scale
    if not np.isfinite(max_abs_diff) or max_abs_diff > tolerance:
        raise MeasurementError(
            f"{runtime} outputs on {where} differ from PyTorch: max abs diff "
            f"{max_abs_diff:.3g} > atol {atol:g} + rtol {rtol:g} x max|output| "
            f"{scale:.3g}; not timing a wrong program",
            stage="check",
        )
    check = {
        "max_abs_output": scale,
        "max_rel_diff": max_abs_diff / scale if scale > 0 else 0.0,
        # With outputs far below atol the comparison cannot catch a wrong program.
        "check_is_weak": scale < 100 * atol,
    }
    return max_abs_diff, check


def _rpc_failure(
    err: BaseException, stage: str, device: DeviceProfile, server: str
) -> MeasurementError:
    return MeasurementError(
        f"lost the device {device.name!r} (RPC server {server}) during {stage}: "
        f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}",
        stage=stage,
    )


def _configure_threads(remote: Any, threads: int) -> int | None:
    """Ask the board's TVM runtime for ``threads`` worker threads; return what it uses.

    Locally the pool can be sized exactly (a CPU list raises the cap). Over RPC only the
    two-argument form passes, which can lower the server's default but not raise it: the
    default is all cores on Arm boards (half the logical cores on x86); start the server with
    ``TVM_NUM_THREADS=N`` to change it.
    """
    configure = remote.get_function("runtime.config_threadpool")
    num_threads = remote.get_function("runtime.NumThreads")
    try:
        if remote.session is None:
            configure(-3, threads, [str(i) for i in range(threads)])
        else:
            configure(1, threads)
        return int(num_threads())
    except Exception:  # noqa: BLE001 - keep the runtime's default
        try:
            return int(num_threads())
        except Exception:  # noqa: BLE001
            return None


def _on_device_fn(
    remote: Any,
    device: DeviceProfile,
    lib_path: str,
    x_np: Any,
    reference: list[Any],
    atol: float,
    repeats: int,
    number: int,
    min_repeat_ms: int,
    event: Callable[[str], None],
    rtol: float,
    check: dict[str, Any],
    profile_runs: int = 0,
) -> Callable[[], tuple[float, list[float], int, int | None, str | None, dict[str, Any] | None]]:
    """The part that runs on the board: load, configure threads, check outputs, time; then,
    with ``profile_runs``, the per-call times of that many instrumented runs."""

    def run() -> tuple[float, list[float], int, int | None, str | None, dict[str, Any] | None]:
        import numpy as np
        import tvm
        from tvm import relax

        from archkit.device import _compile

        server = remote.server
        stage = "upload"
        try:
            event("upload")
            dev = remote.device()
            lib = remote.load_module(lib_path)
            runtime_threads = _configure_threads(remote, device.threads)
            vm = relax.VirtualMachine(lib, dev)

            stage = "check"
            event("check")
            vm.set_input("main", tvm.runtime.tensor(x_np, dev))
            vm.invoke_stateful("main")
            outputs = [o.numpy() for o in _compile.flatten_outputs(vm.get_outputs("main"))]
            max_abs_diff, found = check_outputs(
                outputs, reference, atol, rtol, f"{device.name} ({server})"
            )
            check.update(found)

            stage = "timing"
            event("timing")
            # Warm-up (the evaluator also discards its own first run), then size `number`.
            warm = vm.time_evaluator("invoke_stateful", dev, number=1, repeat=3)
            first = float(np.median(warm("main").results))
            n = number or max(1, min(1000, int(np.ceil(min_repeat_ms / 1e3 / max(first, 1e-6)))))
            timer = vm.time_evaluator("invoke_stateful", dev, number=n, repeat=repeats)
            seconds = [float(s) for s in timer("main").results]

            profiled = None
            if profile_runs:
                stage = "profile"
                event("profile")
                profiled = _profile_calls(remote, vm, lib_path, x_np, profile_runs)
            governor = remote.governor()
        except MeasurementError:
            raise
        except Exception as err:  # noqa: BLE001 - RPC errors come as many types
            if device.is_remote:
                raise _rpc_failure(err, stage, device, server) from err
            raise MeasurementError(f"{stage} failed: {err}", stage=stage) from err
        return max_abs_diff, seconds, n, runtime_threads, governor, profiled

    return run


def _profile_calls(remote: Any, vm: Any, lib_path: str, x_np: Any, runs: int) -> dict[str, Any]:
    """``_ort_remote.instrumented_runs`` of the network: in this process for a local device, on
    the board through ``archkit serve``'s function over RPC (a callback cannot cross RPC)."""
    import json

    from archkit.device import _ort_remote

    if remote.session is None:
        return _ort_remote.instrumented_runs(vm, runs)
    try:
        profile = remote.get_function(_ort_remote.PROFILE_TVM_FUNC)
    except (AttributeError, RuntimeError, ValueError):
        raise MeasurementError(
            f"per-layer times over RPC need `archkit serve` on the board: the RPC server at "
            f"{remote.server} has no {_ort_remote.PROFILE_TVM_FUNC} (TVM's plain rpc_server)",
            stage="profile",
        ) from None
    answer = profile(lib_path.rsplit("/", 1)[-1], bytearray(_ort_remote._npy_bytes(x_np)),
                     json.dumps({"runs": runs, "warmup": 1}))
    return json.loads(str(answer))


def _profiled_network(model: Any, profile_runs: int) -> Any:
    """The lowered network per-kernel times are attributed to (None without profiling)."""
    if profile_runs < 0:
        raise ValueError(f"profile_runs must be >= 0, got {profile_runs}")
    if not profile_runs:
        return None
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ValueError(
            f"profile_runs needs a model built by archkit.build.build_model (per-kernel times are "
            f"attributed to its spec's layers); got a {type(model).__name__} without .spec"
        )
    from archkit.ops import lower

    return lower(spec)


@holds_this_machine("profile")
def measure_latency(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    device: DeviceProfile,
    *,
    tune_trials: int = 0,
    cache_dir: Path | None = None,
    repeats: int = 30,
    number: int = 0,
    min_repeat_ms: int = 50,
    atol: float = 1e-3,
    rtol: float = 1e-3,
    name: str | None = None,
    progress: bool = True,
    on_event: EventFn | None = None,
    retune: bool = False,
    profile_runs: int = 0,
) -> LatencyResult:
    """Compile ``model`` with TVM for ``device``, check it against PyTorch there, and time it.

    Steps: ``torch.export`` -> Relax (BatchNorm folded into the convolutions) -> optional
    MetaSchedule tuning on the device (``tune_trials`` > 0; records persist per device in
    ``cache_dir`` and are reused by every later network sharing layer shapes) -> ``tvm.compile``
    -> link with the device's cross compiler -> upload over RPC -> run once and compare with
    PyTorch on the same input -> warm-up -> ``repeats`` timed repeats.

    Args:
        model: The network (run in eval mode).
        example_input: Input batch (its shape is compiled in).
        device: From :func:`load_device`.
        tune_trials: MetaSchedule trial budget for layers not yet in the device database;
            0 compiles without tuning.
        cache_dir: Root of the tuning cache (default ``$ARCHKIT_CACHE_DIR`` or
            ``~/.cache/archkit``).
        repeats: Timed repeats (median/p90/spread are over these).
        number: Runs per repeat; 0 picks enough runs for ``min_repeat_ms`` per repeat.
        min_repeat_ms: Minimum duration of one repeat when ``number`` is 0.
        atol: Absolute part of the accepted max |TVM - PyTorch|.
        rtol: Relative part: the check fails when max |TVM - PyTorch| > atol + rtol *
            max |PyTorch output|. Metadata records ``max_abs_output``, ``max_rel_diff`` and
            ``check_is_weak`` (outputs far below ``atol``: pass a smaller ``atol``).
        name: Name for reports.
        progress: Show rich progress for tuning.
        on_event: Called as ``on_event(stage, info)`` at each stage (for progress and tests).
        retune: Tune layers that already have records too (``tune_trials`` more trials for the
            whole network, starting from the database; see ``_tune.tune``).
        profile_runs: After timing, run the network this many more times (after one warm-up)
            with a callback around every VM call (``VirtualMachine.set_instrument``; on a board
            through ``archkit serve``), and attribute each call's median time to the layer of
            ``model.spec`` it computes: ``result.kernel_profile``. ``model`` must be built by
            :func:`archkit.build.build_model`. 0: no profiling.

    Returns:
        The result, with reproducibility metadata.

    Raises:
        DeviceError: The device is not configured or cannot be reached (clear, in seconds).
        MeasurementError: Outputs differ from PyTorch, or the board failed mid-measurement.
        ValueError: ``profile_runs`` for a model without an archkit spec.
    """
    import torch
    import tvm

    from archkit.device import _compile, _connect, _tune

    def event(stage: str, **info: Any) -> None:
        if on_event is not None:
            on_event(stage, {"name": name, **info})

    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    network = _profiled_network(model, profile_runs)
    if device.connection.ssh:  # one tunnel for the whole measurement (tuning included)
        from archkit.device._tunnel import ssh_tunnel

        with ssh_tunnel(device) as through:
            return measure_latency(
                model, example_input, through, tune_trials=tune_trials, cache_dir=cache_dir,
                repeats=repeats, number=number, min_repeat_ms=min_repeat_ms, atol=atol,
                rtol=rtol, name=name, progress=progress, on_event=on_event, retune=retune,
                profile_runs=profile_runs,
            )  # fmt: skip
    # Fail fast, before minutes of compiling and tuning, when the board is not there: a real
    # RPC session (handshake and one remote call), closed again.
    _connect.check_reachable(device, kernels=profile_runs > 0)
    target = device.target_dict()
    timings: dict[str, float] = {}
    reference = _compile.reference_outputs(model, example_input)
    x_np = example_input.detach().cpu().contiguous().numpy()

    event("compile")
    t0 = time.perf_counter()
    program = _compile.to_relax(model, example_input)
    timings["import_s"] = time.perf_counter() - t0

    database, tuning = None, None
    if tune_trials > 0:
        event("tune", trials=tune_trials)
        database, tuning = _tune.tune(
            program.mod, device, target, tune_trials, cache_dir, progress=progress, retune=retune
        )
    t0 = time.perf_counter()
    executable = _compile.build(program, target, database)
    timings["compile_s"] = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="archkit-device-") as tmp:
        lib_path = Path(tmp) / f"{(name or 'model').replace('/', '_')}-{device.name}.so"
        _compile.export_library(executable, lib_path, device)

        event("connect")
        check: dict[str, Any] = {}
        remote = _connect.open_remote(device)
        server = remote.server
        on_device = _on_device_fn(
            remote, device, str(lib_path), x_np, reference, atol, repeats, number,
            min_repeat_ms, lambda stage: event(stage, server=server), rtol, check, profile_runs,
        )  # fmt: skip
        try:
            # A fresh thread gets a fresh TVM thread pool (they are thread-local), so the
            # configured thread count applies; RPC servers fork a fresh process per session.
            max_abs_diff, seconds, n, runtime_threads, governor, profiled = call_in_thread(
                on_device, "measure"
            )
        finally:
            remote.close()

    # Kernels without a tuning record (all of them untuned): TVM's default schedules with the
    # outer loops parallel (_compile.build).
    tuning_meta: dict[str, Any] = {"state": "untuned", "trials": 0,
                                   "schedule": _compile.UNTUNED_SCHEDULE}
    if tuning is not None:
        tuning_meta = {
            "state": "tuned" if tuning.records_after else "untuned",
            "trials": tuning.trials_run,
            "schedule": _compile.UNTUNED_SCHEDULE,
            **tuning.to_dict(),
        }
    metadata = {
        "runtime": "tvm",
        "tvm_version": tvm.__version__,
        "torch_version": torch.__version__,
        "target": target,
        "threads": device.threads,
        "runtime_threads": runtime_threads,
        "tuning": tuning_meta,
        "governor": governor,
        "device": device.to_dict(),
        "server": server,
        "emulated": device.emulated,
        "input_shape": list(x_np.shape),
        "check": {"atol": atol, "rtol": rtol, **check},
        "batchnorms_folded": program.batchnorms_folded,
        "batchnorms_decomposed": program.batchnorms_decomposed,
        "host": platform.node(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **{k: round(v, 3) for k, v in timings.items()},
    }
    stats = _stats_ms(seconds)
    kernel_profile = None
    if profiled is not None:
        from archkit.device._kernel_times import attribute_tvm_calls

        kernel_profile = KernelProfile(
            attribute_tvm_calls(profiled["calls"], network), profiled["run_ms"],
            stats["median_ms"], "tvm set_instrument",
        )  # fmt: skip
    result = LatencyResult(
        name=name,
        device=device.name,
        **stats,
        max_abs_diff=max_abs_diff,
        emulated=device.emulated,
        repeats=repeats,
        number=n,
        metadata=metadata,
        kernel_profile=kernel_profile,
    )
    event("done", server=server, median_ms=result.median_ms)
    return result
