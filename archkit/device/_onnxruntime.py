"""onnxruntime on a board, through the same RPC transport (and tracker, and tunnel) as TVM.

The board runs ``archkit serve``: TVM's RPC server with archkit's onnxruntime timing function
registered (``_ort_remote``). The host exports the network to ONNX (``archkit.build.export_onnx``,
archkit's one exporter), uploads the file in the RPC session, calls the function, and checks the
board's outputs against PyTorch's on the same input before reporting the timings.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archkit.device._devices import DeviceProfile
from archkit.device._errors import MeasurementError
from archkit.device._kernel_times import KernelProfile
from archkit.device._machine import holds_this_machine
from archkit.device._measure import (
    EventFn,
    LatencyResult,
    _profiled_network,
    _stats_ms,
    check_outputs,
)
from archkit.device._threads import call_in_thread

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["measure_onnxruntime"]


@holds_this_machine("profile")
def measure_onnxruntime(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    device: DeviceProfile,
    *,
    repeats: int = 30,
    min_repeat_ms: float = 20.0,
    atol: float = 1e-3,
    rtol: float = 1e-3,
    name: str | None = None,
    on_event: EventFn | None = None,
    profile_runs: int = 0,
) -> LatencyResult:
    """Time ``model`` with onnxruntime on ``device``, checked against PyTorch there.

    Protocol (the host baselines' one, :func:`archkit.device._ort_remote.time_calls`): one run
    for the check, 3 warm-up runs, then ``repeats`` repeats of enough back-to-back runs for
    ``min_repeat_ms`` each; median, p90 and spread over the repeats. onnxruntime uses
    ``device.threads`` intra-op threads (one inter-op thread) and its CPU provider.

    A remote device must run ``archkit serve`` (TVM's plain ``rpc_server`` lacks the function:
    a :class:`DeviceError` says so before anything is exported). A ``local`` device runs the
    same function in this process.

    With ``profile_runs`` > 0, a second session with onnxruntime's profiler on runs the model 3
    + ``profile_runs`` times there, and each kernel's median time over the profiled runs is
    attributed to the layer of ``model.spec`` it computes (``result.kernel_profile``; ``model``
    must be built by :func:`archkit.build.build_model`).

    Raises:
        DeviceError: The device cannot be reached, or its server is not ``archkit serve``.
        MeasurementError: Export failed, outputs differ from PyTorch, or the board failed.
        ValueError: ``profile_runs`` for a model without an archkit spec.
    """
    import numpy as np
    import torch

    from archkit.device import _compile, _connect, _ort_remote

    def event(stage: str, **info: Any) -> None:
        if on_event is not None:
            on_event(stage, {"name": name, "runtime": "onnxruntime", **info})

    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    network = _profiled_network(model, profile_runs)
    if device.connection.ssh:
        from archkit.device._tunnel import ssh_tunnel

        with ssh_tunnel(device) as through:
            return measure_onnxruntime(
                model, example_input, through, repeats=repeats, min_repeat_ms=min_repeat_ms,
                atol=atol, rtol=rtol, name=name, on_event=on_event, profile_runs=profile_runs,
            )  # fmt: skip
    _connect.check_reachable(device, runtime="onnxruntime", kernels=profile_runs > 0)
    reference = _compile.reference_outputs(model, example_input)
    x_np = np.ascontiguousarray(example_input.detach().cpu().numpy())
    config = json.dumps(
        {"threads": device.threads, "repeats": repeats, "min_repeat_ms": min_repeat_ms,
         "profile_runs": profile_runs}
    )  # fmt: skip
    owners: dict[str, str] = {}

    with tempfile.TemporaryDirectory(prefix="archkit-onnx-") as tmp:
        event("compile")
        t0 = time.perf_counter()
        path = Path(tmp) / f"{(name or 'model').replace('/', '_')}.onnx"
        was_training = model.training  # the exporter leaves the model in eval mode
        try:
            from archkit.build import export_onnx

            export_onnx(None, path, model=model, example=example_input)
        except Exception as err:  # noqa: BLE001 - the exporter's errors are many and varied
            raise MeasurementError(
                f"ONNX export failed: {type(err).__name__}: {err}", stage="compile"
            ) from err
        finally:
            model.train(was_training)
        export_s = time.perf_counter() - t0
        if network is not None:
            from archkit.device._kernel_times import onnx_output_owners

            owners = onnx_output_owners(path)

        event("connect")
        remote = _connect.open_remote(device)
        server = remote.server
        stage = "upload"

        def on_board() -> tuple[str, str | None]:
            nonlocal stage
            input_npy = _ort_remote._npy_bytes(x_np)
            if remote.session is None:
                stage = "timing"
                return _ort_remote.measure_onnx(str(path), input_npy, config), remote.governor()
            event("upload", server=server)
            remote.session.upload(str(path))
            measure = remote.get_function(_ort_remote.MEASURE_FUNC)
            stage = "timing"
            event("timing", server=server)
            answer = measure(path.name, bytearray(input_npy), config)
            return str(answer), remote.governor()

        try:
            answer_json, governor = call_in_thread(on_board, "onnxruntime")
        except MeasurementError:
            raise
        except Exception as err:  # noqa: BLE001 - RPC errors come as many types
            detail = str(err).strip().splitlines()
            raise MeasurementError(
                f"onnxruntime on {device.name!r} ({server}) failed during {stage}: "
                f"{type(err).__name__}: {detail[0] if detail else ''}",
                stage=stage,
            ) from err
        finally:
            remote.close()

    answer = json.loads(answer_json)
    outputs = _ort_remote.decode_outputs(answer)
    max_abs_diff, check = check_outputs(
        outputs, reference, atol, rtol, f"{device.name} ({server})", runtime="onnxruntime"
    )
    metadata = {
        "runtime": "onnxruntime",
        "onnxruntime_version": answer.get("onnxruntime_version"),
        "torch_version": torch.__version__,
        "threads": device.threads,
        "runtime_threads": answer.get("threads"),
        "providers": answer.get("providers"),
        "machine": answer.get("machine"),
        "governor": governor,
        "device": device.to_dict(),
        "server": server,
        "emulated": device.emulated,
        "input_shape": list(x_np.shape),
        "check": {"atol": atol, "rtol": rtol, **check},
        "protocol": f"3 warm-up runs, {repeats} repeats of >= {min_repeat_ms:g} ms, median",
        "host": platform.node(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "export_s": round(export_s, 3),
    }
    stats = _stats_ms([t / 1e3 for t in answer["times_ms"]])
    kernel_profile = None
    if network is not None:
        from archkit.device._kernel_times import ort_kernel_times

        profiled = answer.get("profile")
        if not profiled:
            raise MeasurementError(
                f"`archkit serve` at {server} returned no onnxruntime profile (an older "
                "archkit on the board? update it there)",
                stage="profile",
            )
        kernel_profile = KernelProfile(
            ort_kernel_times(profiled["events"], profiled["warmup_runs"], owners, network),
            profiled["run_ms"], stats["median_ms"], "onnxruntime profiler",
        )  # fmt: skip
    result = LatencyResult(
        name=name,
        device=device.name,
        **stats,
        max_abs_diff=max_abs_diff,
        emulated=device.emulated,
        repeats=repeats,
        number=int(answer["number"]),
        metadata=metadata,
        kernel_profile=kernel_profile,
    )
    event("done", server=server, median_ms=result.median_ms)
    return result
