"""Exact analytic costs of a spec: multiply-adds, parameters and peak activation memory.

Nothing here imports torch: the counts come from the lowered network alone, and the test suite
checks them against fvcore's trace and ``sum(p.numel())`` of the built model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from archkit.cost._memory import DTYPE_BYTES, schedule_steps
from archkit.ops import Network, lower, node_costs
from archkit.spec import Spec

__all__ = ["Costs", "count", "CONVENTIONS", "bn_params_per_channel"]

#: ``pytorch``: the model as archkit builds it (BatchNorm weight and bias are parameters).
#: ``tf-slim``: TF-slim's MobileNetV2 table: a ``num_classes + 1``-way classifier (background
#: class), conv and classifier weights and biases, no BatchNorm at all.
#: ``tf-slim-vars``: TF-slim's MobileNetV1 table: as ``tf-slim`` plus 3 variables per BatchNorm
#: channel (beta, moving mean, moving variance; no gamma), i.e. every variable of the checkpoint.
#: docs/costs.md shows that these reproduce every published count.
CONVENTIONS = ("pytorch", "tf-slim", "tf-slim-vars")
_BN_PER_CHANNEL = {"pytorch": 2, "tf-slim": 0, "tf-slim-vars": 3}


@dataclass(frozen=True)
class Costs:
    """Totals for one image (batch 1)."""

    madds: int
    params: int
    bn_params: int
    peak_activation_elements: int
    peak_activation_elements_fused: int

    def peak_activation_bytes(self, dtype: str = "fp32", schedule: str = "naive") -> int:
        elements = (
            self.peak_activation_elements_fused if schedule == "fused"
            else self.peak_activation_elements
        )
        return elements * DTYPE_BYTES[dtype]


def bn_params_per_channel(convention: str) -> int:
    """Parameters a convention counts per BatchNorm channel (see :data:`CONVENTIONS`)."""
    return _BN_PER_CHANNEL[convention]


def convention_spec(spec: Spec, convention: str) -> Spec:
    """The spec whose built model the convention counts (``tf-slim`` adds a background class)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if convention.startswith("tf-slim"):
        return dataclasses.replace(spec, num_classes=spec.num_classes + 1)
    return spec


def count(spec: Spec, convention: str = "pytorch") -> Costs:
    """Count ``spec`` analytically (milliseconds; no model is built).

    Args:
        spec: a validated spec.
        convention: ``pytorch`` (default) or ``tf-slim`` (see :data:`CONVENTIONS`).
    """
    network = lower(convention_spec(spec, convention))
    return _count_network(network, convention)


def _count_network(network: Network, convention: str) -> Costs:
    madds = params = bn_channels = 0
    for _, node in network.nodes():
        node_madds, node_params, node_bn = node_costs(node)
        madds += node_madds
        params += node_params
        bn_channels += node_bn
    bn_params = bn_params_per_channel(convention) * bn_channels
    # A network of aliases only (dropout) runs no operation: its input is all that lives.
    start = network.input_shape.elements
    naive = max((s.live_elements for s in schedule_steps(network, "naive")), default=start)
    fused = max((s.live_elements for s in schedule_steps(network, "fused")), default=start)
    return Costs(madds, params + bn_params, bn_params, naive, fused)
