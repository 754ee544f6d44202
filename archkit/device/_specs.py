"""Latency of specs: build each network, give its BatchNorm real statistics, measure it on a
device (checked against PyTorch there), and time it on this host for context.

This is what ``archkit profile SPEC --device NAME`` runs; the command only renders the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archkit.device._baselines import host_baselines
from archkit.device._devices import DeviceProfile
from archkit.device._errors import DeviceError, MeasurementError
from archkit.device._farm import measure_many
from archkit.device._measure import LatencyResult

if TYPE_CHECKING:  # pragma: no cover
    from archkit.spec import Spec

__all__ = ["SpecLatency", "measure_specs"]


@dataclass(frozen=True)
class SpecLatency:
    """One spec measured on a device.

    Attributes:
        spec: The spec that was built and measured.
        result: The measurement, or the :class:`MeasurementError` it failed with.
        host_baselines: PyTorch eager and onnxruntime on this host (see
            :func:`host_baselines`); None when not asked for or when the measurement failed.
    """

    spec: Spec
    result: LatencyResult | MeasurementError
    host_baselines: dict[str, Any] | None = None

    @property
    def failed(self) -> bool:
        """True when the measurement failed."""
        return isinstance(self.result, MeasurementError)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: the result's (plus ``host_baselines``), or ``{"error": message}``."""
        if isinstance(self.result, MeasurementError):
            return {"error": str(self.result)}
        out = self.result.to_dict()
        if self.host_baselines is not None:
            out["host_baselines"] = self.host_baselines
        return out


def measure_specs(
    specs: Sequence[Spec],
    device: DeviceProfile,
    *,
    tune_trials: int = 0,
    cache_dir: str | Path | None = None,
    repeats: int = 30,
    baselines: bool = True,
    progress: bool = True,
    runtime: str = "tvm",
    profile_runs: int = 0,
) -> list[SpecLatency]:
    """Build, calibrate and measure every spec on ``device``; optionally add host baselines.

    Each network is built from its spec and its BatchNorms calibrated on a random batch
    (``archkit.build.calibrate_batchnorm``: with untrained statistics the outputs are so small
    that the check against PyTorch would pass for any program), then all are measured with
    :func:`measure_many` on the spec's example input. A failed measurement is kept in its slot;
    the others go on.

    Args:
        specs: The specs (their resolution and width are compiled in).
        device: From :func:`load_device`.
        tune_trials: MetaSchedule trials per network (see :func:`measure_latency`).
        cache_dir: Tuning cache root (default ``$ARCHKIT_CACHE_DIR`` or ``~/.cache/archkit``).
        repeats: Timed repeats on the device.
        baselines: Also time PyTorch eager and onnxruntime on this host (:func:`host_baselines`).
        progress: Show progress.
        runtime: ``tvm`` or ``onnxruntime`` (on a board: through ``archkit serve``, the same
            RPC transport; see :func:`measure_onnxruntime`).
        profile_runs: Also time every layer: this many profiled whole-network runs after the
            timing (``result.kernel_profile``; see :func:`measure_latency`). Over RPC this
            needs ``archkit serve`` on the board. 0: no per-layer times.

    Returns:
        One :class:`SpecLatency` per spec, in order.

    Raises:
        DeviceError: The device cannot be reached at all (or, with ``profile_runs``, is not
            ``archkit serve``), before any measurement.
    """
    from archkit.device import _connect
    from archkit.device._farm import RUNTIMES

    if runtime not in RUNTIMES:
        raise DeviceError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if device.connection.ssh:  # one tunnel for all the specs
        from archkit.device._tunnel import ssh_tunnel

        with ssh_tunnel(device) as through:
            return measure_specs(
                specs, through, tune_trials=tune_trials, cache_dir=cache_dir, repeats=repeats,
                baselines=baselines, progress=progress, runtime=runtime, profile_runs=profile_runs,
            )  # fmt: skip
    # Before building anything (torch) or compiling: the board must answer as a TVM RPC server
    # (for onnxruntime: as `archkit serve`).
    _connect.check_reachable(device, runtime=runtime, kernels=profile_runs > 0)
    from archkit.build import build_model, calibrate_batchnorm, example_input

    jobs = []
    for spec in specs:
        model = calibrate_batchnorm(build_model(spec), spec)
        jobs.append((spec.name, model, example_input(spec)))
    cache = Path(cache_dir) if cache_dir else None
    results = measure_many(jobs, device, tune_trials=tune_trials, repeats=repeats,
                           cache_dir=cache, progress=progress, runtime=runtime,
                           profile_runs=profile_runs)
    measured = []
    for spec, (_, model, x), result in zip(specs, jobs, results, strict=True):
        base = host_baselines(model, x) if baselines and isinstance(result, LatencyResult) else None
        measured.append(SpecLatency(spec, result, base))
    return measured
