"""Build PyTorch models (and ONNX files) from specs. Importing this module imports torch."""

from archkit.build._torch import (
    ArchNet,
    BlockModule,
    build_model,
    calibrate_batchnorm,
    example_input,
    export_onnx,
)

__all__ = [
    "ArchNet", "BlockModule", "build_model", "calibrate_batchnorm", "example_input", "export_onnx",
]
