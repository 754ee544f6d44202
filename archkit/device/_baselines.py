"""Host baselines for context: PyTorch eager and onnxruntime on this machine."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["host_baselines"]


def _time_ms(fn: Any, repeats: int, min_repeat_ms: float = 20.0) -> dict[str, float]:
    import numpy as np

    from archkit.device._ort_remote import time_calls  # one timing protocol for every runtime

    samples, _ = time_calls(fn, repeats, min_repeat_ms)
    return {"median_ms": float(np.median(samples)), "p90_ms": float(np.percentile(samples, 90))}


def host_baselines(
    model: torch.nn.Module, example_input: torch.Tensor, repeats: int = 30
) -> dict[str, Any]:
    """Median latency of the model on this machine with PyTorch eager and onnxruntime.

    Args:
        model: The network (run in eval mode, training flag restored).
        example_input: Input batch.
        repeats: Timed repeats (each at least ~20 ms of back-to-back runs).

    Returns:
        JSON-able dict: ``pytorch_eager_ms``, ``pytorch_eager_p90_ms``, ``onnxruntime_ms``,
        ``onnxruntime_p90_ms``, ``onnxruntime_max_abs_diff`` and versions/threads.
    """
    import numpy as np
    import onnxruntime as ort
    import torch

    from archkit.build import export_onnx

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            eager = _time_ms(lambda: model(example_input), repeats)
            reference = model(example_input)
            reference = reference[0] if isinstance(reference, list | tuple) else reference
        with tempfile.TemporaryDirectory(prefix="archkit-onnx-") as tmp:
            path = Path(tmp) / "model.onnx"
            export_onnx(None, path, model=model, example=example_input)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    finally:
        model.train(was_training)
    input_name = session.get_inputs()[0].name
    feed = {input_name: example_input.detach().cpu().numpy()}
    got = session.run(None, feed)[0]
    onnx = _time_ms(lambda: session.run(None, feed), repeats)
    return {
        "pytorch_eager_ms": eager["median_ms"],
        "pytorch_eager_p90_ms": eager["p90_ms"],
        "onnxruntime_ms": onnx["median_ms"],
        "onnxruntime_p90_ms": onnx["p90_ms"],
        "onnxruntime_max_abs_diff": float(np.max(np.abs(got - reference.numpy()))),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime_version": ort.__version__,
        "repeats": repeats,
    }
