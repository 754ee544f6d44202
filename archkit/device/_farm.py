"""Measure several networks on a device farm: every free board of a tracker key in parallel.

TVM's RPC tracker hands each job a free board of the key and queues the rest. Host-side work
(export, compile, tuning) runs one job at a time (it is serialised by locks); measurements on
the boards overlap. One failed job is reported as a :class:`MeasurementError` in its slot and
the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archkit.device._devices import DeviceProfile
from archkit.device._errors import DeviceError, MeasurementError
from archkit.device._measure import LatencyResult, measure_latency
from archkit.device._onnxruntime import measure_onnxruntime

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["RUNTIMES", "measure_many"]

#: What runs the network on the device: TVM's compiled module, or onnxruntime (``archkit serve``).
RUNTIMES = ("tvm", "onnxruntime")


def measure_many(
    jobs: list[tuple[str, torch.nn.Module, torch.Tensor]],
    device: DeviceProfile,
    *,
    tune_trials: int = 0,
    cache_dir: Path | None = None,
    repeats: int = 30,
    number: int = 0,
    atol: float = 1e-3,
    rtol: float = 1e-3,
    max_parallel: int | None = None,
    progress: bool = True,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    runtime: str = "tvm",
    profile_runs: int = 0,
) -> list[LatencyResult | MeasurementError]:
    """Measure every job; in parallel over the tracker's boards for ``tracker`` devices.

    Args:
        jobs: ``(name, model, example_input)`` triples.
        device: The device (``tracker``: one worker per board registered with the key).
        tune_trials: As in :func:`measure_latency` (tuning runs one network at a time; later
            networks reuse the layers earlier ones tuned).
        cache_dir: Tuning cache root.
        repeats: Timed repeats per job.
        number: Runs per repeat (0: automatic).
        atol: Absolute tolerance of the output check (see :func:`measure_latency`).
        rtol: Relative tolerance of the output check.
        max_parallel: Cap on parallel jobs (default: number of boards; 1 for local/rpc).
        progress: Show progress.
        on_event: ``on_event(stage, info)`` callback; ``info["name"]`` is the job name.
        runtime: ``tvm`` (compiled by TVM) or ``onnxruntime`` (the board runs ``archkit
            serve``; see :func:`measure_onnxruntime`; ``tune_trials`` does not apply).
        profile_runs: Also take per-kernel times from this many profiled runs (each result's
            ``kernel_profile``; over RPC the boards must run ``archkit serve``).

    Returns:
        One entry per job, in order: a :class:`LatencyResult`, or the
        :class:`MeasurementError` that job failed with.

    Raises:
        DeviceError: The device (or tracker) cannot be reached at all, before any job runs.
    """
    from archkit.device import _connect

    if runtime not in RUNTIMES:
        raise DeviceError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if device.connection.ssh:  # one tunnel for the whole batch
        from archkit.device._tunnel import ssh_tunnel

        with ssh_tunnel(device) as through:
            return measure_many(
                jobs, through, tune_trials=tune_trials, cache_dir=cache_dir, repeats=repeats,
                number=number, atol=atol, rtol=rtol, max_parallel=max_parallel,
                progress=progress, on_event=on_event, runtime=runtime, profile_runs=profile_runs,
            )  # fmt: skip
    # Before any export or compile: a real session with the board (or the tracker's summary).
    _connect.check_reachable(device, runtime=runtime, kernels=profile_runs > 0)
    workers = 1
    if device.connection.kind == "tracker":
        total, _ = _connect.tracker_servers(device)
        workers = max(1, total)
    if max_parallel is not None:
        workers = max(1, min(workers, max_parallel))

    bar = None
    if progress:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(
            TextColumn(f"[bold]measuring on {device.name}[/] ({workers} parallel)"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),  # stdout carries --format json/csv
        )
        bar_task = bar.add_task("jobs", total=len(jobs))
        bar.start()

    def run(job: tuple[str, Any, Any]) -> LatencyResult | MeasurementError:
        name, model, example = job
        try:
            if runtime == "onnxruntime":
                return measure_onnxruntime(
                    model, example, device, repeats=repeats, atol=atol, rtol=rtol, name=name,
                    on_event=on_event, profile_runs=profile_runs,
                )  # fmt: skip
            return measure_latency(
                model,
                example,
                device,
                tune_trials=tune_trials,
                cache_dir=cache_dir,
                repeats=repeats,
                number=number,
                atol=atol,
                rtol=rtol,
                name=name,
                progress=False,
                on_event=on_event,
                profile_runs=profile_runs,
            )
        except MeasurementError as err:
            if err.job is None:
                return MeasurementError(err.reason, job=name, stage=err.stage)
            return err
        except DeviceError as err:  # the board vanished between jobs
            return MeasurementError(str(err), job=name, stage="connect")
        except Exception as err:  # noqa: BLE001 - one job must not stop the batch
            return MeasurementError(f"{type(err).__name__}: {err}", job=name, stage="unknown")
        finally:
            if bar is not None:
                bar.update(bar_task, advance=1)

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archkit-farm") as pool:
            return list(pool.map(run, jobs))
    finally:
        if bar is not None:
            bar.stop()
