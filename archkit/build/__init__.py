"""Build PyTorch models (and ONNX files) from specs. Importing this module imports torch."""

from archkit.build._model import (
    ArchNet,
    BlockModule,
    build_model,
    calibrate_batchnorm,
    example_input,
)
from archkit.build._onnx import ONNX_OPSET, export_onnx, quiet_export_notices

__all__ = [
    "ArchNet", "BlockModule", "ONNX_OPSET", "build_model", "calibrate_batchnorm",
    "example_input", "export_onnx", "quiet_export_notices",
]
