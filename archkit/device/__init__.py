"""Device latency: compile a network with Apache TVM for a board, check it, time it there.

``import archkit.device`` imports neither torch nor tvm; they load on first use.

Example:
    >>> dev = load_device("rpi4", host="192.168.1.7")               # doctest: +SKIP
    >>> res = measure_latency(model, torch.randn(1, 3, 224, 224), dev, tune_trials=64)  # +SKIP
    >>> res.median_ms, res.metadata["tuning"]                       # doctest: +SKIP
    >>> [m.to_dict() for m in measure_specs([load_spec("specs/mobilenetv2.yaml")], dev)]  # +SKIP
    >>> pi = load_device("rpi4", ssh="pi@raspberrypi")   # `archkit serve` on the board  # +SKIP
    >>> measure_specs([spec], pi, runtime="onnxruntime")                # doctest: +SKIP
    >>> predict_latency(load_spec("specs/mobilenetv2.yaml"), "host", runtime="onnxruntime")  # +SKIP

Latency models (``predict_latency``, ``build_latency_model``; see docs/latency.md) predict a
network's latency from measurements taken once on the device, in microseconds and without it.
"""

from archkit.device._baselines import host_baselines
from archkit.device._connect import check_reachable
from archkit.device._devices import (
    Connection,
    DeviceProfile,
    available_devices,
    load_device,
    server_help,
)
from archkit.device._errors import DeviceError, MeasurementError
from archkit.device._farm import RUNTIMES, measure_many
from archkit.device._kernel_times import KernelProfile
from archkit.device._latency import (
    BuildResult,
    Evaluation,
    LatencyModel,
    LatencyModelError,
    Prediction,
    TimingProtocol,
    build_latency_model,
    evaluate_latency_model,
    list_latency_models,
    load_latency_model,
    measure_networks,
    predict_latency,
    prepare_tvm_libraries,
)
from archkit.device._measure import LatencyResult, measure_latency, results_frame
from archkit.device._onnxruntime import measure_onnxruntime
from archkit.device._specs import SpecLatency, measure_specs
from archkit.device._tune import TuningStats, database_dir, default_cache_dir

__all__ = [
    "RUNTIMES",
    "BuildResult",
    "Connection",
    "DeviceError",
    "DeviceProfile",
    "Evaluation",
    "KernelProfile",
    "LatencyModel",
    "LatencyModelError",
    "LatencyResult",
    "MeasurementError",
    "Prediction",
    "RUNTIMES",
    "SpecLatency",
    "TimingProtocol",
    "TuningStats",
    "available_devices",
    "build_latency_model",
    "check_reachable",
    "database_dir",
    "default_cache_dir",
    "evaluate_latency_model",
    "host_baselines",
    "list_latency_models",
    "load_device",
    "load_latency_model",
    "measure_latency",
    "measure_many",
    "measure_networks",
    "measure_onnxruntime",
    "measure_specs",
    "predict_latency",
    "prepare_tvm_libraries",
    "results_frame",
    "server_help",
]
