"""Head operators for detection and segmentation (the paper's Sections 6.2 and 6.3).

A head reads a named feature map of the backbone (``from:``, see docs/heads.md) and lowers to the
same primitives as the backbone, so the counter, the memory schedules and the PyTorch builder need
no second table:

- ``ssd_head``: one SSD prediction layer (TensorFlow Object Detection API's
  ``ConvolutionalBoxPredictor``): a box-encoding predictor (4 numbers per anchor) and a class
  predictor (one score per class, plus background) on one feature map. SSD uses regular 3x3
  convolutions; SSDLite (``separable: true``) replaces each by a 3x3 depthwise conv (BatchNorm,
  ReLU6) followed by a 1x1 projection. Both predictions are outputs of the network.
- ``aspp``: DeepLabv3's head: image-level features (global pooling, 1x1 conv, upsampling), a 1x1
  conv and one 3x3 atrous conv per rate (the ASPP module; ``rates: []`` removes it), concatenated
  and projected by a 1x1 conv, then dropout.
- ``upsample``: bilinear resizing to the input resolution (DeepLab's segmentation map).

The extra SSD feature layers need no operator of their own: they are ``conv2d`` 1x1 rows followed
by a stride-2 ``conv2d`` (SSD) or ``dwsep`` (SSDLite) row.
"""

from __future__ import annotations

from archkit.ops._operators import OPERATORS, FieldRule, Operator, _act, _c, _kernel, _scaling

__all__ = ["SSDHead", "ASPP", "Upsample", "BOX_CODE_SIZE", "HEAD_OPERATORS"]

#: Numbers per anchor of a box encoding (centre y, x, height, width offsets).
BOX_CODE_SIZE = 4
MAX_ANCHORS = 64
#: An ASPP branch is atrous: at rate 1 it would be a plain 3x3 conv beside the 1x1 branch.
MIN_RATE = 2
MAX_RATE = 64


class SSDHead(Operator):
    """One SSD / SSDLite prediction layer on one feature map.

    Box predictor: ``anchors * 4`` channels; class predictor: ``anchors * (num_classes + 1)``
    channels with ``background: true`` (the Object Detection API's extra background slot). The
    final 1x1 (or 3x3) predictor convolutions have a bias and neither BatchNorm nor activation.
    """

    name = "ssd_head"
    head = True
    exports = ("box", "classes")
    fields = (
        FieldRule(
            "anchors",
            "anchors",
            int,
            6,
            minimum=1,
            maximum=MAX_ANCHORS,
            help="anchors (default boxes) per location",
        ),
        FieldRule(
            "separable",
            "separable",
            bool,
            True,
            help="SSDLite: depthwise + 1x1 instead of a regular conv",
        ),
        _kernel(3),
        FieldRule(
            "background",
            "background",
            bool,
            True,
            help="one extra class score per anchor for the background",
        ),
        _act("relu6"),
    )

    def lower(self, g, spec, row, repeat, stride):
        channels = g.shapes["x"].channels
        classes = spec.num_classes + (1 if row.background else 0)
        for name, out in (("box", row.anchors * BOX_CODE_SIZE), ("classes", row.anchors * classes)):
            src = "x"
            kernel = row.kernel
            if row.separable:
                src = g.conv(
                    f"{name}_depthwise",
                    src,
                    channels,
                    kernel=kernel,
                    groups=channels,
                    activation=row.activation,
                )
                kernel = 1
            g.conv(name, src, out, kernel=kernel, activation="none", bn=False, bias=True)
        return "classes"


class ASPP(Operator):
    """DeepLabv3's head (Section 6.3): image pooling, 1x1 conv, atrous 3x3 convs, projection.

    ``rates`` are the atrous rates of the 3x3 branches (6, 12, 18 at output stride 16; 12, 24, 36
    at 8); an empty list is the paper's "no ASPP" head (image pooling and the 1x1 conv only).
    ``separable: true`` makes each atrous branch a depthwise + 1x1 pair (DeepLab's
    ``aspp_with_separable_conv``). Every conv has BatchNorm and the activation.
    """

    name = "aspp"
    head = True
    fields = (
        _c(256),
        FieldRule(
            "rates",
            "rates",
            tuple,
            (6, 12, 18),
            item=int,
            minimum=MIN_RATE,
            maximum=MAX_RATE,
            help="atrous rates of the 3x3 branches (at least 2)",
        ),
        FieldRule("image_pooling", "image_pooling", bool, True, help="image-level feature branch"),
        FieldRule(
            "separable", "separable", bool, False, help="depthwise separable atrous branches"
        ),
        _act("relu"),
        FieldRule(
            "p",
            "dropout",
            float,
            0.1,
            minimum=0.0,
            maximum=0.99,
            help="dropout after the projection",
        ),
        _scaling("none"),
    )

    def lower(self, g, spec, row, repeat, stride):
        x = g.shapes["x"]
        out = self.out_channels(spec, row)
        act = row.activation
        branches = []
        if row.image_pooling:
            pooled = g.add("image_pool", "global_avgpool", "x")
            pooled = g.conv("image_conv", pooled, out, activation=act)
            branches.append(
                g.add(
                    "image_resize",
                    "resize",
                    pooled,
                    height=x.height,
                    width=x.width,
                    align_corners=True,
                )
            )
        branches.append(g.conv("aspp0", "x", out, activation=act))
        for i, rate in enumerate(row.rates, 1):
            src = "x"
            if row.separable:
                src = g.conv(
                    f"aspp{i}_depthwise",
                    src,
                    x.channels,
                    kernel=3,
                    groups=x.channels,
                    dilation=rate,
                    activation=act,
                )
                branches.append(g.conv(f"aspp{i}", src, out, activation=act))
            else:
                branches.append(
                    g.conv(f"aspp{i}", src, out, kernel=3, dilation=rate, activation=act)
                )
        src = branches[0]
        if len(branches) > 1:
            src = g.add("concat", "concat", tuple(branches), activation="none")
        src = g.conv("project", src, out, activation=act)
        if row.dropout:
            src = g.add("dropout", "dropout", src, p=row.dropout)
        return src


class Upsample(Operator):
    """Bilinear upsampling to the input resolution: the segmentation map at full size."""

    name = "upsample"
    head = True
    fields = (
        FieldRule(
            "align_corners",
            "align_corners",
            bool,
            True,
            help="TensorFlow resize_bilinear's align_corners",
        ),
    )

    def lower(self, g, spec, row, repeat, stride):
        return g.add(
            "resize",
            "resize",
            "x",
            height=spec.resolution,
            width=spec.resolution,
            align_corners=row.align_corners,
        )


HEAD_OPERATORS = (SSDHead(), ASPP(), Upsample())


def _register(op: Operator) -> None:
    """Add ``op`` to the one operator registry; a second operator of the same name is a bug."""
    existing = OPERATORS.get(op.name)
    if existing is not None and type(existing).__qualname__ != type(op).__qualname__:
        raise RuntimeError(f"operator {op.name!r} is defined twice ({existing!r}, {op!r})")
    OPERATORS[op.name] = op


for _op in HEAD_OPERATORS:
    _register(_op)
del _op
