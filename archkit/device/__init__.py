"""Device latency: compile a network with Apache TVM for a board, check it, time it there.

``import archkit.device`` imports neither torch nor tvm; they load on first use.

Example:
    >>> dev = load_device("rpi4", host="192.168.1.7")               # doctest: +SKIP
    >>> res = measure_latency(model, torch.randn(1, 3, 224, 224), dev, tune_trials=64)  # +SKIP
    >>> res.median_ms, res.metadata["tuning"]                       # doctest: +SKIP
    >>> [m.to_dict() for m in measure_specs([load_spec("specs/mobilenetv2.yaml")], dev)]  # +SKIP
    >>> pi = load_device("rpi4", ssh="pi@raspberrypi")   # `archkit serve` on the board  # +SKIP
    >>> measure_specs([spec], pi, runtime="onnxruntime")                # doctest: +SKIP
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
from archkit.device._measure import LatencyResult, measure_latency, results_frame
from archkit.device._onnxruntime import measure_onnxruntime
from archkit.device._specs import SpecLatency, measure_specs
from archkit.device._tune import TuningStats, database_dir, default_cache_dir

__all__ = [
    "Connection",
    "DeviceError",
    "DeviceProfile",
    "LatencyResult",
    "MeasurementError",
    "RUNTIMES",
    "SpecLatency",
    "TuningStats",
    "available_devices",
    "check_reachable",
    "database_dir",
    "default_cache_dir",
    "host_baselines",
    "load_device",
    "measure_latency",
    "measure_many",
    "measure_onnxruntime",
    "measure_specs",
    "results_frame",
    "server_help",
]
