"""Per-kernel times of a whole-network run, attributed to the archkit nodes that own them.

The one home of the attribution rules, used by ``archkit profile --device DEV --per-layer``
(:func:`archkit.device.measure_latency` / :func:`~archkit.device.measure_onnxruntime` with
``profile_runs``) and by the latency models' training runs (``_latency._runtimes``):

- TVM: every call instruction of a Relax VM run, timed by ``VirtualMachine.set_instrument``
  (``_ort_remote.instrumented_runs``, on the board through ``archkit serve``), is given to a
  node by :func:`attribute_tvm_calls`.
- onnxruntime: its profiler's per-node kernel events are given to nodes by the module path the
  exporter records for each ONNX node (:func:`onnx_output_owners`, :func:`ort_kernel_times`).

Keys are ``"<block>:<node>"`` (``cost_table(spec).layer_records``' ``block`` and ``node``);
:data:`NETWORK` holds time no node owns.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archkit.device._errors import MeasurementError

__all__ = [
    "DEFAULT_PROFILE_RUNS",
    "NETWORK",
    "KernelProfile",
    "attribute_tvm_calls",
    "onnx_output_owners",
    "ort_kernel_times",
]

#: Time attributed to no node of the network (layout reorders, VM bookkeeping).
NETWORK = "network"

#: Profiled whole-network runs per network for ``archkit profile --per-layer``.
DEFAULT_PROFILE_RUNS = 20


@dataclass(frozen=True)
class KernelProfile:
    """Measured time per node of one network, beside the uninstrumented time it must add up to.

    Profiling costs time of its own (TVM: a Python callback before and after each call;
    onnxruntime: an event record per kernel), so a profiled run is slower than a timed one.
    ``overhead_ms`` is that cost as measured: the profiled run's median wall time minus the
    uninstrumented median. The per-node times plus the :data:`NETWORK` share (``rows_ms``) add
    up to the uninstrumented median within that overhead (plus timing noise): the callbacks
    themselves fall between kernels (``outside_kernels_ms``), and what they disturb (caches,
    the thread pool waking up) lands in the kernels.

    Attributes:
        kernels_us: ``"<block>:<node>" -> us`` per run (each call's median over the profiled
            runs, summed per node); :data:`NETWORK`: calls no node owns (TVM's
            ``vm.builtin.*``: allocation, shape checks; onnxruntime: layout reorders).
        run_ms: Wall time of each profiled run, profiler included.
        e2e_ms: The uninstrumented median latency of the same network on the same device.
        source: How the times were taken (``tvm set_instrument``, ``onnxruntime profiler``).
    """

    kernels_us: dict[str, float]
    run_ms: list[float] = field(default_factory=list)
    e2e_ms: float = 0.0
    source: str = ""

    @property
    def runs(self) -> int:
        """Profiled runs counted."""
        return len(self.run_ms)

    @property
    def profiled_run_ms(self) -> float:
        """Median wall time of one profiled run."""
        return statistics.median(self.run_ms)

    @property
    def nodes_ms(self) -> float:
        """Time attributed to the network's nodes."""
        return sum(us for key, us in self.kernels_us.items() if key != NETWORK) / 1e3

    @property
    def network_ms(self) -> float:
        """Time of the calls no node owns."""
        return self.kernels_us.get(NETWORK, 0.0) / 1e3

    @property
    def rows_ms(self) -> float:
        """The sum of the per-row times (nodes and the network share)."""
        return self.nodes_ms + self.network_ms

    @property
    def outside_kernels_ms(self) -> float:
        """Time of a profiled run outside every timed call (the profiler, dispatch)."""
        return self.profiled_run_ms - self.rows_ms

    @property
    def overhead_ms(self) -> float:
        """What profiling costs: profiled run minus the uninstrumented median."""
        return self.profiled_run_ms - self.e2e_ms

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, with the derived figures."""
        return {
            "source": self.source,
            "runs": self.runs,
            "e2e_ms": self.e2e_ms,
            "profiled_run_ms": self.profiled_run_ms,
            "nodes_ms": self.nodes_ms,
            "network_ms": self.network_ms,
            "rows_ms": self.rows_ms,
            "outside_kernels_ms": self.outside_kernels_ms,
            "overhead_ms": self.overhead_ms,
            "overhead_rel": self.overhead_ms / self.e2e_ms if self.e2e_ms else None,
            "kernels_us": dict(self.kernels_us),
            "run_ms": list(self.run_ms),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KernelProfile:
        """Inverse of :meth:`to_dict` (derived figures are recomputed)."""
        return cls(dict(data["kernels_us"]), list(data["run_ms"]), float(data["e2e_ms"]),
                   str(data.get("source", "")))

    def per_layer(self, layers: Sequence[dict[str, Any]]) -> tuple[list[float], dict[int, float]]:
        """Measured time of each layer (us, 0 for a layer no kernel ran for: fused away) and of
        each stage row (ms), for ``cost_table(spec).layer_records``.

        Raises:
            MeasurementError: A measured key names no layer of the spec (the times were taken
                on another network).
        """
        index = {f"{row['block']}:{row['node']}": row for row in layers}
        unknown = sorted(key for key in self.kernels_us if key != NETWORK and key not in index)
        if unknown:
            raise MeasurementError(
                f"measured kernels of layers the spec does not have: {', '.join(unknown)} "
                f"(spec layers: {', '.join(list(index)[:5])}, ...)",
                stage="profile",
            )
        layer_us = [self.kernels_us.get(key, 0.0) for key in index]
        stage_ms: dict[int, float] = {}
        for row, us in zip(index.values(), layer_us, strict=True):
            stage_ms[row["stage"]] = stage_ms.get(row["stage"], 0.0) + us / 1e3
        return layer_us, stage_ms


# ---------------------------------------------------------------- tvm


def _weight_key(node: Any) -> tuple[int, ...]:
    x = node.in_shapes[0]
    k = node.attrs["kernel"]
    return (node.out_shape.channels, x.channels // node.attrs["groups"], k, k)


def attribute_tvm_calls(calls: Sequence[tuple[str, float, Sequence[Sequence[int]]]],
                        network: Any) -> dict[str, float]:
    """Give every VM call's time (seconds) to the archkit node it computes (us per node).

    A ``conv2d*`` call (``fused_conv2d*`` in a tuned build) starts the next conv node whose weight
    shape it has; ``matmul`` starts the
    next linear node; ``mean``/pooling the next pool node; an add of two full tensors the next
    add node, unless it is the bias add of the convolution just before it (its folded
    BatchNorm's; on a 1x1 feature map a bias has the shape of the activation). Every other call
    (bias adds, clips, reshapes) belongs to the node running before it, and ``vm.builtin.*``
    calls (allocation, shape checks) to the network.
    """
    order = [(block.index, node) for block in network.blocks for node in block.nodes]
    out: dict[str, float] = {}
    position, current = 0, NETWORK
    bias_due = False  # the last kernel was a conv whose bias add comes next

    def find(accept: Callable[[Any], bool]) -> tuple[str, Any] | None:
        nonlocal position
        for i in range(position, len(order)):
            index, node = order[i]
            if accept(node):
                position = i + 1
                return f"{index}:{node.name}", node
        return None

    for call, seconds, shapes in calls:
        key = current
        # A tuned build runs FuseOps/FuseTIR: ``fused_conv2d3_add2_tir_clip1`` is a conv with
        # its bias and clip (and a residual add, which the conv then owns, as onnxruntime's).
        name = call.removeprefix("fused_")
        if name.startswith("vm.builtin") or name.startswith("vm."):
            out[NETWORK] = out.get(NETWORK, 0.0) + seconds * 1e6
            continue
        if name.startswith("conv2d") and len(shapes) >= 2:
            weight = tuple(shapes[1])
            found = find(lambda n, w=weight: n.prim == "conv" and _weight_key(n) == w)
            bias_due = False
            if found is not None:
                current, node = found
                bias_due = bool(node.attrs.get("bn") or node.attrs.get("bias"))
            out[current] = out.get(current, 0.0) + seconds * 1e6
            continue
        if name.startswith(("matmul", "dense")):
            key = current = (find(lambda n: n.prim == "linear") or (current,))[0]
        elif name.startswith(("mean", "avg_pool", "max_pool", "adaptive")):
            key = current = (find(lambda n: n.prim.endswith("pool")) or (current,))[0]
        elif (name.startswith("add") and not bias_due and len(shapes) >= 2
              and len(shapes[0]) == 4 and tuple(shapes[0]) == tuple(shapes[1])):
            key = current = (find(lambda n: n.prim == "add") or (current,))[0]
        bias_due = False
        out[key] = out.get(key, 0.0) + seconds * 1e6
    return out


# ---------------------------------------------------------------- onnxruntime

_ORT_NODE = re.compile(r"^/blocks/blocks\.(\d+)/([^/]+)/")


def onnx_output_owners(path: Path) -> dict[str, str]:
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


def ort_kernel_times(events: Sequence[dict[str, Any]], warmup_runs: int, owners: dict[str, str],
                     network: Any) -> dict[str, float]:
    """Per archkit node: the median over profiled runs of the summed kernel times (us).

    ``events`` are onnxruntime's profile events (its JSON file), of ``warmup_runs`` runs that do
    not count and then the profiled ones; only the ``Node`` ``*_kernel_time`` events are read
    (``op_name`` either in ``args`` or, as ``_ort_remote`` sends them, at the top level).
    """
    per_node: dict[str, list[float]] = {}
    op_of: dict[str, str] = {}
    for event in events:
        if event.get("cat", "Node") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        per_node.setdefault(event["name"], []).append(float(event["dur"]))
        op_of[event["name"]] = event.get("op_name") or event.get("args", {}).get("op_name", "")
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
