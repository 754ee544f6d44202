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

End-to-end times of a group of networks are taken round-robin (see :class:`TimingProtocol`).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archkit.device._errors import DeviceError, MeasurementError
from archkit.device._latency._conditions import TimingProtocol

__all__ = [
    "Measured",
    "count_tuning_records",
    "measure_group",
    "tuning_database_dir",
    "tuning_state",
]

#: Time attributed to no node of the network (layout reorders, VM bookkeeping).
NETWORK = "network"


@dataclass
class Measured:
    """One network measured once.

    Attributes:
        e2e_ms: End-to-end latency (the protocol's statistic over its repeats).
        repeats_ms: Every timed repeat (ms per run).
        kernels_us: ``"<block>:<node>" -> us`` from the profiled runs (None when not profiled);
            the key ``network`` holds time no node owns.
        seconds: Wall time this network took to prepare and measure.
        rounds_ms: With ``rounds`` > 1, the statistic of each separate timing round (the first
            is ``e2e_ms``); later rounds start after the whole group's earlier rounds and
            its profiled runs, each with its own warm-up.
    """

    e2e_ms: float
    repeats_ms: list[float]
    kernels_us: dict[str, float] | None = None
    rounds_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0


class _Prepared:
    """A network ready to run: ``run()`` once; ``profile()`` returns per-kernel times."""

    def __init__(self, run: Callable[[], Any], profile: Callable[[], dict[str, float]] | None,
                 close: Callable[[], None] | None = None) -> None:
        self.run = run
        self.profile = profile
        self.close = close or (lambda: None)


def _model(spec: Any) -> Any:
    from archkit.build import build_model, calibrate_batchnorm

    # Latency does not depend on the weights; calibrated BatchNorm keeps every value far from
    # denormals, which some CPUs run much slower.
    return calibrate_batchnorm(build_model(spec), spec)


# ---------------------------------------------------------------- onnxruntime

_ORT_NODE = re.compile(r"^/blocks/blocks\.(\d+)/([^/]+)/")


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


def _onnx_output_owners(path: Path) -> dict[str, str]:
    """ONNX node or tensor name -> ``"<block>:<node>"`` of the archkit node that computes it.

    The exporter records each ONNX node's module path (``pkg.torch.onnx.name_scopes``:
    ``['', 'blocks', 'blocks.7', 'blocks.7.depthwise', ...]``); the block module's child is the
    archkit node (modules are named after nodes).
    """
    import onnx

    owners: dict[str, str] = {}
    model = onnx.load(str(path), load_external_data=False)
    for node in model.graph.node:
        scopes = next((json.loads(p.value.replace("'", '"')) for p in node.metadata_props
                       if p.key == "pkg.torch.onnx.name_scopes"), None)
        key = None
        for scope in scopes or ():
            parts = scope.split(".")
            if len(parts) >= 3 and parts[0] == "blocks" and parts[1].isdigit():
                key = f"{parts[1]}:{parts[2]}"
                break
        if key is None:
            match = _ORT_NODE.match(node.name)  # the TorchScript exporter's node names
            key = f"{match.group(1)}:{match.group(2)}" if match else None
        if key is not None:
            # onnxruntime names a kernel after its node, or (a node its layout pass rewrote)
            # after the node's output with an ``_nchwc`` suffix.
            for name in (node.name, *node.output):
                owners[name] = key
    return owners


def _conv_owner(key: str, network: Any) -> str:
    """A convolution kernel attributed to a non-conv node (onnxruntime fuses a residual add
    into the convolution before it and names the kernel after the add): the conv feeding it."""
    block_index, name = key.split(":", 1)
    block = network.blocks[int(block_index)]
    nodes = {n.name: n for n in block.nodes}
    node = nodes.get(name)
    if node is None or node.prim == "conv":
        return key
    feeding = [i for i in node.inputs if i in nodes and nodes[i].prim == "conv"]
    return f"{block_index}:{feeding[-1]}" if feeding else key


def _ort_kernel_times(profile_file: str, warmup_runs: int, owners: dict[str, str],
                      network: Any) -> dict[str, float]:
    """Per archkit node: the median over profiled runs of the summed kernel times (us)."""
    events = json.loads(Path(profile_file).read_text())
    per_node: dict[str, list[float]] = {}
    op_of: dict[str, str] = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        per_node.setdefault(event["name"], []).append(float(event["dur"]))
        op_of[event["name"]] = event.get("args", {}).get("op_name", "")
    out: dict[str, float] = {}
    for name, durations in per_node.items():
        timed = durations[warmup_runs:] or durations
        base = name[: -len("_kernel_time")]
        base = base[: -len("_nchwc")] if base.endswith("_nchwc") else base
        key = owners.get(base)
        if key is None:
            match = _ORT_NODE.match(name)
            key = f"{match.group(1)}:{match.group(2)}" if match else NETWORK
        if key != NETWORK and "Conv" in op_of[name]:
            key = _conv_owner(key, network)
        out[key] = out.get(key, 0.0) + statistics.median(timed)
    return out


def _prepare_onnxruntime(spec: Any, threads: int, protocol: TimingProtocol, kernels: bool,
                         tmp: Path) -> _Prepared:
    import numpy as np
    import onnxruntime as ort

    from archkit.build import example_input, export_onnx
    from archkit.ops import lower

    path = export_onnx(spec, tmp / "model.onnx", model=_model(spec))
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
        return _ort_kernel_times(profiled.end_profiling(), protocol.warmup_runs,
                                 _onnx_output_owners(path), lower(spec))

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
    """``("untuned" | "tuned:<records>", database or None)`` for a tuning database folder.

    Opening the database tunes nothing; a compile with it applies the records it has (layers
    without a record compile with TVM's default schedules).
    """
    records = count_tuning_records(folder)
    if not records:
        return "untuned", None
    from tvm.s_tir import meta_schedule as ms

    return f"tuned:{records}", ms.database.JSONDatabase(work_dir=str(folder))


def _weight_key(node: Any) -> tuple[int, ...]:
    x = node.in_shapes[0]
    k = node.attrs["kernel"]
    return (node.out_shape.channels, x.channels // node.attrs["groups"], k, k)


def _attribute_tvm_calls(calls: list[tuple[str, float, list[tuple[int, ...]]]],
                         network: Any) -> dict[str, float]:
    """Give every VM call's time to the archkit node it computes.

    A ``conv2d*`` call starts the next conv node whose weight shape it has; ``matmul`` starts the
    next linear node; ``mean``/pooling the next pool node; an add of two full tensors the next
    add node. Every other call (bias adds, clips, reshapes) belongs to the node running before
    it, and ``vm.builtin.*`` calls (allocation, shape checks) to the network.
    """
    order = [(block.index, node) for block in network.blocks for node in block.nodes]
    out: dict[str, float] = {}
    position, current = 0, NETWORK

    def find(accept: Callable[[Any], bool]) -> str | None:
        nonlocal position
        for i in range(position, len(order)):
            index, node = order[i]
            if accept(node):
                position = i + 1
                return f"{index}:{node.name}"
        return None

    for name, seconds, shapes in calls:
        key = current
        if name.startswith("vm.builtin") or name.startswith("vm."):
            key = NETWORK
        elif name.startswith("conv2d") and len(shapes) >= 2:
            weight = tuple(shapes[1])
            found = find(lambda n, w=weight: n.prim == "conv" and _weight_key(n) == w)
            key = current = found or current
        elif name.startswith(("matmul", "dense")):
            key = current = find(lambda n: n.prim == "linear") or current
        elif name.startswith(("mean", "avg_pool", "max_pool", "adaptive")):
            key = current = find(lambda n: n.prim.endswith("pool")) or current
        elif (name.startswith("add") and len(shapes) >= 2 and len(shapes[0]) == 4
              and tuple(shapes[0]) == tuple(shapes[1])):
            key = current = find(lambda n: n.prim == "add") or current
        out[key] = out.get(key, 0.0) + seconds * 1e6
    return out


def compiled_library(spec: Any, device: Any, database: Any, folder: Path | None,
                     tmp: Path) -> Path:
    """Compile ``spec`` for ``device`` into a shared library, or reuse one compiled before.

    Compiling takes about a minute per network here and is not timing-sensitive, so it can run
    ahead (``prepare_tvm_libraries``) while the timing waits for a quiet machine. ``folder``
    is specific to the device, target, TVM version and tuning state; None compiles to ``tmp``.
    """
    from archkit.build import example_input
    from archkit.device import _compile
    from archkit.device._latency._kernels import network_fingerprint
    from archkit.ops import lower

    name = f"{network_fingerprint(lower(spec))}.so"
    if folder is not None and (folder / name).is_file():
        return folder / name
    program = _compile.to_relax(_model(spec), example_input(spec))
    executable = _compile.build(program, device.target_dict(), database)
    target = (folder or tmp) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.so")
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
        runs: list[list[tuple[str, float, list[tuple[int, ...]]]]] = []

        def instrument(func: Any, name: str, before: bool, ret: Any, *args: Any) -> int:
            if before:
                shapes = [tuple(a.shape) for a in args if hasattr(a, "shape")]
                runs[-1].append((str(name), time.perf_counter(), shapes))
            else:
                name_, start, shapes = runs[-1][-1]
                runs[-1][-1] = (name_, time.perf_counter() - start, shapes)
            return 0

        vm.set_instrument(instrument)
        try:
            for _ in range(protocol.profile_runs):
                runs.append([])
                vm.invoke_stateful("main")
        finally:
            vm.set_instrument(lambda *a: 0)
        # The median run, call by call (every run makes the same calls in the same order).
        merged = [
            (calls[0][0], statistics.median(c[1] for c in calls), calls[0][2])
            for calls in zip(*runs, strict=True)
        ]
        return _attribute_tvm_calls(merged, network)

    return _Prepared(lambda: vm.invoke_stateful("main"), profile if kernels else None)


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
                  compiled_dir: Path | None = None) -> list[Measured | MeasurementError]:
    """Measure a group of networks (end to end interleaved; per kernel if ``kernels``).

    Args:
        specs: The networks.
        device: A local :class:`~archkit.device.DeviceProfile`.
        runtime: ``onnxruntime`` or ``tvm``.
        protocol: The timing protocol.
        kernels: Also take per-kernel times (profiled runs).
        database: TVM tuning database to compile with (from :func:`tuning_state`).
        rounds: Separate end-to-end timing rounds (2 for a noise floor).
        compiled_dir: TVM: folder of compiled libraries to reuse (and add to).

    Returns:
        One :class:`Measured` (or the :class:`MeasurementError` it failed with) per spec.
    """
    if device.is_remote:
        raise DeviceError(
            f"latency models are built on a local device; {device.name!r} is reached over "
            f"{device.connection.describe()} (boards get onnxruntime with the device-runtime "
            "issue, and per-kernel TVM times need a local VM)"
        )

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
                                                          kernels, tmp))
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
            start = time.perf_counter()
            first = _time_group(ready, protocol) if ready else []
            timing_share = (time.perf_counter() - start) / max(1, len(ready))
            profiles = []
            for slot in ready:
                start = time.perf_counter()
                profiles.append(slot.profile() if slot.profile is not None else None)
                seconds_profile = time.perf_counter() - start
                profiles[-1] = (profiles[-1], seconds_profile)
            later = [_time_group(ready, protocol) for _ in range(rounds - 1)] if ready else []
            out: list[Measured | MeasurementError] = []
            position = 0
            for slot, prep_s in zip(slots, seconds, strict=True):
                if isinstance(slot, MeasurementError):
                    out.append(slot)
                    continue
                repeats = first[position]
                kernel_times, profile_s = profiles[position]
                e2e = statistics.median(repeats)
                out.append(Measured(
                    e2e_ms=e2e,
                    repeats_ms=repeats,
                    kernels_us=kernel_times,
                    seconds=prep_s + timing_share * rounds + profile_s,
                    rounds_ms=[e2e, *(statistics.median(r[position]) for r in later)],
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
