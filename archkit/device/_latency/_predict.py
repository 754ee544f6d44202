"""Load a stored latency model (refusing one built under other conditions) and predict.

Nothing here contacts a device or imports tvm or onnxruntime: the conditions are read from
package metadata, ``/proc/cpuinfo``, the governor file and the tuning database's record count.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from archkit.device._latency._conditions import (
    RUNTIMES,
    Conditions,
    current_conditions,
    differences,
    tuning_label,
)
from archkit.device._latency._errors import LatencyModelError
from archkit.device._latency._model import LatencyModel
from archkit.device._latency._store import model_path, read_model_json

__all__ = ["conditions_now", "load_latency_model", "predict_latency", "resolve_device"]


def resolve_device(device: Any) -> Any:
    """A :class:`~archkit.device.DeviceProfile` from a name, a path or a profile."""
    if isinstance(device, str | os.PathLike):
        from archkit.device import load_device

        return load_device(device)
    return device


def conditions_now(device: Any, runtime: str, *, for_build: bool = False,
                   database_folder: str | None = None) -> tuple[Conditions, str | None]:
    """The current conditions, and (TVM) the tuning database folder they were read from.

    For a build the folder is computed from the device's target (this imports tvm); for a
    prediction it is the folder the model recorded.
    """
    if runtime not in RUNTIMES:
        raise LatencyModelError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    tuning = None
    if runtime == "tvm":
        from archkit.device._latency._runtimes import count_tuning_records, tuning_database_dir

        if for_build:
            database_folder = str(tuning_database_dir(device))
        records = count_tuning_records(database_folder)
        tuning = tuning_label(records)
    conditions = current_conditions(device, runtime, tuning=tuning)
    if database_folder is not None:
        conditions.extra["tuning_database"] = database_folder
    return conditions, database_folder


def _rebuild_hint(device: str, runtime: str) -> str:
    return (f"rebuild it here with: archkit latency build {device} --runtime {runtime} "
            f"(or adapt another device's model: archkit latency build {device} --runtime "
            f"{runtime} --from OTHER --networks 20)")


def load_latency_model(device: Any, *, runtime: str = "onnxruntime", cache_dir: Any = None,
                       check: bool = True) -> LatencyModel:
    """The stored model for (``device``, ``runtime``), checked against the current conditions.

    Args:
        device: Device name, profile path or :class:`~archkit.device.DeviceProfile`.
        runtime: ``onnxruntime`` or ``tvm``.
        cache_dir: Cache root (default :func:`archkit.device.default_cache_dir`).
        check: Refuse a model built under other conditions (versions, threads, CPU,
            governor, tuning state).

    Raises:
        LatencyModelError: No model, an unreadable one, or (``check``) one built under other
            conditions; the message says what differs and how to rebuild.
    """
    if runtime not in RUNTIMES:
        raise LatencyModelError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    profile = resolve_device(device)
    path = model_path(profile.name, runtime, cache_dir)
    if not path.is_file():
        raise LatencyModelError(
            f"no {runtime} latency model for device {profile.name!r} (looked for {path}); "
            f"build one with: archkit latency build {profile.name} --runtime {runtime}"
        )
    model = LatencyModel.from_json(read_model_json(path), source=str(path))
    if check:
        now, _ = conditions_now(profile, runtime,
                                database_folder=model.conditions.extra.get("tuning_database"))
        diff = differences(model.conditions, now)
        if diff:
            raise LatencyModelError(
                f"the {profile.name}/{runtime} latency model ({path}) was built under other "
                "conditions than these:\n  " + "\n  ".join(diff) + "\n"
                + _rebuild_hint(profile.name, runtime)
            )
    return model


# (device, runtime, cache_dir) -> (model file, its mtime, model); a search calls predict_latency
# thousands of times and pays for loading and checking once.
_LOADED: dict[tuple[Any, str, str], tuple[Path, float, LatencyModel]] = {}


def predict_latency(spec: Any, device: Any, *, runtime: str = "onnxruntime",
                    cache_dir: Any = None) -> float:
    """Predicted end-to-end latency of ``spec`` on ``device`` in ms, without the device.

    The model is loaded (and its conditions checked) once per process and reloaded when its
    file changes; block predictions are cached by block configuration.

    Args:
        spec: A :class:`~archkit.spec.Spec`.
        device: Device name or :class:`~archkit.device.DeviceProfile`.
        runtime: ``onnxruntime`` or ``tvm``.
        cache_dir: Cache root.

    Raises:
        LatencyModelError: No model, one built under other conditions, or a kernel kind the
            model never measured.
    """
    key = (device, runtime, str(cache_dir))
    entry = _LOADED.get(key)
    if entry is not None:
        try:
            fresh = entry[0].stat().st_mtime == entry[1]
        except OSError:
            fresh = False
        if fresh:
            return entry[2].predict(spec)
    profile = resolve_device(device)
    model = load_latency_model(profile, runtime=runtime, cache_dir=cache_dir)
    path = model_path(profile.name, runtime, cache_dir)
    _LOADED[key] = (path, path.stat().st_mtime, model)
    return model.predict(spec)
