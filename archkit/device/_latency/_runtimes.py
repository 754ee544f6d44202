"""Time whole networks on a runtime, end to end and per kernel, under one :class:`TimingProtocol`.

- ``onnxruntime``: in-process on this machine (the ONNX file :func:`archkit.build.export_onnx`
  writes, CPU execution provider, ``intra_op_num_threads`` = the device's threads). Per-kernel
  times come from onnxruntime's own profiler (``SessionOptions.enable_profiling``) in a second
  session; the exporter records each ONNX node's module path (``blocks.7.depthwise``), which
  names the archkit node its kernel belongs to.
- ``tvm``: compiled as ``archkit profile --device`` compiles it (``torch.export`` -> Relax,
  BatchNorm folded, ``tvm.compile``; with the device's tuning records where the database has
  them), run in a local Relax VM with the device's thread count. Per-kernel times come from
  ``VirtualMachine.set_instrument`` (TVM 0.27 removed the VM profiler): a callback before and
  after every call instruction of a whole-network run.

End-to-end times of a group of networks are taken round-robin (see :class:`TimingProtocol`),
with onnxruntime and a local device together with :data:`PROBE`, a fixed network whose time
says whether the whole machine was slow while the group was timed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archkit.device._errors import MeasurementError
from archkit.device._kernel_times import attribute_tvm_calls, onnx_output_owners, ort_kernel_times
from archkit.device._latency._conditions import (
    UNTUNED,
    TimingProtocol,
    probe_reference,
    tuning_label,
)
from archkit.device._ort_remote import instrumented_runs

#: The attribution's old name here (tests call it): one home, ``_kernel_times``.
_attribute_tvm_calls = attribute_tvm_calls

__all__ = [
    "PROBE",
    "PROBE_BASELINES",
    "Measured",
    "ProbeBaselines",
    "count_tuning_records",
    "measure_group",
    "probe_key",
    "probe_spec",
    "tuning_database_dir",
    "tuning_state",
]

@dataclass
class Measured:
    """One network measured once.

    Attributes:
        e2e_ms: End-to-end latency (the protocol's statistic over its repeats, divided by the
            probe ratio with ``probe_normalize``).
        repeats_ms: Every timed repeat (ms per run, as timed).
        raw_ms: The statistic as timed (before dividing by the probe ratio).
        kernels_us: ``"<block>:<node>" -> us`` from the profiled runs (None when not profiled);
            the key ``network`` holds time no node owns.
        seconds: Wall time this network took to prepare and measure.
        rounds_ms: With ``rounds`` > 1, the statistic of each separate timing round (the first
            is ``e2e_ms``); later rounds start after the whole group's earlier rounds and
            its profiled runs, each with its own warm-up.
        server: The board's RPC server (``host:port``) when measured over RPC.
        probe_ms: The probe's time in the group's kept timing (None: no probe).
        probe_ratio: ``probe_ms`` over the probe's baseline under these conditions (the lower
            quartile of its times, :class:`ProbeBaselines`).
        timings: How many times the group was timed (more than 1: its probe was slow).
        again: The second timing round (``rounds`` > 1 on a local device) as a measurement of
            its own, with its own probe time (what a noise floor compares ``e2e_ms`` with).
    """

    e2e_ms: float
    repeats_ms: list[float]
    raw_ms: float | None = None
    kernels_us: dict[str, float] | None = None
    rounds_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    server: str | None = None
    probe_ms: float | None = None
    probe_ratio: float | None = None
    timings: int = 1
    again: Measured | None = None


class _Prepared:
    """A network ready to run: ``run()`` once; ``profile()`` returns per-kernel times."""

    def __init__(self, run: Callable[[], Any], profile: Callable[[], dict[str, float]] | None,
                 close: Callable[[], None] | None = None) -> None:
        self.run = run
        self.profile = profile
        self.close = close or (lambda: None)


_MODEL_LOCK = threading.Lock()


def _model(spec: Any) -> Any:
    import torch

    from archkit.build import build_model, calibrate_batchnorm

    # Latency does not depend on the weights; calibrated BatchNorm keeps every value far from
    # denormals, which some CPUs run much slower. Seeded weights: a library compiled in a
    # worker process (_compiling) is the one this process would have compiled (the lock:
    # the seed is torch's global generator, which farm threads share).
    with _MODEL_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return calibrate_batchnorm(build_model(spec), spec)


# ---------------------------------------------------------------- onnxruntime

def _ort_options(threads: int, protocol: TimingProtocol, profile_prefix: str | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning",
                                     "1" if protocol.spinning else "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def exported_onnx(spec: Any, folder: Path | None, tmp: Path, exporter: str = "dynamo") -> Path:
    """``spec``'s ONNX file (of :func:`_model`'s seeded, calibrated model), exported ahead
    into ``folder`` by a worker, or exported now (into ``folder``, or ``tmp`` without one),
    by ``exporter`` (:attr:`TimingProtocol.onnx_exporter`; a network the TorchScript-based
    exporter fails on is exported by torch.export).

    Exporting by torch.export takes about 5 s per network here (``torch.export``,
    decompositions, the ONNX translation and its optimizer: about 85% of an onnxruntime
    build's time), by the TorchScript-based exporter about 0.4 s, on one core; it is not
    timing-sensitive, so it runs ahead, on every core
    (:func:`~archkit.device._latency._compiling.compile_ahead`), before the timing.
    """
    from archkit.build import export_onnx
    from archkit.device._latency._kernels import network_fingerprint
    from archkit.ops import lower

    name = f"{network_fingerprint(lower(spec))}.onnx"
    if folder is not None and (folder / name).is_file():
        return folder / name
    if folder is not None:
        from archkit.device._latency._compiling import check_not_timed_out

        check_not_timed_out(folder / name)
    target = (folder or tmp) / name
    # (a name of its own: another thread or a worker may write the same file)
    partial = target.with_suffix(f".{os.getpid()}-{threading.get_ident()}.partial.onnx")
    model = _model(spec)
    try:
        export_onnx(spec, partial, model=model, dynamo=exporter == "dynamo")
    except Exception:  # noqa: BLE001 - an operator the TorchScript exporter lacks
        if exporter == "dynamo":
            raise
        export_onnx(spec, partial, model=model)
    partial.replace(target)
    return target


def _prepare_onnxruntime(spec: Any, threads: int, protocol: TimingProtocol, kernels: bool,
                         tmp: Path, folder: Path | None = None) -> _Prepared:
    import numpy as np
    import onnxruntime as ort

    from archkit.build import example_input
    from archkit.ops import lower

    path = exported_onnx(spec, folder, tmp, protocol.onnx_exporter)
    feed = {"input": example_input(spec).numpy().astype(np.float32)}
    session = ort.InferenceSession(str(path), _ort_options(threads, protocol),
                                   providers=["CPUExecutionProvider"])

    def profile() -> dict[str, float]:
        profiled = ort.InferenceSession(
            str(path), _ort_options(threads, protocol, str(tmp / "profile")),
            providers=["CPUExecutionProvider"],
        )
        for _ in range(protocol.warmup_runs + protocol.profile_runs):
            profiled.run(None, feed)
        events = json.loads(Path(profiled.end_profiling()).read_text())
        return ort_kernel_times(events, protocol.warmup_runs, onnx_output_owners(path),
                                lower(spec))

    return _Prepared(lambda: session.run(None, feed), profile if kernels else None)


# ---------------------------------------------------------------- tvm


def tuning_database_dir(device: Any) -> Path:
    """The device's MetaSchedule database folder (imports tvm for a ``host`` target)."""
    from archkit.device import database_dir

    return database_dir(device, device.target_dict(), None)


def count_tuning_records(folder: str | Path | None) -> int:
    """Records in a MetaSchedule JSON database folder (one per line), without importing tvm."""
    if folder is None:
        return 0
    path = Path(folder) / "database_tuning_record.json"
    try:
        with path.open() as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def tuning_state(folder: Path) -> tuple[str, Any]:
    """``(tuning_label(records), database or None)`` for a tuning database folder.

    Opening the database tunes nothing; a compile with it applies the records it has (layers
    without a record compile with TVM's default schedules, their outer loops parallel).
    """
    records = count_tuning_records(folder)
    if not records:
        return UNTUNED, None
    from tvm.s_tir import meta_schedule as ms

    return tuning_label(records), ms.database.JSONDatabase(work_dir=str(folder))


def compiled_library(spec: Any, device: Any, database: Any, folder: Path | None,
                     tmp: Path) -> Path:
    """Compile ``spec`` for ``device`` into a shared library, or reuse one compiled before.

    Compiling takes about 5 s per network here (one core) and is not timing-sensitive, so it
    runs ahead, on every core (:func:`~archkit.device._latency._compiling.compile_ahead`),
    before the timing. ``folder`` is specific to the device, target, TVM version and tuning
    state; None compiles to ``tmp``.
    """
    from archkit.build import example_input
    from archkit.device import _compile
    from archkit.device._latency._kernels import network_fingerprint
    from archkit.ops import lower

    name = f"{network_fingerprint(lower(spec))}.so"
    if folder is not None and (folder / name).is_file():
        return folder / name
    if folder is not None:
        from archkit.device._latency._compiling import check_not_timed_out

        check_not_timed_out(folder / name)
    program = _compile.to_relax(_model(spec), example_input(spec))
    executable = _compile.build(program, device.target_dict(), database)
    target = (folder or tmp) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    # (a name of its own: another thread or a compile worker may write the same library)
    partial = target.with_suffix(f".{os.getpid()}-{threading.get_ident()}.partial.so")
    _compile.export_library(executable, partial, device)
    partial.replace(target)
    return target


def _prepare_tvm(spec: Any, device: Any, protocol: TimingProtocol, kernels: bool, database: Any,
                 tmp: Path, folder: Path | None) -> _Prepared:
    import tvm
    from tvm import relax

    from archkit.build import example_input
    from archkit.ops import lower

    x = example_input(spec)
    library = tvm.runtime.load_module(str(compiled_library(spec, device, database, folder, tmp)))
    network = lower(spec)
    dev = tvm.cpu()
    vm = relax.VirtualMachine(library, dev)
    vm.set_input("main", tvm.runtime.tensor(x.numpy(), dev))

    def profile() -> dict[str, float]:
        calls = instrumented_runs(vm, protocol.profile_runs, warmup=0)["calls"]
        return attribute_tvm_calls(calls, network)

    return _Prepared(lambda: vm.invoke_stateful("main"), profile if kernels else None)


# ---------------------------------------------------------------- the probe

#: The probe of :attr:`TimingProtocol.probe_tolerance`: MobileNetV2 at width 0.5 and
#: resolution 128 (0.65 ms at 2 threads here, a small part of a group's time), made of the
#: kernels the networks it watches are made of.
PROBE = {"spec": "mobilenetv2", "width": 0.5, "resolution": 128}


def probe_spec() -> Any:
    """The spec of :data:`PROBE`."""
    from archkit._data import shipped_file
    from archkit.spec import apply_overrides, load_spec

    base = load_spec(shipped_file("specs", PROBE["spec"]))
    return apply_overrides(base, width=PROBE["width"], resolution=PROBE["resolution"])


class ProbeBaselines:
    """Per device, thread count and spinning: every time the probe took (ms) in this process
    or in the measurements it was seeded with (a resumed build's file, the file of the model
    being evaluated), and from them its baseline: the lower quartile. Not the fastest: the
    fastest of hundreds of timings sits below the probe's usual time (here 0.614 ms against
    0.63-0.67 ms outside spells), and a tolerance over it flags ordinary timings too."""

    def __init__(self) -> None:
        self._times: dict[tuple, list[float]] = {}
        self._lock = threading.Lock()

    def seed(self, key: tuple, times_ms: Any) -> None:
        """Take earlier probe times under the same conditions into account."""
        times = [t for t in times_ms if t]
        with self._lock:
            self._times.setdefault(key, []).extend(times)

    def ratio(self, key: tuple, probe_ms: float) -> float:
        """``probe_ms`` over the baseline, ``probe_ms`` counted in first."""
        with self._lock:
            times = self._times.setdefault(key, [])
            times.append(probe_ms)
            baseline = probe_reference(times)
        return probe_ms / baseline

    def forget(self, key: tuple) -> None:
        with self._lock:
            self._times.pop(key, None)


#: This process's probe baselines.
PROBE_BASELINES = ProbeBaselines()


def probe_key(device: Any, protocol: TimingProtocol, runtime: str) -> tuple:
    """What a probe baseline is kept per: the device, the runtime and what changes the probe's
    time."""
    return (device.name, runtime, device.threads, protocol.spinning)


#: The probe's ONNX file's bytes, once read (an export takes seconds: once per process).
_PROBE_ONNX: dict[str, bytes] = {}


def _probe_onnx(folder: Path | None = None, exporter: str = "dynamo") -> bytes:
    """The probe exported to ONNX by ``exporter`` (into ``folder`` if a worker has not
    already), once per process."""
    with _MODEL_LOCK:
        if exporter in _PROBE_ONNX:
            return _PROBE_ONNX[exporter]
    with tempfile.TemporaryDirectory(prefix="archkit-probe-") as tmp:
        data = exported_onnx(probe_spec(), folder, Path(tmp), exporter).read_bytes()
    with _MODEL_LOCK:
        _PROBE_ONNX[exporter] = data
    return data


def _prepare_probe(threads: int, protocol: TimingProtocol,
                   folder: Path | None = None) -> _Prepared:
    import numpy as np
    import onnxruntime as ort

    from archkit.build import example_input

    feed = {"input": example_input(probe_spec()).numpy().astype(np.float32)}
    session = ort.InferenceSession(_probe_onnx(folder, protocol.onnx_exporter),
                                   _ort_options(threads, protocol),
                                   providers=["CPUExecutionProvider"])
    return _Prepared(lambda: session.run(None, feed), None)


@functools.lru_cache(maxsize=1)
def _probe_library_dir() -> Path:
    """Where the TVM probe is compiled when the caller keeps no library folder: once per
    process."""
    return Path(tempfile.mkdtemp(prefix="archkit-probe-"))


def _prepare_tvm_probe(device: Any, protocol: TimingProtocol, database: Any, tmp: Path,
                       folder: Path | None) -> _Prepared:
    """The probe compiled as the networks it watches are (same target, same tuning records),
    its library kept with theirs."""
    return _prepare_tvm(probe_spec(), device, protocol, False, database, tmp,
                        folder if folder is not None else _probe_library_dir())


def _time_watched(prepared: list[_Prepared], probe: _Prepared | None, key: tuple,
                  protocol: TimingProtocol) -> tuple[list[list[float]], float | None,
                                                     float | None, int]:
    """:func:`_time_group` with the probe as one more member, the group timed again (after
    ``probe_pause_s``) while the probe runs more than ``probe_tolerance`` slower than its
    baseline, at most ``probe_retries`` more times. Returns the kept samples, the probe's time
    and ratio in them, and how many timings were taken."""
    if probe is None or protocol.probe_tolerance is None:
        return _time_group(prepared, protocol), None, None, 1
    timings = 0
    while True:
        if timings:
            time.sleep(protocol.probe_pause_s)
        samples = _time_group([probe, *prepared], protocol)
        timings += 1
        probe_ms = statistics.median(samples.pop(0))
        ratio = PROBE_BASELINES.ratio(key, probe_ms)
        if ratio <= 1.0 + protocol.probe_tolerance or timings > protocol.probe_retries:
            return samples, probe_ms, ratio, timings


# ---------------------------------------------------------------- shared protocol


def _time_group(prepared: list[_Prepared], protocol: TimingProtocol) -> list[list[float]]:
    """Per network, ``repeats`` times in ms per run, taken round-robin over the group."""
    numbers = []
    for p in prepared:
        for _ in range(protocol.warmup_runs):
            p.run()
        start = time.perf_counter()
        p.run()
        once = max(time.perf_counter() - start, 1e-6)
        numbers.append(max(1, int(protocol.min_repeat_ms / 1e3 / once + 0.999)))
    samples: list[list[float]] = [[] for _ in prepared]
    for _ in range(protocol.repeats):
        for i, p in enumerate(prepared):
            p.run()  # one untimed run after switching networks: caches hold the last one's
            start = time.perf_counter()
            for _ in range(numbers[i]):
                p.run()
            samples[i].append((time.perf_counter() - start) / numbers[i] * 1e3)
    return samples


def _configure_tvm_threads(threads: int) -> None:
    import tvm

    configure = tvm.get_global_func("runtime.config_threadpool")
    configure(-3, threads, [str(i) for i in range(threads)])


def measure_group(specs: list[Any], device: Any, runtime: str, protocol: TimingProtocol, *,
                  kernels: bool, database: Any = None, rounds: int = 1,
                  compiled_dir: Path | None = None,
                  upcoming: list[Any] | None = None) -> list[Measured | MeasurementError]:
    """Measure a group of networks (end to end interleaved; per kernel if ``kernels``).

    Args:
        specs: The networks.
        device: A local :class:`~archkit.device.DeviceProfile`.
        runtime: ``onnxruntime`` or ``tvm``.
        protocol: The timing protocol.
        kernels: Also take per-kernel times (profiled runs).
        database: TVM tuning database to compile with (from :func:`tuning_state`).
        rounds: Separate end-to-end timing rounds (2 for a noise floor).
        compiled_dir: Folder of compiled libraries (``onnxruntime``: exported ONNX files) to
            reuse and add to; None: TVM compiles into the group's temporary folder, ONNX
            files are exported ahead into a temporary folder of their own.
        upcoming: The next group's networks (with ``compiled_dir``): some are compiled
            (exported) ahead with this group's, to keep every core busy
            (:func:`~archkit.device._latency._compiling.compile_ahead`).

    Returns:
        One :class:`Measured` (or the :class:`MeasurementError` it failed with) per spec.
        Each one's ``seconds`` includes its share of the group's compiling.
    """
    # Every core compiles the missing libraries (exports the ONNX files) first; the timing
    # runs after, alone.
    from archkit.device._latency._compiling import compile_ahead

    with contextlib.ExitStack() as stack:
        if runtime == "onnxruntime":
            if compiled_dir is None:
                upcoming = None  # (exported into a folder gone with this group)
                compiled_dir = Path(stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="archkit-onnx-")))
            # The probe's too, the first time (this process exports it once; a board's
            # group is timed without it).
            probe_missing = (protocol.onnx_exporter not in _PROBE_ONNX
                             and protocol.probe_tolerance is not None and not device.is_remote)
            ahead = [*specs, probe_spec()] if probe_missing else specs
            compile_s = compile_ahead(ahead, device, None, compiled_dir, runtime,
                                      upcoming or (), protocol.onnx_exporter)
        else:
            compile_s = compile_ahead(specs, device, database, compiled_dir,
                                      upcoming=upcoming or ())
        results = _measure_group(specs, device, runtime, protocol, kernels=kernels,
                                 database=database, rounds=rounds, compiled_dir=compiled_dir)
    measured = [result for result in results if isinstance(result, Measured)]
    for result in measured:  # (a failed network's share too: the records add up to wall time)
        result.seconds += compile_s / len(measured)
    return results


def _measure_group(specs: list[Any], device: Any, runtime: str, protocol: TimingProtocol, *,
                   kernels: bool, database: Any, rounds: int,
                   compiled_dir: Path | None) -> list[Measured | MeasurementError]:
    if device.is_remote:
        from archkit.device._latency._remote import measure_group_remote

        with tempfile.TemporaryDirectory(prefix="archkit-latency-") as tmp:
            return measure_group_remote(specs, device, runtime, protocol, kernels=kernels,
                                        database=database, rounds=rounds,
                                        compiled_dir=compiled_dir, tmp=Path(tmp))

    def work() -> list[Measured | MeasurementError]:
        with tempfile.TemporaryDirectory(prefix="archkit-latency-") as tmp_root:
            slots: list[_Prepared | MeasurementError] = []
            seconds: list[float] = []
            if runtime == "tvm":
                _configure_tvm_threads(device.threads)
            for i, spec in enumerate(specs):
                tmp = Path(tmp_root) / str(i)
                tmp.mkdir()
                start = time.perf_counter()
                try:
                    if runtime == "onnxruntime":
                        slots.append(_prepare_onnxruntime(spec, device.threads, protocol,
                                                          kernels, tmp, compiled_dir))
                    else:
                        slots.append(_prepare_tvm(spec, device, protocol, kernels, database, tmp,
                                                  compiled_dir))
                except MeasurementError as err:
                    slots.append(err)
                except Exception as err:  # noqa: BLE001 - one network must not stop a build
                    slots.append(MeasurementError(f"{type(err).__name__}: {err}",
                                                  job=spec.name, stage="compile"))
                seconds.append(time.perf_counter() - start)
            ready = [s for s in slots if isinstance(s, _Prepared)]
            probe = None
            if ready and protocol.probe_tolerance is not None:
                if runtime == "onnxruntime":
                    probe = _prepare_probe(device.threads, protocol, compiled_dir)
                else:
                    (Path(tmp_root) / "probe").mkdir()
                    probe = _prepare_tvm_probe(device, protocol, database,
                                               Path(tmp_root) / "probe", compiled_dir)
            key = probe_key(device, protocol, runtime)
            start = time.perf_counter()
            first, probe_ms, probe_ratio, timings = (
                _time_watched(ready, probe, key, protocol) if ready else ([], None, None, 0))
            timing_share = (time.perf_counter() - start) / max(1, len(ready))
            profiles = []
            for slot in ready:
                start = time.perf_counter()
                profiles.append(slot.profile() if slot.profile is not None else None)
                seconds_profile = time.perf_counter() - start
                profiles[-1] = (profiles[-1], seconds_profile)
            later = ([_time_watched(ready, probe, key, protocol) for _ in range(rounds - 1)]
                     if ready else [])

            def statistic(samples: list[float], ratio: float | None) -> float:
                value = statistics.median(samples)
                return value / ratio if protocol.probe_normalize and ratio else value

            out: list[Measured | MeasurementError] = []
            position = 0
            for slot, prep_s in zip(slots, seconds, strict=True):
                if isinstance(slot, MeasurementError):
                    out.append(slot)
                    continue
                repeats = first[position]
                kernel_times, profile_s = profiles[position]
                e2e = statistic(repeats, probe_ratio)
                again = None
                if later:
                    samples, again_probe_ms, again_ratio, again_timings = later[0]
                    again = Measured(
                        e2e_ms=statistic(samples[position], again_ratio),
                        repeats_ms=samples[position],
                        raw_ms=statistics.median(samples[position]),
                        probe_ms=again_probe_ms,
                        probe_ratio=again_ratio,
                        timings=again_timings,
                    )
                out.append(Measured(
                    e2e_ms=e2e,
                    repeats_ms=repeats,
                    raw_ms=statistics.median(repeats),
                    kernels_us=kernel_times,
                    seconds=prep_s + timing_share * rounds + profile_s,
                    rounds_ms=[e2e, *(statistic(r[0][position], r[2]) for r in later)],
                    probe_ms=probe_ms,
                    probe_ratio=probe_ratio,
                    timings=timings,
                    again=again,
                ))
                slot.close()
                position += 1
            return out

    if runtime == "tvm":
        if protocol.tvm_spin_count is not None:
            # Read by TVM once per process, when its thread pool first runs.
            os.environ["TVM_THREAD_POOL_SPIN_COUNT"] = str(protocol.tvm_spin_count)
        # TVM's thread pools are thread-local: a fresh thread gets one sized as configured.
        from archkit.device._threads import call_in_thread

        return call_in_thread(work, "latency-measure")
    return work()
