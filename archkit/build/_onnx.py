"""ONNX export: the one exporter archkit uses (the device layer's host baselines call it too)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from archkit.build._model import build_model, example_input
from archkit.spec import Spec

__all__ = ["export_onnx", "ONNX_OPSET", "quiet_export_notices"]

#: The opset the torch.export-based exporter targets natively (torch 2.13); asking it for an
#: older one adds a version-conversion pass.
ONNX_OPSET = 18


def export_onnx(
    spec: Spec | None,
    path: str | Path,
    *,
    model: nn.Module | None = None,
    example: torch.Tensor | None = None,
    opset: int = ONNX_OPSET,
    dynamo: bool = True,
) -> Path:
    """Export a model (eval mode) to ONNX and return the path.

    Args:
        spec: the spec whose model is exported; ``None`` when ``model`` and ``example`` are given
            (any ``nn.Module``, e.g. a model the caller built or loaded).
        path: the ``.onnx`` file to write (its folder is created).
        model: the model to export; built from ``spec`` when ``None``. It is put in eval mode.
        example: the input to trace with; :func:`~archkit.build.example_input` of ``spec``
            (batch 1) when ``None``.
        opset: the ONNX opset.
        dynamo: ``torch.onnx.export``'s torch.export-based exporter (the default, which every
            shipped spec exports through with onnxruntime matching PyTorch); ``False`` selects
            the deprecated TorchScript exporter.

    The input is named ``input``; the outputs are named after ``model.output_names`` (an
    :class:`~archkit.build.ArchNet`: ``output``, or one name per detection head map) when the
    model has them. Weights are stored inside the file.

    Raises:
        ValueError: ``spec`` is ``None`` and ``model`` or ``example`` is missing.
    """
    if spec is None and (model is None or example is None):
        raise ValueError("export_onnx needs a spec, or both a model and an example input")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = (model if model is not None else build_model(spec)).eval()
    x = example if example is not None else example_input(spec)
    names = getattr(model, "output_names", None)
    quiet_export_notices()
    options = {"external_data": False, "verbose": False} if dynamo else {}
    with torch.no_grad(), _quiet_torchvision_notice():
        torch.onnx.export(
            model, (x,), str(path), input_names=["input"],
            output_names=list(names) if names else None, opset_version=opset, dynamo=dynamo,
            **options,
        )
    return path


def quiet_export_notices() -> None:
    """Hide the FutureWarning torch 2.13 raises inside its own ``ExportedProgram`` code: deep
    copying a program (``run_decompositions``, which the ONNX exporter and TVM's importer call)
    rebuilds a ``LeafSpec``, which torch itself deprecates. It is addressed to torch, not to
    archkit's users. With ``dynamo=False``, the notices of torch's TorchScript-based exporter.
    Filters on those messages (not a ``catch_warnings`` block, which is not thread-safe:
    measurements export in worker threads); calling it again adds nothing."""
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
    )
    # ``dynamo=False``, asked for by name: torch's notice that its TorchScript-based exporter
    # is no longer the default, and one about its own logging set-up.
    warnings.filterwarnings(
        "ignore", message="You are using the legacy TorchScript-based ONNX export",
        category=DeprecationWarning,
    )
    warnings.filterwarnings(
        "ignore", message="The feature will be removed", category=DeprecationWarning,
        module=r"torch\.onnx\.",
    )


class _DropTorchvisionNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "torchvision is not installed" not in record.getMessage()


@contextlib.contextmanager
def _quiet_torchvision_notice() -> Iterator[None]:
    """The exporter logs a warning per torchvision operator it cannot register when torchvision
    is absent; archkit's models use none of them."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    notice = _DropTorchvisionNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)
