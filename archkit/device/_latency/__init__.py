"""Latency models built on the user's own device: predict a network's latency without it.

Per (device, runtime): per-kind kernel regressors trained on per-kernel times of whole-network
runs, summed, plus a network correction fitted on end-to-end times; stored as JSON under
``<cache>/latency/`` with the conditions it was built under. See ``docs/latency.md``.
"""

from archkit.device._latency._build import (
    BuildResult,
    Evaluation,
    build_latency_model,
    evaluate_latency_model,
    measure_networks,
    prepare_tvm_libraries,
)
from archkit.device._latency._conditions import RUNTIMES, Conditions, TimingProtocol
from archkit.device._latency._errors import LatencyModelError
from archkit.device._latency._model import LatencyModel, Prediction
from archkit.device._latency._predict import load_latency_model, predict_latency
from archkit.device._latency._store import list_models as list_latency_models

__all__ = [
    "RUNTIMES",
    "BuildResult",
    "Conditions",
    "Evaluation",
    "LatencyModel",
    "LatencyModelError",
    "Prediction",
    "TimingProtocol",
    "build_latency_model",
    "evaluate_latency_model",
    "list_latency_models",
    "load_latency_model",
    "measure_networks",
    "predict_latency",
    "prepare_tvm_libraries",
]
