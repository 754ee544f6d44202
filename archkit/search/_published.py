"""Published ImageNet top-1 of the MobileNetV2 and MobileNetV1 checkpoints: calibration data.

Copied from ``shared/reference/published_imagenet.md`` (tests/search/test_published.py checks every
number against that file when it is present). Sources:

- MobileNetV2: TF-slim released checkpoints, tensorflow/models
  ``research/slim/nets/mobilenet/README.md`` (all with expansion ratio 6).
- MobileNetV1: TF-slim float checkpoints, tensorflow/models
  ``research/slim/nets/mobilenet_v1.md``.

The published MACs and parameter counts are kept for reference only: the estimator's features are
the exact analytic counts of :func:`archkit.cost.count` on the specs below (the published MACs are
truncated to whole millions and the parameter counts use the TF-slim convention).
"""

from __future__ import annotations

__all__ = ["MOBILENETV2", "MOBILENETV1", "FAMILY_SPECS", "CALIBRATED_EXPANSION"]

#: (width, resolution, published MACs in millions, published params in millions, top-1 %)
MOBILENETV2: tuple[tuple[float, int, int, float, float], ...] = (
    (1.4, 224, 582, 6.06, 75.0),
    (1.3, 224, 509, 5.34, 74.4),
    (1.0, 224, 300, 3.47, 71.8),
    (1.0, 192, 221, 3.47, 70.7),
    (1.0, 160, 154, 3.47, 68.8),
    (1.0, 128, 99, 3.47, 65.3),
    (1.0, 96, 56, 3.47, 60.3),
    (0.75, 224, 209, 2.61, 69.8),
    (0.75, 192, 153, 2.61, 68.7),
    (0.75, 160, 107, 2.61, 66.4),
    (0.75, 128, 69, 2.61, 63.2),
    (0.75, 96, 39, 2.61, 58.8),
    (0.5, 224, 97, 1.95, 65.4),
    (0.5, 192, 71, 1.95, 63.9),
    (0.5, 160, 50, 1.95, 61.0),
    (0.5, 128, 32, 1.95, 57.7),
    (0.5, 96, 18, 1.95, 51.2),
    (0.35, 224, 59, 1.66, 60.3),
    (0.35, 192, 43, 1.66, 58.2),
    (0.35, 160, 30, 1.66, 55.7),
    (0.35, 128, 20, 1.66, 50.8),
    (0.35, 96, 11, 1.66, 45.5),
)

MOBILENETV1: tuple[tuple[float, int, int, float, float], ...] = (
    (1.0, 224, 569, 4.24, 70.9),
    (1.0, 192, 418, 4.24, 70.0),
    (1.0, 160, 291, 4.24, 68.0),
    (1.0, 128, 186, 4.24, 65.2),
    (0.75, 224, 317, 2.59, 68.4),
    (0.75, 192, 233, 2.59, 67.2),
    (0.75, 160, 162, 2.59, 65.3),
    (0.75, 128, 104, 2.59, 62.1),
    (0.5, 224, 150, 1.34, 63.3),
    (0.5, 192, 110, 1.34, 61.7),
    (0.5, 160, 77, 1.34, 59.1),
    (0.5, 128, 49, 1.34, 56.3),
    (0.25, 224, 41, 0.47, 49.8),
    (0.25, 192, 34, 0.47, 47.7),
    (0.25, 160, 21, 0.47, 45.5),
    (0.25, 128, 14, 0.47, 41.5),
)

#: The only expansion ratio any published MobileNetV2 checkpoint uses.
CALIBRATED_EXPANSION = 6.0

# The architectures the checkpoints were trained with (same as specs/mobilenetv2.yaml and
# specs/mobilenetv1.yaml; a test checks they parse to equal specs). Kept here so that an installed
# archkit, without the repository's specs/ folder, can still calibrate.
FAMILY_SPECS = {
    "mobilenetv2": """
name: mobilenetv2
input: {resolution: 224, channels: 3}
num_classes: 1000
width: 1.0
channel_rounding: {divisor: 8, min_ratio: 0.9}
layers:
  - {op: conv2d, c: 32, s: 2}
  - {op: bottleneck, t: 1, c: 16, n: 1, s: 1}
  - {op: bottleneck, t: 6, c: 24, n: 2, s: 2}
  - {op: bottleneck, t: 6, c: 32, n: 3, s: 2}
  - {op: bottleneck, t: 6, c: 64, n: 4, s: 2}
  - {op: bottleneck, t: 6, c: 96, n: 3, s: 1}
  - {op: bottleneck, t: 6, c: 160, n: 3, s: 2}
  - {op: bottleneck, t: 6, c: 320, n: 1, s: 1}
  - {op: conv2d, c: 1280, kernel: 1, width_scaling: grow_only}
  - {op: avgpool}
  - {op: dropout, p: 0.2}
  - {op: fc}
""",
    "mobilenetv1": """
name: mobilenetv1
input: {resolution: 224, channels: 3}
num_classes: 1000
width: 1.0
channel_rounding: {divisor: 8, min_ratio: 0.9}
layers:
  - {op: conv2d, c: 32, s: 2}
  - {op: dwsep, c: 64, n: 1, s: 1}
  - {op: dwsep, c: 128, n: 2, s: 2}
  - {op: dwsep, c: 256, n: 2, s: 2}
  - {op: dwsep, c: 512, n: 6, s: 2}
  - {op: dwsep, c: 1024, n: 2, s: 2}
  - {op: avgpool}
  - {op: dropout, p: 0.001}
  - {op: fc}
""",
}
