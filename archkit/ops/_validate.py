"""Spec files in, valid networks out: decoding (``archkit.spec``) composed with lowering.

The decoder checks every key against the fields the operators declare; lowering then checks that
each row fits the tensor it receives. A spec that :func:`load_spec`, :func:`parse_spec` or
:func:`apply_overrides` returns lowers (and so builds and counts) without error. A valid spec
that is probably a mistake (:func:`collapse_warning`) is returned with a
:class:`~archkit.errors.SpecWarning`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from archkit.errors import SpecWarning
from archkit.ops._ir import Network
from archkit.ops._lower import lower
from archkit.ops._operators import OPERATORS
from archkit.spec._load import decode_spec, override_spec, read_spec_text
from archkit.spec._model import Spec

__all__ = ["load_spec", "parse_spec", "apply_overrides", "collapse_warning"]

#: Layers that may run on a 1x1 map before the head without a warning (MobileNetV1's last
#: depthwise separable layer does at resolution 32; two or more is work without spatial extent).
_LAYERS_ON_1X1 = 1


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file.

    Raises:
        SpecError: the file cannot be read, is not YAML, or does not describe a valid network.

    Warns:
        SpecWarning: the feature map collapses to 1x1 long before the head (see
            :func:`collapse_warning`).
    """
    return _checked(_decode(read_spec_text(path), str(path)))


def parse_spec(text: str, source: str = "<string>") -> Spec:
    """Parse and validate spec text (see ``docs/spec.md`` for the format); warns as
    :func:`load_spec` does."""
    return _checked(_decode(text, source))


def _decode(text: str, source: str) -> Spec:
    fields = {name: op.fields for name, op in OPERATORS.items()}
    return decode_spec(text, source, fields)


def apply_overrides(
    spec: Spec,
    *,
    width: float | None = None,
    resolution: int | None = None,
    expansion: float | None = None,
    warn: bool = True,
) -> Spec:
    """Return a variant of ``spec``: a new width multiplier, input resolution or expansion ratio.

    ``expansion`` replaces every bottleneck expansion ratio above 1 (rows with ``t: 1``, like
    MobileNetV2's first bottleneck, keep it; see :attr:`archkit.spec.Row.has_expansion`).
    ``warn=False`` skips the :class:`~archkit.errors.SpecWarning` (a search draws thousands of
    variants; the user wrote none of them).

    Raises:
        SpecError: an override is out of range or makes the network invalid.
    """
    variant = override_spec(spec, width=width, resolution=resolution, expansion=expansion)
    return _checked(variant, warn=warn)


def _checked(spec: Spec, *, warn: bool = True) -> Spec:
    network = lower(spec)
    if warn and (message := collapse_warning(network)):
        warnings.warn(message, SpecWarning, stacklevel=3)
    return spec


def collapse_warning(network: Network) -> str | None:
    """Why ``network``'s feature map collapses to 1x1 long before its head, or ``None``.

    The head begins at the first row without a spatial window (global pooling, a classifier, a
    detection or segmentation head). Before it, "long before" means: a stride above 1 applied to
    a 1x1 map, or more than one layer (one repeat of a row) run on a 1x1 map. Those layers still
    cost their parameters and multiply-adds, but a 3x3 window sees one pixel and padding; the
    input resolution is too small for the network's strides (MobileNetV2 at 32: the map is 1x1
    after row 6's first repeat, and four layers run on it).
    """
    spec = network.spec
    collapsed = None
    on_1x1 = []
    for block in network.blocks:
        row = block.row
        if "stride" not in {rule.attr for rule in OPERATORS[row.op].fields}:
            break  # the head
        one = block.in_shape.height == 1 and block.in_shape.width == 1
        if one and block.repeat == 0 and row.stride > 1:
            where = f"{spec.source or '<spec>'}: row {row.index} ({row.op})"
            return (f"{where}: a stride of {row.stride} is applied to a 1x1 feature map "
                    f"(input resolution {spec.resolution}): the input is too small for this "
                    "network's strides")
        if one:
            on_1x1.append(block)
            collapsed = collapsed or block
        elif collapsed is None and block.out_shape.height == 1 and block.out_shape.width == 1:
            collapsed = block
    if collapsed is None or len(on_1x1) <= _LAYERS_ON_1X1:
        return None
    row = collapsed.row
    where = f"{spec.source or '<spec>'}: row {row.index} ({row.op})"
    first, last = on_1x1[0].row.index, on_1x1[-1].row.index
    rows = f"row {first}" if first == last else f"rows {first}-{last}"
    return (f"{where}: the feature map is 1x1 from here on (input resolution {spec.resolution}), "
            f"and {len(on_1x1)} more layers ({rows}) run on it before the "
            "head: a larger input resolution or fewer stride-2 rows gives them a map to work on")
