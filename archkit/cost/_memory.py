"""Peak activation memory under two schedules (the paper's Section 5.1).

Both walk the lowered network in execution order and keep every tensor alive from the operation
that produces it to the last operation that reads it (so a residual input stays alive across its
block); an operation's memory is the sum of the live tensors plus its scratch space.

- ``naive``: every primitive (fused conv-BN-activation, pool, add, ...) is one operation and every
  tensor is materialized: the straightforward schedule.
- ``fused``: a bottleneck block is one operation whose expanded inner tensor is computed in
  ``t`` slices and never materialized (Section 5.1 with ``n = t``): its scratch is one channel of
  the expanded tensor and one of the depthwise output.
"""

from __future__ import annotations

from dataclasses import dataclass

from archkit.ops import OPERATORS, PRIMITIVES, Network

__all__ = ["SCHEDULES", "DTYPE_BYTES", "Step", "schedule_steps"]

SCHEDULES = ("naive", "fused")
DTYPE_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class Step:
    """One operation of a schedule and the activation elements alive while it runs."""

    block: int
    node: str
    live_elements: int


def schedule_steps(network: Network, schedule: str = "naive") -> list[Step]:
    """The operations of ``schedule`` in order, each with its live activation elements."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    sizes: dict[str, int] = {"input": network.input_shape.elements}
    # Each op: (block index, name, input tensor ids, output tensor id, scratch elements).
    ops: list[tuple[int, str, tuple[str, ...], str, int]] = []
    current = "input"
    for block in network.blocks:
        local = {"x": current}
        if schedule == "fused" and OPERATORS[block.row.op].fusable:
            out_id = f"{block.index}:{block.output}"
            sizes[out_id] = block.out_shape.elements
            scratch = OPERATORS[block.row.op].fused_scratch_elements(block.nodes)
            ops.append((block.index, "block", (current,), out_id, scratch))
            current = out_id
            continue
        for node in block.nodes:
            ins = tuple(local[i] for i in node.inputs)
            if PRIMITIVES[node.prim].alias:
                local[node.name] = ins[0]
                continue
            out_id = f"{block.index}:{node.name}"
            sizes[out_id] = node.out_shape.elements
            local[node.name] = out_id
            ops.append((block.index, node.name, ins, out_id, 0))
        current = local[block.output]

    last_use = {current: len(ops)}  # the network output outlives every op
    for i, (_, _, ins, _, _) in enumerate(ops):
        for tensor in ins:
            last_use[tensor] = max(last_use.get(tensor, -1), i)
    dies_after: dict[int, list[str]] = {}
    for tensor, i in last_use.items():
        dies_after.setdefault(i, []).append(tensor)
    live = sizes["input"]
    steps = []
    for i, (block, name, _, out, scratch) in enumerate(ops):
        live += sizes[out]
        steps.append(Step(block, name, live + scratch))
        for tensor in dies_after.get(i, ()):
            live -= sizes[tensor]
        if out not in last_use:  # produced and never read: dead at once
            live -= sizes[out]
    return steps
