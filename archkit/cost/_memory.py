"""Peak activation memory under two schedules (the paper's Section 5.1).

Both walk the lowered network in execution order and keep every tensor alive from the operation
that produces it to the last operation that reads it (so a residual input stays alive across its
block); an operation's memory is the sum of the live tensors plus its scratch space.

- ``naive``: every primitive (fused conv-BN-activation, pool, add, ...) is one operation and every
  tensor is materialized: the straightforward schedule.
- ``fused``: a bottleneck block is one operation whose expanded inner tensor is computed in
  ``t`` slices and never materialized (Section 5.1 with ``n = t``): its scratch is one channel of
  the expanded tensor and one of the depthwise output. The split holds the block's input and
  output at once, so where running the block's layers one by one needs less (a ``t = 1`` block
  that widens its output), the schedule runs them one by one: fused is never above naive.
"""

from __future__ import annotations

from dataclasses import dataclass

from archkit.ops import INPUT, OPERATORS, PRIMITIVES, Block, Network, tensor_id

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
    """The operations of ``schedule`` in order, each with its live activation elements.

    Every output of the network (a classifier's logits, each prediction map of a detector) stays
    alive to the end. A bottleneck whose inner tensor a head reads (SSDLite's first prediction
    layer reads the expansion of layer 15) is not fused: that tensor must be materialized.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    sizes: dict[str, int] = {INPUT: network.input_shape.elements}
    read_from_outside = {network.source_id(b) for b in network.blocks} | set(network.output_ids)
    # Blocks an inner tensor of which another block (or the model's output) reads.
    output_ids = {b.output_id for b in network.blocks}
    inner_read_blocks = {
        t.partition(":")[0] for t in read_from_outside if t != INPUT and t not in output_ids
    }
    # Each op: (block index, name, input tensor ids, output tensor id, scratch elements).
    ops: list[tuple[int, str, tuple[str, ...], str, int]] = []
    # Network-wide tensor id -> the id of the materialized tensor it is (aliases resolve).
    materialized: dict[str, str] = {INPUT: INPUT}
    for block in network.blocks:
        source = materialized[network.source_id(block)]
        inner_read = str(block.index) in inner_read_blocks
        if schedule == "fused" and not inner_read and _fuse(block):
            out_id = block.output_id
            sizes[out_id] = block.out_shape.elements
            scratch = OPERATORS[block.row.op].fused_scratch_elements(block.nodes)
            ops.append((block.index, "block", (source,), out_id, scratch))
            materialized[out_id] = out_id
            continue
        local = {"x": source}
        for node in block.nodes:
            ins = tuple(local[i] for i in node.inputs)
            if PRIMITIVES[node.prim].alias:
                local[node.name] = ins[0]
            else:
                out_id = tensor_id(block.index, node.name)
                sizes[out_id] = node.out_shape.elements
                local[node.name] = out_id
                ops.append((block.index, node.name, ins, out_id, 0))
            materialized[tensor_id(block.index, node.name)] = local[node.name]

    outputs = {materialized[t] for t in network.output_ids}
    live = _sweep([(ins, out, scratch) for _, _, ins, out, scratch in ops], sizes, INPUT, outputs)
    return [Step(block, name, value) for (block, name, *_), value in zip(ops, live, strict=True)]


def _sweep(
    ops: list[tuple[tuple[str, ...], str, int]], sizes: dict[str, int], first: str,
    keep: set[str],
) -> list[int]:
    """Live elements while each op runs: ``first`` is alive at the start, a tensor dies after the
    last op that reads it, tensors in ``keep`` never die."""
    last_use = dict.fromkeys(keep, len(ops))
    for i, (ins, _, _) in enumerate(ops):
        for tensor in ins:
            last_use[tensor] = max(last_use.get(tensor, -1), i)
    dies_after: dict[int, list[str]] = {}
    for tensor, i in last_use.items():
        dies_after.setdefault(i, []).append(tensor)
    live = sizes[first]
    values = []
    for i, (_, out, scratch) in enumerate(ops):
        live += sizes[out]
        values.append(live + scratch)
        for tensor in dies_after.get(i, ()):
            live -= sizes[tensor]
        if out not in last_use:  # produced and never read: dead at once
            live -= sizes[out]
    return values


def _fuse(block: Block) -> bool:
    """Whether running ``block`` as one Section 5.1 operation needs less than layer by layer."""
    operator = OPERATORS[block.row.op]
    if not operator.fusable:
        return False
    fused = (block.in_shape.elements + block.out_shape.elements
             + operator.fused_scratch_elements(block.nodes))
    sizes = {"x": block.in_shape.elements}
    local = {"x": "x"}
    ops = []
    for node in block.nodes:
        ins = tuple(local[i] for i in node.inputs)
        if PRIMITIVES[node.prim].alias:
            local[node.name] = ins[0]
            continue
        sizes[node.name] = node.out_shape.elements
        local[node.name] = node.name
        ops.append((ins, node.name, 0))
    return fused < max(_sweep(ops, sizes, "x", {local[block.output]}), default=0)
