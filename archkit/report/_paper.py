"""Old home of the published numbers, now :mod:`archkit.reference`.

Only ``archkit/report/_plot_data.py`` still imports this name; it goes when that module imports
:mod:`archkit.reference` (issue 10's merge).
"""

from archkit.reference import (
    FIGURE5_EXTRA,
    NASNET_A,
    SHUFFLENET_G3,
    TFSLIM_MOBILENET_V1,
    TFSLIM_MOBILENET_V2,
)

__all__ = [
    "FIGURE5_EXTRA",
    "NASNET_A",
    "SHUFFLENET_G3",
    "TFSLIM_MOBILENET_V1",
    "TFSLIM_MOBILENET_V2",
]
