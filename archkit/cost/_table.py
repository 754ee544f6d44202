"""Per-layer cost tables (plain records, or pandas DataFrames) with totals, by stage or block."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from archkit.cost._count import Costs, _count_network, bn_params_per_channel, convention_spec
from archkit.cost._memory import DTYPE_BYTES, schedule_steps
from archkit.ops import PRIMITIVES, Network, lower
from archkit.spec import Spec

if TYPE_CHECKING:  # pandas is imported when a DataFrame is asked for, not to print a table
    import pandas as pd

__all__ = ["CostTable", "cost_table", "LAYER_COLUMNS"]

LAYER_COLUMNS = (
    "block", "stage", "op", "repeat", "node", "prim", "input", "output", "stride", "kernel",
    "groups", "madds", "params", "bn_params", "output_elements", "live_elements",
)


@dataclass(frozen=True)
class CostTable:
    """Analytic costs of one spec: per-layer table, stage table and totals.

    Args:
        spec: the spec as given.
        network: the lowered network that was counted (under ``convention``).
        convention: see :data:`archkit.cost.CONVENTIONS`.
        dtype: element type for activation memory (``fp32``, ``fp16``, ``int8``).
    """

    spec: Spec
    network: Network
    convention: str
    dtype: str
    costs: Costs

    @cached_property
    def layer_records(self) -> tuple[dict, ...]:
        """:attr:`layers` as plain dicts (no pandas: what the CLI's table prints)."""
        live = {(s.block, s.node): s.live_elements for s in schedule_steps(self.network)}
        bn = bn_params_per_channel(self.convention)
        records = []
        for block, node in self.network.nodes():
            prim = PRIMITIVES[node.prim]
            records.append({
                "block": block.index,
                "stage": block.row.index,
                "op": block.row.op,
                "repeat": block.repeat,
                "node": node.name,
                "prim": node.prim,
                "input": " + ".join(map(str, node.in_shapes)),
                "output": str(node.out_shape),
                "stride": node.attrs.get("stride"),
                "kernel": node.attrs.get("kernel"),
                "groups": node.attrs.get("groups"),
                "madds": prim.madds(node),
                "params": prim.params(node) + bn * prim.bn_channels(node),
                "bn_params": bn * prim.bn_channels(node),
                "output_elements": 0 if prim.alias else node.out_shape.elements,
                "live_elements": live.get((block.index, node.name), 0),
            })
        return tuple(records)

    @cached_property
    def stage_records(self) -> tuple[dict, ...]:
        """:attr:`stages` as plain dicts (no pandas)."""
        records = []
        for row in self.spec.rows:
            blocks = [b for b in self.network.blocks if b.row.index == row.index]
            part = [r for r in self.layer_records if r["stage"] == row.index]
            records.append({
                "stage": row.index,
                "op": row.op,
                "t": row.expansion,
                "c": blocks[0].out_shape.channels,
                "n": row.repeats,
                "s": row.stride,
                "input": str(blocks[0].in_shape),
                "output": str(blocks[-1].out_shape),
                "madds": sum(r["madds"] for r in part),
                "params": sum(r["params"] for r in part),
                "peak_live_bytes": max((r["live_elements"] for r in part), default=0)
                * self.element_bytes,
            })
        return tuple(records)

    @cached_property
    def layers(self) -> pd.DataFrame:
        """One row per primitive node (a fused conv-BN-act, pool, add...), execution order."""
        import pandas as pd

        frame = pd.DataFrame.from_records(list(self.layer_records), columns=list(LAYER_COLUMNS))
        return frame.astype({"stride": "Int64", "kernel": "Int64", "groups": "Int64"})

    @cached_property
    def stages(self) -> pd.DataFrame:
        """One row per spec row (a Table 2 line): t, c, n, s, shapes, MAdds, params, memory."""
        import pandas as pd

        return pd.DataFrame.from_records(list(self.stage_records))

    @property
    def element_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def madds(self) -> int:
        return self.costs.madds

    @property
    def params(self) -> int:
        return self.costs.params

    def peak_activation_bytes(self, schedule: str = "naive") -> int:
        return self.costs.peak_activation_bytes(self.dtype, schedule)

    def totals(self) -> dict[str, int | float | str]:
        """The headline numbers as a flat dict (what ``--format json`` prints)."""
        return {
            "name": self.spec.name,
            "width": self.spec.width,
            "resolution": self.spec.resolution,
            "convention": self.convention,
            "dtype": self.dtype,
            "madds": self.costs.madds,
            "params": self.costs.params,
            "bn_params": self.costs.bn_params,
            "peak_activation_bytes": self.peak_activation_bytes("naive"),
            "peak_activation_bytes_fused": self.peak_activation_bytes("fused"),
        }


def cost_table(spec: Spec, *, dtype: str = "fp32", convention: str = "pytorch") -> CostTable:
    """Count ``spec`` analytically, per layer, per stage and in total (see :class:`CostTable`)."""
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {tuple(DTYPE_BYTES)}, got {dtype!r}")
    network = lower(convention_spec(spec, convention))
    return CostTable(spec, network, convention, dtype, _count_network(network, convention))
