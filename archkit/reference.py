"""Published numbers, as data, each with its source: the one home of every number archkit copies.

Nothing here is computed: these are the values printed in the MobileNetV2 paper (Sandler et al.,
"MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018, arXiv 1801.04381), in
TF-slim's checkpoint tables and in the MobileNetV1 and ShuffleNet papers, copied by hand (the
TF-slim and ShuffleNet rows as gathered in ``shared/reference/published_imagenet.md``). The
``published`` accuracy estimator calibrates on them, the reports print them beside archkit's
counts and the tests check archkit's counts against them; ``tests/report/test_reference.py``
checks the transcription against the source files where they are present. Never fill these from
archkit's output.

Importing this module is cheap: dataclasses and tuples only (no torch, no pandas).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FIGURE5_EXTRA",
    "MOBILENETV1_PAPER",
    "MOBILENETV2_PAPER",
    "NASNET_A",
    "PaperTable3Cell",
    "SECTION4_CLAIMS",
    "SHUFFLENET_G3",
    "SHUFFLENET_G3_1X_TABLE1_MFLOPS",
    "TABLE2",
    "TABLE2_TEXT_BOTTLENECK_LAYERS",
    "TABLE3",
    "TABLE3_MAX_KB",
    "TABLE3_RESOLUTIONS",
    "TABLE4",
    "TABLE5",
    "TABLE6",
    "TABLE7",
    "TFSLIM_MOBILENET_V1",
    "TFSLIM_MOBILENET_V1_SOURCE",
    "TFSLIM_MOBILENET_V2",
    "TFSLIM_MOBILENET_V2_EXPANSION",
    "TFSLIM_MOBILENET_V2_SOURCE",
    "TORCHVISION_MOBILENET_V2_PARAMS",
    "Table2Row",
    "Table4Row",
    "Table5Row",
    "Table6Row",
    "Table7Row",
    "TfSlimRow",
    "V1PaperRow",
]

#: The MobileNetV2 paper, the source of every ``TABLE*`` below.
MOBILENETV2_PAPER = (
    'Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018 '
    "(arXiv 1801.04381)"
)

# --------------------------------------------------------------------------------------------
# Table 2 of the MobileNetV2 paper. The printed table's columns are Input, Operator, t, c, n, s;
# "-" where the paper prints a dash, "k" for the number of classes. (In the plain-text copy of
# the paper the columns are flattened and some dashes are lost; the order below is the printed
# one: 11 rows.)


@dataclass(frozen=True)
class Table2Row:
    """One row of Table 2, every cell as printed (text)."""

    #: The input tensor, ``112²×32``.
    input: str
    operator: str
    #: Expansion factor, ``-`` where none.
    t: str
    #: Output channels, ``k`` for the classifier.
    c: str
    #: Repeats.
    n: str
    #: Stride of the first repeat.
    s: str


TABLE2: tuple[Table2Row, ...] = (
    Table2Row("224²×3", "conv2d", "-", "32", "1", "2"),
    Table2Row("112²×32", "bottleneck", "1", "16", "1", "1"),
    Table2Row("112²×16", "bottleneck", "6", "24", "2", "2"),
    Table2Row("56²×24", "bottleneck", "6", "32", "3", "2"),
    Table2Row("28²×32", "bottleneck", "6", "64", "4", "2"),
    Table2Row("14²×64", "bottleneck", "6", "96", "3", "1"),
    Table2Row("14²×96", "bottleneck", "6", "160", "3", "2"),
    Table2Row("7²×160", "bottleneck", "6", "320", "1", "1"),
    Table2Row("7²×320", "conv2d 1x1", "-", "1280", "1", "1"),
    Table2Row("7²×1280", "avgpool 7x7", "-", "-", "1", "-"),
    Table2Row("1×1×1280", "conv2d 1x1", "-", "k", "-", "-"),
)

#: Section 3.3 of the paper: "the initial fully convolution layer with 32 filters, followed by
#: 19 residual bottleneck layers described in the Table 2".
TABLE2_TEXT_BOTTLENECK_LAYERS = 19

# --------------------------------------------------------------------------------------------
# Table 3 of the MobileNetV2 paper: "The max number of channels/memory (in Kb) that needs to be
# materialized at each spatial resolution for different architectures. We assume 16-bit floats
# for activations. For ShuffleNet, we use 2x, g = 3 that matches the performance of MobileNetV1
# and MobileNetV2. For the first layer of MobileNetV2 and ShuffleNet we can employ the trick
# described in Section 5 to reduce memory requirement."

TABLE3_RESOLUTIONS = (112, 56, 28, 14, 7, 1)


@dataclass(frozen=True)
class PaperTable3Cell:
    """One cell of Table 3, printed ``channels/kb``."""

    channels: int
    #: Kilobytes of fp16 activations, as printed.
    kb: float


TABLE3: dict[str, tuple[PaperTable3Cell, ...]] = {
    "MobileNetV1": tuple(
        PaperTable3Cell(c, kb)
        for c, kb in ((64, 1600), (128, 800), (256, 400), (512, 200), (1024, 199), (1024, 2))
    ),
    "MobileNetV2": tuple(
        PaperTable3Cell(c, kb)
        for c, kb in ((16, 400), (32, 200), (64, 100), (160, 62), (320, 32), (1280, 2))
    ),
    # The 28x28 cell is printed "400/600K".
    "ShuffleNet (2x,g=3)": tuple(
        PaperTable3Cell(c, kb)
        for c, kb in ((32, 800), (48, 300), (400, 600), (800, 310), (1600, 156), (1600, 3))
    ),
}
#: Table 3's last row ("max"), in Kb.
TABLE3_MAX_KB = {"MobileNetV1": 1600, "MobileNetV2": 400, "ShuffleNet (2x,g=3)": 600}

# --------------------------------------------------------------------------------------------
# Table 4 of the MobileNetV2 paper ("Performance on ImageNet ... we count the total number of
# Multiply-Adds"). The ShuffleNet parameter counts are estimates (TF-slim's README says none
# were published).


@dataclass(frozen=True)
class Table4Row:
    """One row of Table 4."""

    model: str
    #: ImageNet top-1, %.
    top1: float
    #: Parameters, millions, as printed.
    params_m: float
    #: Multiply-adds, millions, as printed.
    madds_m: float
    #: Pixel 1 CPU (one large core, TF-Lite), ms; None where the paper prints none.
    cpu_ms: float | None


TABLE4: tuple[Table4Row, ...] = (
    Table4Row("MobileNetV1", 70.6, 4.2, 575, 113),
    Table4Row("ShuffleNet (1.5)", 71.5, 3.4, 292, None),
    Table4Row("ShuffleNet (x2)", 73.7, 5.4, 524, None),
    Table4Row("NasNet-A", 74.0, 5.3, 564, 183),
    Table4Row("MobileNetV2", 72.0, 3.4, 300, 75),
    Table4Row("MobileNetV2 (1.4)", 74.7, 6.9, 585, 143),
)

#: Section 4 ("Trade-off hyper parameters"): input resolutions 96..224 and width multipliers
#: 0.35..1.4; "The network computational cost ranges from 7 multiply adds to 585M MAdds, while the
#: model size vary between 1.7M and 6.9M parameters." (sic: "7 multiply adds").
SECTION4_CLAIMS = {
    "widths": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
    "resolutions": (96, 128, 160, 192, 224),
    "madds_m": (7, 585),
    "params_m": (1.7, 6.9),
}

#: Figure 5's caption (the plain-text copy is cut off after "for all resolutions,"): "For our
#: networks we use multipliers 0.35, 0.5, 0.75, 1.0 for all resolutions"; the figure also labels
#: "V2 1.4" (TF-slim's 1.4 and 1.3 checkpoints exist at 224 only).
FIGURE5_EXTRA = {"widths": (0.35, 0.5, 0.75, 1.0), "resolutions": (96, 128, 160, 192, 224)}

#: NasNet-A (mobile) in the MobileNetV2 paper's Table 4: no spec in archkit, drawn as published.
NASNET_A = {"madds_m": 564, "params_m": 5.3, "top1": 74.0}

# --------------------------------------------------------------------------------------------
# Tables 5, 6 and 7 of the MobileNetV2 paper (Sections 6.2 and 6.3): SSDLite detection and
# Mobile DeepLabv3 segmentation. Parameters in millions and MAdds in billions, as printed.


@dataclass(frozen=True)
class Table5Row:
    """Table 5: a detection head alone (MobileNetV2, 80 classes)."""

    head: str
    params_m: float
    madds_b: float


TABLE5: tuple[Table5Row, ...] = (
    Table5Row("SSD", 14.8, 1.25),
    Table5Row("SSDLite", 2.1, 0.35),
)


@dataclass(frozen=True)
class Table6Row:
    """Table 6: a whole detector on COCO (test-dev)."""

    network: str
    #: COCO mAP.
    map: float
    params_m: float
    madds_b: float
    #: Pixel 1 CPU, ms; None where the paper prints none.
    cpu_ms: float | None = None


TABLE6: tuple[Table6Row, ...] = (
    Table6Row("SSD300", 23.2, 36.1, 35.2),
    Table6Row("SSD512", 26.8, 36.1, 99.5),
    Table6Row("YOLOv2", 21.6, 50.7, 17.5),
    Table6Row("MNet V1 + SSDLite", 22.2, 5.1, 1.3, 270),
    Table6Row("MNet V2 + SSDLite", 22.1, 4.3, 0.8, 200),
)


@dataclass(frozen=True)
class Table7Row:
    """Table 7: MobileNet + DeepLabv3 on PASCAL VOC 2012 val. ``MNet V2*``: heads on the
    second-last feature map; MF: multi-scale and left-right flipped inputs."""

    network: str
    output_stride: int
    aspp: bool
    multi_scale_flip: bool
    miou: float
    params_m: float
    madds_b: float


TABLE7: tuple[Table7Row, ...] = (
    Table7Row("MNet V1", 16, True, False, 75.29, 11.15, 14.25),
    Table7Row("MNet V1", 8, True, True, 78.56, 11.15, 941.9),
    Table7Row("MNet V2*", 16, True, False, 75.70, 4.52, 5.8),
    Table7Row("MNet V2*", 8, True, True, 78.42, 4.52, 387.0),
    Table7Row("MNet V2*", 16, False, False, 75.32, 2.11, 2.75),
    Table7Row("MNet V2*", 8, False, True, 77.33, 2.11, 152.6),
    Table7Row("ResNet-101", 16, True, False, 80.49, 58.16, 81.0),
    Table7Row("ResNet-101", 8, True, True, 82.70, 58.16, 4870.6),
)

# --------------------------------------------------------------------------------------------
# TF-slim's published tables, as gathered in shared/reference/published_imagenet.md. MACs in
# millions (MobileNetV2's truncated, MobileNetV1's rounded), params in millions (no BatchNorm,
# 1001 classes; MobileNetV1's with 3 variables per BatchNorm channel), top-1/top-5 in percent;
# V2's Pixel 1 CPU latency in ms.

TFSLIM_MOBILENET_V2_SOURCE = "tensorflow/models research/slim/nets/mobilenet/README.md"
TFSLIM_MOBILENET_V1_SOURCE = "tensorflow/models research/slim/nets/mobilenet_v1.md"


@dataclass(frozen=True)
class TfSlimRow:
    """One released TF-slim checkpoint."""

    width: float
    resolution: int
    macs_m: int
    params_m: float
    top1: float
    top5: float
    cpu_ms: float | None = None


TFSLIM_MOBILENET_V2: tuple[TfSlimRow, ...] = tuple(
    TfSlimRow(*r)
    for r in (
        (1.4, 224, 582, 6.06, 75.0, 92.5, 138.0),
        (1.3, 224, 509, 5.34, 74.4, 92.1, 123.0),
        (1.0, 224, 300, 3.47, 71.8, 91.0, 73.8),
        (1.0, 192, 221, 3.47, 70.7, 90.1, 55.1),
        (1.0, 160, 154, 3.47, 68.8, 89.0, 40.2),
        (1.0, 128, 99, 3.47, 65.3, 86.9, 27.6),
        (1.0, 96, 56, 3.47, 60.3, 83.2, 17.6),
        (0.75, 224, 209, 2.61, 69.8, 89.6, 55.8),
        (0.75, 192, 153, 2.61, 68.7, 88.9, 41.6),
        (0.75, 160, 107, 2.61, 66.4, 87.3, 30.4),
        (0.75, 128, 69, 2.61, 63.2, 85.3, 21.9),
        (0.75, 96, 39, 2.61, 58.8, 81.6, 14.2),
        (0.5, 224, 97, 1.95, 65.4, 86.4, 28.7),
        (0.5, 192, 71, 1.95, 63.9, 85.4, 21.1),
        (0.5, 160, 50, 1.95, 61.0, 83.2, 14.9),
        (0.5, 128, 32, 1.95, 57.7, 80.8, 9.9),
        (0.5, 96, 18, 1.95, 51.2, 75.8, 6.4),
        (0.35, 224, 59, 1.66, 60.3, 82.9, 19.7),
        (0.35, 192, 43, 1.66, 58.2, 81.2, 14.6),
        (0.35, 160, 30, 1.66, 55.7, 79.1, 10.5),
        (0.35, 128, 20, 1.66, 50.8, 75.0, 6.9),
        (0.35, 96, 11, 1.66, 45.5, 70.4, 4.5),
    )
)

#: "All with expansion ratio 6": no released MobileNetV2 checkpoint has another.
TFSLIM_MOBILENET_V2_EXPANSION = 6.0

TFSLIM_MOBILENET_V1: tuple[TfSlimRow, ...] = tuple(
    TfSlimRow(*r)
    for r in (
        (1.0, 224, 569, 4.24, 70.9, 89.9),
        (1.0, 192, 418, 4.24, 70.0, 89.2),
        (1.0, 160, 291, 4.24, 68.0, 87.7),
        (1.0, 128, 186, 4.24, 65.2, 85.8),
        (0.75, 224, 317, 2.59, 68.4, 88.2),
        (0.75, 192, 233, 2.59, 67.2, 87.3),
        (0.75, 160, 162, 2.59, 65.3, 86.0),
        (0.75, 128, 104, 2.59, 62.1, 83.9),
        (0.5, 224, 150, 1.34, 63.3, 84.9),
        (0.5, 192, 110, 1.34, 61.7, 83.6),
        (0.5, 160, 77, 1.34, 59.1, 81.9),
        (0.5, 128, 49, 1.34, 56.3, 79.4),
        (0.25, 224, 41, 0.47, 49.8, 74.2),
        (0.25, 192, 34, 0.47, 47.7, 72.3),
        (0.25, 160, 21, 0.47, 45.5, 70.3),
        (0.25, 128, 14, 0.47, 41.5, 66.3),
    )
)

#: torchvision's ``mobilenet_v2()`` (1.0, 224, 1000 classes, BatchNorm weight and bias):
#: ``sum(p.numel())``, as quoted in published_imagenet.md (3.47 M published vs 3,504,872).
TORCHVISION_MOBILENET_V2_PARAMS = 3_504_872

# --------------------------------------------------------------------------------------------
# The MobileNetV1 paper (Howard et al., 2017, arXiv 1704.04861), Tables 6 (width multipliers)
# and 7 (resolutions): millions, rounded in print (the paper's own rounding is not consistent).


@dataclass(frozen=True)
class V1PaperRow:
    """One MobileNetV1 of the MobileNetV1 paper."""

    width: float
    resolution: int
    madds_m: float
    params_m: float


MOBILENETV1_PAPER: tuple[V1PaperRow, ...] = tuple(
    V1PaperRow(*r)
    for r in (
        (1.0, 224, 569, 4.2),
        (0.75, 224, 325, 2.6),
        (0.5, 224, 149, 1.3),
        (0.25, 224, 41, 0.5),
        (1.0, 192, 418, 4.2),
        (1.0, 160, 290, 4.2),
        (1.0, 128, 186, 4.2),
    )
)

# --------------------------------------------------------------------------------------------
# ShuffleNet v1 (Zhang et al., arXiv 1707.01083), g = 3.

#: (width, MFLOPs = MAdds, params in M or None, top-1, source), as in published_imagenet.md.
SHUFFLENET_G3: tuple[tuple[float, float, float | None, float, str], ...] = (
    (1.0, 140, None, 67.4, "ShuffleNet paper (arXiv 1707.01083): 32.6 % error"),
    (1.5, 292, 3.4, 71.5, "MobileNetV2 paper, Table 4 (params estimated)"),
    (2.0, 524, 5.4, 73.7, "MobileNetV2 paper, Table 4 (params estimated)"),
)

#: The ShuffleNet paper's Table 1: complexity of the 1x, g = 3 network, MFLOPs (multiply-adds).
SHUFFLENET_G3_1X_TABLE1_MFLOPS = 137
