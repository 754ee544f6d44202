"""The ``published`` estimator's calibration data: the 38 released TF-slim checkpoints.

The numbers live in :mod:`archkit.reference` (with their sources); this module gives the
estimator the columns it fits on and the architectures the checkpoints were trained with, read
from the shipped specs (``archkit/data/specs/mobilenetv2.yaml`` and ``mobilenetv1.yaml``).

The published MACs and parameter counts are kept for reference only: the estimator's features are
the exact analytic counts of :func:`archkit.cost.count` on the shipped specs (the published MACs
are truncated to whole millions and the parameter counts use the TF-slim convention).
"""

from __future__ import annotations

from archkit._data import shipped_file
from archkit.reference import (
    TFSLIM_MOBILENET_V1,
    TFSLIM_MOBILENET_V2,
    TFSLIM_MOBILENET_V2_EXPANSION,
    TfSlimRow,
)

__all__ = ["MOBILENETV2", "MOBILENETV1", "FAMILY_SPECS", "CALIBRATED_EXPANSION"]


def _calibration_rows(
    rows: tuple[TfSlimRow, ...],
) -> tuple[tuple[float, int, int, float, float], ...]:
    return tuple((r.width, r.resolution, r.macs_m, r.params_m, r.top1) for r in rows)


#: (width, resolution, published MACs in millions, published params in millions, top-1 %)
MOBILENETV2 = _calibration_rows(TFSLIM_MOBILENET_V2)
MOBILENETV1 = _calibration_rows(TFSLIM_MOBILENET_V1)

#: The only expansion ratio any published MobileNetV2 checkpoint uses.
CALIBRATED_EXPANSION = TFSLIM_MOBILENET_V2_EXPANSION

#: family -> the YAML text of the shipped spec the checkpoints were trained with.
FAMILY_SPECS: dict[str, str] = {
    family: shipped_file("specs", family).read_text(encoding="utf-8")
    for family in ("mobilenetv2", "mobilenetv1")
}
