"""Table 3 of the paper: channels and memory materialized at each spatial resolution.

The paper's column is "the max number of channels/memory (in Kb) that needs to be materialized
at each spatial resolution", fp16. archkit computes it under several stated rules, from the
lowered network's exact shapes:

- ``tensor_all``: the largest single tensor at that resolution (its channels and size, i.e. the
  paper's arithmetic ``channels x H x W x 2 bytes``, 1 Kb = 1000 bytes), every tensor a primitive
  writes counted (MobileNetV2's expanded tensors included).
- ``tensor_between_blocks``: the same over the tensors *between* blocks only: Section 5.1 treats
  a block as one operation whose inner tensors are never materialized, and Table 3's caption
  counts ShuffleNet's "non-bottleneck tensors". With ``first_layer_trick`` (the caption's "for
  the first layer of MobileNetV2 and ShuffleNet we can employ the trick described in Section 5")
  the stem conv runs together with the operation after it, so its output is not materialized.
- ``live``: archkit's Section 5.1 memory model (:func:`archkit.cost.schedule_steps`): everything
  alive while an operation runs (its inputs, its output, shortcut inputs kept for a later add,
  scratch), maximized over the operations whose output has that resolution; ``naive`` and
  ``fused`` schedules.
- ``row_input``: each spec row's output channels attributed to the resolution of its *input*
  (so a stride-2 row counts at the resolution it reads), stem excluded: the rule that reproduces
  most of the paper's MobileNetV2 column.
"""

from __future__ import annotations

from dataclasses import dataclass

from archkit.cost import DTYPE_BYTES, schedule_steps
from archkit.ops import PRIMITIVES, Network, Shape, lower
from archkit.spec import Spec

__all__ = ["Cell", "KB", "memory_by_resolution", "kb"]

#: The paper's "Kb": 1000 bytes (see the report: 1000 fits the printed values better than 1024).
KB = 1000


def kb(elements: int, dtype: str = "fp16") -> float:
    """Kilobytes (1000 bytes) of ``elements`` activations of ``dtype``."""
    return elements * DTYPE_BYTES[dtype] / KB


@dataclass(frozen=True)
class Cell:
    """One resolution under one rule: the channels of the largest tensor and the memory in Kb
    (for ``live`` rules the channels are those of the operation's output)."""

    channels: int | None
    kb: float | None


def _materialized(network: Network, between_blocks: bool, skip_stem: bool) -> list[Shape]:
    shapes: list[Shape] = []
    for block in network.blocks:
        if skip_stem and block.row.index == 0:
            continue
        if block.row.op == "dropout":
            continue
        if between_blocks:
            shapes.append(block.out_shape)
        else:
            shapes.extend(n.out_shape for n in block.nodes if not PRIMITIVES[n.prim].alias)
    return shapes


def _largest(shapes: list[Shape], resolution: int, dtype: str) -> Cell:
    at = [s for s in shapes if s.height == resolution]
    if not at:
        return Cell(None, None)
    best = max(at, key=lambda s: s.elements)
    return Cell(best.channels, kb(best.elements, dtype))


def _live(network: Network, schedule: str, dtype: str) -> dict[int, Cell]:
    out: dict[int, Cell] = {}
    for step in schedule_steps(network, schedule):
        block = network.blocks[step.block]
        shape = (
            block.out_shape
            if step.node == "block"
            else next(n.out_shape for n in block.nodes if n.name == step.node)
        )
        cell = Cell(shape.channels, kb(step.live_elements, dtype))
        best = out.get(shape.height)
        if best is None or cell.kb > best.kb:
            out[shape.height] = cell
    return out


def _row_input(network: Network, dtype: str) -> dict[int, Cell]:
    out: dict[int, Cell] = {}
    for row in network.spec.rows[1:]:  # the stem: first layer trick
        blocks = [b for b in network.blocks if b.row.index == row.index]
        if not blocks or row.op in ("dropout", "fc"):
            continue
        resolution = blocks[0].in_shape.height
        channels = blocks[0].out_shape.channels
        cell = Cell(channels, kb(channels * resolution * resolution, dtype))
        if resolution not in out or channels > out[resolution].channels:
            out[resolution] = cell
    return out


RULES = ("tensor_all", "tensor_between_blocks", "live_naive", "live_fused", "row_input")


def memory_by_resolution(
    spec: Spec,
    resolutions: tuple[int, ...],
    dtype: str = "fp16",
    *,
    first_layer_trick: bool = False,
) -> dict[str, dict[int, Cell]]:
    """Every rule's :class:`Cell` at each of ``resolutions`` (see the module docstring).

    Returns:
        ``{rule: {resolution: Cell}}`` with the rules of :data:`RULES`, plus ``max`` entries
        under the resolution key ``0`` (the largest memory over all resolutions).
    """
    network = lower(spec)
    result: dict[str, dict[int, Cell]] = {}
    singles = {
        "tensor_all": _materialized(network, between_blocks=False, skip_stem=False),
        "tensor_between_blocks": _materialized(
            network, between_blocks=True, skip_stem=first_layer_trick
        ),
    }
    for rule, shapes in singles.items():
        result[rule] = {r: _largest(shapes, r, dtype) for r in resolutions}
        overall = max(shapes, key=lambda s: s.elements)
        result[rule][0] = Cell(overall.channels, kb(overall.elements, dtype))
    for schedule in ("naive", "fused"):
        live = _live(network, schedule, dtype)
        cells = {r: live.get(r, Cell(None, None)) for r in resolutions}
        cells[0] = max(live.values(), key=lambda c: c.kb)
        result[f"live_{schedule}"] = cells
    row_input = _row_input(network, dtype)
    cells = {r: row_input.get(r, Cell(None, None)) for r in resolutions}
    cells[0] = max(row_input.values(), key=lambda c: c.kb)
    result["row_input"] = cells
    return result
