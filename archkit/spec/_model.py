"""Typed, frozen spec dataclasses and the channel rules the paper states once."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

__all__ = ["Row", "Spec", "make_divisible", "scale_channels", "WIDTH_SCALING"]

#: How a row's channel count reacts to the width multiplier.
#: ``full``: always scaled; ``grow_only``: scaled only when the multiplier is above 1 (the
#: paper's rule for MobileNetV2's last conv: "for multipliers less than one, we apply width
#: multiplier to all layers except the very last convolutional layer"); ``none``: never scaled
#: (classifiers).
WIDTH_SCALING = ("full", "grow_only", "none")


def make_divisible(value: float, divisor: int = 8, min_ratio: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below ``min_ratio * value``.

    This is MobileNetV2's rule (TF-slim ``_make_divisible``, torchvision ``_make_divisible``): at
    least ``divisor`` and, if rounding down lost more than 10 %, one ``divisor`` more. With
    ``divisor=1`` it is plain rounding (at least 1).
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < min_ratio * value:
        rounded += divisor
    return rounded


def scale_channels(
    channels: int, width: float, scaling: str, divisor: int, min_ratio: float
) -> int:
    """Apply the width multiplier to one row's channel count (see :data:`WIDTH_SCALING`)."""
    if scaling == "none":
        return channels
    factor = max(1.0, width) if scaling == "grow_only" else width
    if math.isclose(factor, 1.0):
        return channels
    return make_divisible(channels * factor, divisor, min_ratio)


class _HashOnce:
    """A frozen dataclass's hash, computed from its compared fields once per object.

    Specs and rows are dictionary keys of every cache a search goes through (``lower``'s, a
    latency model's block caches): a row has about 30 fields, a spec hashes all its rows, and
    a generated ``__hash__`` recomputes that at every lookup (0.7 us a row, 5.8 us
    MobileNetV2's spec, here). The cached value is dropped when the object is pickled or
    copied: string hashes differ between processes.
    """

    __slots__ = ()
    _compared: tuple[str, ...] = ()

    def __hash__(self) -> int:
        try:
            return self.__dict__["_hash"]
        except KeyError:
            value = hash(tuple([getattr(self, name) for name in self._compared]))
            object.__setattr__(self, "_hash", value)
            return value

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_hash", None)
        return state

    @classmethod
    def _hash_fields(cls) -> None:
        cls._compared = tuple(f.name for f in fields(cls) if f.compare)


@dataclass(frozen=True)
class Row(_HashOnce):
    """One line of a Table-2-style spec: an operator repeated ``repeats`` times.

    Attributes mirror the paper's letters with real names: ``expansion`` (t), ``out_channels`` (c),
    ``repeats`` (n), ``stride`` (s, applied to the first repeat only). Fields an operator does not
    use are ``None``. ``name`` and ``from_feature`` (YAML ``from``) let heads read named feature
    maps of a backbone (docs/heads.md).
    """

    op: str
    index: int
    out_channels: int | str | None = None
    expansion: float | None = None
    repeats: int = 1
    stride: int = 1
    kernel: int | None = None
    groups: int | None = None
    activation: str | None = None
    batchnorm: bool | None = None
    bias: bool | None = None
    dropout: float | None = None
    width_scaling: str | None = None
    group_first_pointwise: bool | None = None
    dilation: int | None = None
    #: The row's feature-map name, which later rows may read with ``from:`` (any operator).
    name: str | None = None
    #: The feature map this row reads (``from:``): ``<name>`` (the named row's output),
    #: ``<name>.<repeat>`` or ``<name>.<repeat>.<node>`` (a tensor inside one repeat, e.g.
    #: ``c160.0.expand``). ``None``: the previous row's output.
    from_feature: str | None = None
    #: Atrous rates of an ASPP module (Sections 6.3; empty: no atrous branches).
    rates: tuple[int, ...] | None = None
    #: Anchors (default boxes) per location of an SSD prediction layer.
    anchors: int | None = None
    #: Depthwise separable instead of regular convolutions (SSDLite; separable ASPP).
    separable: bool | None = None
    #: ASPP's image-level feature branch (global pooling, 1x1 conv, upsampling).
    image_pooling: bool | None = None
    #: An extra background class in an SSD class predictor (``num_classes + 1`` scores).
    background: bool | None = None
    #: Bilinear upsampling with ``align_corners`` (TensorFlow's ``resize_bilinear`` in DeepLab).
    align_corners: bool | None = None

    __hash__ = _HashOnce.__hash__  # (explicit: dataclass would hash every field every time)

    @property
    def has_expansion(self) -> bool:
        """A bottleneck that expands its input (``t > 1``): the rows whose ``t`` the expansion
        override and a search over expansion ratios change. A ``t: 1`` bottleneck (MobileNetV2's
        first) and a shuffle unit's bottleneck ratio keep theirs."""
        return self.op == "bottleneck" and (self.expansion or 0) > 1


@dataclass(frozen=True)
class Spec(_HashOnce):
    """A whole network: input, classifier size, width multiplier, channel rounding and rows.

    Variants are made with :func:`dataclasses.replace` (or :func:`archkit.spec.apply_overrides`),
    never by mutation.
    """

    name: str
    rows: tuple[Row, ...]
    resolution: int = 224
    in_channels: int = 3
    num_classes: int = 1000
    width: float = 1.0
    divisor: int = 8
    min_ratio: float = 0.9
    source: str | None = field(default=None, compare=False)
    description: str = field(default="", compare=False)
    #: DeepLab's output stride (Section 6.3): once the strides so far reach it, later strides
    #: become 1 and later convolutions are dilated instead (see :func:`archkit.ops.lower`).
    #: ``None``: every stride as written.
    output_stride: int | None = None

    __hash__ = _HashOnce.__hash__  # (explicit: dataclass would hash every field every time)

    def channels(self, row: Row, channels: int | None = None) -> int:
        """The channel count ``row`` produces under this spec's width multiplier."""
        base = row.out_channels if channels is None else channels
        assert base is not None  # callers pass rows whose operator has channels
        return scale_channels(
            base, self.width, row.width_scaling or "full", self.divisor, self.min_ratio
        )


Row._hash_fields()
Spec._hash_fields()
