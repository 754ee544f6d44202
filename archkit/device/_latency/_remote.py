"""Measure a group of networks on a board over RPC: latency models built on boards and farms.

The protocol is the local one (:class:`TimingProtocol`): a fixed thread count, warm-up,
repeats of at least ``min_repeat_ms``, the median, and the repeats of a group taken
round-robin. What runs where:

- ``tvm``: the host compiles each network (:func:`compiled_library`, cached per device and
  tuning state) and uploads it; the board loads every module of the group, and each repeat is
  one call of TVM's time evaluator on the board (``number`` runs sized from the warm-up; the
  evaluator's own untimed first run is the run after switching networks that the local
  protocol takes), so the timing never crosses the network.
- ``onnxruntime``: ``archkit serve``'s timing function on the board, one network per call
  (its session lives for one call, so the repeats of a group cannot be interleaved).

Per-kernel times come from profiled runs on the board, after the first timing round, through
``archkit serve``'s functions (:mod:`archkit.device._ort_remote`: TVM's per-call profiler,
onnxruntime's profile events), attributed to archkit nodes on the host
(:mod:`archkit.device._kernel_times`), as for a local device.

Host-side work (export, compile) is serialised by one lock: with a farm, several boards
measure at once while the host compiles for the next one.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from archkit.device._errors import MeasurementError
from archkit.device._latency._conditions import TimingProtocol
from archkit.device._latency._runtimes import Measured

__all__ = ["measure_group_remote"]

#: Export and compile run one at a time on the host (they use every core already).
_HOST_WORK = threading.Lock()


def _on_host(specs: list[Any], make: Any,
             stage: str) -> tuple[list[Path | MeasurementError], list[float], list[int]]:
    """``make(i, spec)`` (export or compile) for every spec, one at a time on the host.

    Returns:
        The file of each spec (or the error it failed with), the seconds each took, and the
        indices of the specs that have a file.
    """
    slots: list[Path | MeasurementError] = []
    seconds: list[float] = []
    for i, spec in enumerate(specs):
        start = time.perf_counter()
        try:
            with _HOST_WORK:
                slots.append(Path(make(i, spec)))
        except Exception as err:  # noqa: BLE001 - one network must not stop a build
            slots.append(MeasurementError(f"{type(err).__name__}: {err}", job=spec.name,
                                          stage=stage))
        seconds.append(time.perf_counter() - start)
    return slots, seconds, [i for i, s in enumerate(slots) if isinstance(s, Path)]


def _open_board(device: Any, runtime: str, kernels: bool) -> Any:
    """A session on the board; a tracker's board is checked for archkit's functions first
    (a board that lacks them is a setup error, not a failed measurement)."""
    from archkit.device._connect import _check_session, open_remote

    remote = open_remote(device)
    if device.connection.kind == "tracker" and (kernels or runtime == "onnxruntime"):
        try:
            _check_session(device, remote.session, runtime, remote.server, kernels)
        except BaseException:
            remote.close()
            raise
    return remote


def _lost(err: BaseException, stage: str, server: str) -> MeasurementError:
    text = str(err).strip().splitlines()
    detail = text[0] if text else type(err).__name__
    return MeasurementError(f"lost the board (RPC server {server}) during {stage}: {detail}",
                            stage=stage)


def _tvm_group(specs: list[Any], device: Any, protocol: TimingProtocol, database: Any,
               compiled_dir: Path | None, tmp: Path, rounds: int,
               kernels: bool) -> list[Measured | MeasurementError]:
    import json

    import tvm
    from tvm import relax

    from archkit.build import example_input
    from archkit.device import _ort_remote
    from archkit.device._kernel_times import attribute_tvm_calls
    from archkit.device._latency._runtimes import compiled_library
    from archkit.device._measure import _configure_threads
    from archkit.ops import lower

    def compile_one(i: int, spec: Any) -> Path:
        folder = tmp / str(i)
        folder.mkdir(parents=True, exist_ok=True)
        return compiled_library(spec, device, database, compiled_dir, folder)

    slots, seconds, ready = _on_host(specs, compile_one, "compile")
    if not ready:
        return list(slots)  # type: ignore[arg-type]

    remote = _open_board(device, "tvm", kernels)
    stage = "upload"
    start = time.perf_counter()
    try:
        dev = remote.device()
        _configure_threads(remote, device.threads)
        vms = {}
        inputs = {i: example_input(specs[i]).numpy() for i in ready}
        for i in ready:
            vm = relax.VirtualMachine(remote.load_module(str(slots[i])), dev)
            vm.set_input("main", tvm.runtime.tensor(inputs[i], dev))
            vms[i] = vm
        inputs = {i: _ort_remote._npy_bytes(x) for i, x in inputs.items()}
        stage = "timing"
        numbers = {}
        for i, vm in vms.items():
            warm = vm.time_evaluator("invoke_stateful", dev, number=protocol.warmup_runs,
                                     repeat=1)("main").mean
            numbers[i] = max(1, math.ceil(protocol.min_repeat_ms / 1e3 / max(warm, 1e-6)))
        timers = {
            i: vm.time_evaluator("invoke_stateful", dev, number=numbers[i], repeat=1)
            for i, vm in vms.items()
        }
        taken: list[dict[int, list[float]]] = []
        profiles: dict[int, dict[str, float]] = {}
        for round_index in range(rounds):
            samples: dict[int, list[float]] = {i: [] for i in vms}
            for _ in range(protocol.repeats):
                for i, timer in timers.items():
                    samples[i].append(float(timer("main").mean) * 1e3)
            taken.append(samples)
            if kernels and round_index == 0:  # as locally: after the first round
                stage = "profile"
                profile = remote.get_function(_ort_remote.PROFILE_TVM_FUNC)
                config = json.dumps({"runs": protocol.profile_runs, "warmup": 1})
                for i in ready:
                    answer = json.loads(profile(slots[i].name, inputs[i], config))
                    profiles[i] = attribute_tvm_calls(answer["calls"], lower(specs[i]))
    except MeasurementError:
        raise
    except Exception as err:  # noqa: BLE001 - RPC errors come as many types
        raise _lost(err, stage, remote.server) from err
    finally:
        remote.close()
    return _assemble(specs, slots, seconds, taken, (time.perf_counter() - start) / len(ready),
                     remote.server, profiles)


def _ort_group(specs: list[Any], device: Any, protocol: TimingProtocol, exported: Path | None,
               tmp: Path, rounds: int, kernels: bool) -> list[Measured | MeasurementError]:
    import json

    from archkit.build import example_input
    from archkit.device import _ort_remote
    from archkit.device._kernel_times import onnx_output_owners, ort_kernel_times
    from archkit.device._latency._runtimes import exported_onnx
    from archkit.ops import lower

    slots, seconds, ready = _on_host(
        specs, lambda i, spec: exported_onnx(spec, exported, tmp, protocol.onnx_exporter),
        "export")
    if not ready:
        return list(slots)  # type: ignore[arg-type]

    settings = {
        "threads": device.threads, "repeats": protocol.repeats,
        "min_repeat_ms": protocol.min_repeat_ms, "warmup": protocol.warmup_runs,
        "spinning": protocol.spinning,
    }
    config = json.dumps(settings)
    profile_config = json.dumps({**settings, "profile_runs": protocol.profile_runs})
    remote = _open_board(device, "onnxruntime", kernels)
    stage = "upload"
    start = time.perf_counter()
    taken: list[dict[int, list[float]]] = []
    try:
        measure = remote.get_function(_ort_remote.MEASURE_FUNC)
        names = {i: remote.upload(str(slots[i])) for i in ready}
        inputs = {i: _ort_remote._npy_bytes(example_input(specs[i]).numpy()) for i in ready}
        stage = "timing"
        profiles: dict[int, dict[str, float]] = {}
        for round_index in range(rounds):
            answers = {}
            for i in ready:
                # The first round also profiles (in a second session, after the timing).
                profiled = kernels and round_index == 0
                answers[i] = json.loads(measure(names[i], inputs[i],
                                                profile_config if profiled else config))
                if profiled:
                    events = answers[i]["profile"]
                    profiles[i] = ort_kernel_times(events["events"], events["warmup_runs"],
                                                   onnx_output_owners(slots[i]), lower(specs[i]))
            taken.append({i: answer["times_ms"] for i, answer in answers.items()})
    except Exception as err:  # noqa: BLE001 - RPC errors come as many types
        raise _lost(err, stage, remote.server) from err
    finally:
        remote.close()
    return _assemble(specs, slots, seconds, taken, (time.perf_counter() - start) / len(ready),
                     remote.server, profiles)


def _assemble(specs: list[Any], slots: list[Any], seconds: list[float],
              taken: list[dict[int, list[float]]], share_s: float, server: str,
              profiles: dict[int, dict[str, float]]) -> list[Measured | MeasurementError]:
    out: list[Measured | MeasurementError] = []
    for i, slot in enumerate(slots):
        if isinstance(slot, MeasurementError):
            out.append(slot)
            continue
        repeats = [float(v) for v in taken[0][i]]
        out.append(Measured(
            e2e_ms=statistics.median(repeats),
            repeats_ms=repeats,
            kernels_us=profiles.get(i),
            rounds_ms=[statistics.median(r[i]) for r in taken],
            seconds=seconds[i] + share_s,
            server=server,
        ))
    return out


def measure_group_remote(specs: list[Any], device: Any, runtime: str, protocol: TimingProtocol,
                         *, kernels: bool, database: Any = None, rounds: int = 1,
                         compiled_dir: Path | None = None,
                         tmp: Path) -> list[Measured | MeasurementError]:
    """:func:`measure_group` for a device reached over RPC (``rpc``, or ``tracker``: the
    tracker hands this group a free board of the key). The board must run ``archkit serve``
    for onnxruntime and for per-kernel TVM times.

    Raises:
        MeasurementError: The board was lost (or its session could not be opened).
    """
    if runtime == "tvm":
        return _tvm_group(specs, device, protocol, database, compiled_dir, tmp, rounds, kernels)
    return _ort_group(specs, device, protocol, compiled_dir, tmp, rounds, kernels)
