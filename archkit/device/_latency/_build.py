"""Build, adapt and evaluate latency models on the user's own device.

The networks come from the caller (``archkit.search.random_candidates`` draws them from search
spaces); this module measures them with :func:`measure_group`, appends every result to the
measurements file as it comes, fits, and writes the model.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archkit.device._errors import MeasurementError
from archkit.device._latency._conditions import (
    RUNTIMES,
    UNTUNED,
    Conditions,
    TimingProtocol,
    differences,
)
from archkit.device._latency._errors import LatencyModelError
from archkit.device._latency._kernels import kernel_rows, network_fingerprint
from archkit.device._latency._model import (
    ADAPT_MIN_NETWORKS,
    LatencyModel,
    calmer_measurements,
    fit_model,
)
from archkit.device._latency._predict import (
    conditions_now,
    load_latency_model,
    resolve_device,
)
from archkit.device._latency._runtimes import (
    PROBE_BASELINES,
    Measured,
    measure_group,
    probe_key,
)
from archkit.device._latency._store import (
    append_record,
    compiled_dir,
    data_path,
    model_path,
    read_records,
    start_data,
    write_model_json,
)
from archkit.device._machine import exclusive_lock, holding_this_machine

__all__ = [
    "BuildResult",
    "Evaluation",
    "build_latency_model",
    "evaluate_latency_model",
    "measure_networks",
    "prepare_tvm_libraries",
]

#: Groups in a row whose every network failed before a build stops measuring (and fits on
#: what it has): a board that fails every network would otherwise be retried until the
#: time budget ends.
_MAX_FAILED_GROUPS = 3

#: Seconds kept at the end of a build's time budget for fitting.
_FIT_RESERVE_S = 30.0

#: An adaptation measures each of its networks twice (profiled too), the second pass in
#: reverse order after the first, and fits on each network's calmer measurement
#: (:func:`calmer_measurements`): 20 networks are measured in a minute or two, which a slow
#: spell can cover whole, and the probe's slowdown is not every network's
#: (benchmarks/probe_under_load.py). Measured (stop 25, benchmarks/adapt_under_load.py, two
#: seeds of 20 networks scored on three sets of 60 held-out networks): with the other core
#: thrashing the L3 during the first pass, the first pass alone gave 23-40% within +-10%, both
#: passes 62-92%; with no load 75-92% both ways (the mean over the six scores 82.5% against
#: 83.9%: one network in 60 or less). The price: 3-4.4 minutes instead of 1.2-1.5.
_ADAPT_PASSES = 2

#: The two passes of an adaptation disagree when their median ratio is further than this
#: from 1, or when fewer than :data:`_PASSES_AGREEING` of the networks agree within +-10%.
#: Measured here (benchmarks/adapt_under_load.py): a quiet pass pair 0.975 and 95%; with the
#: L3 thrashed during the first pass 1.03 and 25% (the probe's retries take out the median's
#: shift, not the spread); a "quiet" pair in which the machine had a spell of its own 1.005
#: and 60%.
_PASSES_TOLERANCE = 0.05
_PASSES_AGREEING = 0.75


@dataclass(frozen=True)
class BuildResult:
    """What a build did.

    Attributes:
        model: The fitted model.
        path: Where it was written.
        networks: Networks measured in all (this run and earlier ones it resumed).
        new_networks: Networks measured by this run.
        kernels: Kernels with measured times (for an adapted model, of the new device).
        minutes: Measuring and fitting time over every run that contributed (board-minutes:
            with a farm, the boards' times add up; ``model.built["last_run"]`` has wall time).
        stats: Fit statistics (out-of-fold error of the whole model on its own data).
        failed: Networks that failed to measure in this run, as ``(name, reason)``.
        stopped_by: ``networks`` (reached the count), ``minutes`` (time budget),
            ``candidates`` (the stream ended) or ``failures`` (every network of
            ``_MAX_FAILED_GROUPS`` groups in a row failed: see ``failed``).
        warnings: What the caller should know about the data (an adaptation whose two
            passes disagree: the machine was busier during one of them).
    """

    model: LatencyModel
    path: Any
    networks: int
    new_networks: int
    kernels: int
    minutes: float
    stats: dict[str, Any]
    failed: tuple[tuple[str, str], ...] = ()
    stopped_by: str = "networks"
    warnings: tuple[str, ...] = ()


def _record(candidate: Any, network: Any, measured: Measured) -> dict[str, Any]:
    return {
        "name": candidate.name,
        "space": getattr(candidate, "space", None),
        "params": getattr(candidate, "params", None),
        "fingerprint": network_fingerprint(network),
        "e2e_ms": measured.e2e_ms,
        "e2e_raw_ms": measured.raw_ms,
        "repeats_ms": [round(v, 5) for v in measured.repeats_ms],
        "rounds_ms": measured.rounds_ms,
        "kernels": [[b, n, k, list(f)] for b, n, k, f in kernel_rows(network)],
        "kernels_us": measured.kernels_us,
        "seconds": round(measured.seconds, 3),
        "server": measured.server,
        "probe_ms": measured.probe_ms,
        "probe_ratio": measured.probe_ratio,
        "timings": measured.timings,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _fresh(candidates: Iterable[Any], seen: set[str]) -> Iterator[tuple[Any, Any]]:
    """Candidates (with their lowered networks) whose network was not measured yet."""
    from archkit.ops import lower

    for candidate in candidates:
        network = lower(candidate.spec)
        fingerprint = network_fingerprint(network)
        if fingerprint in seen:
            continue
        seen.add(fingerprint)
        yield candidate, network


def _progress(total: int | None, description: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = Progress(
        TextColumn(f"[bold]{description}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=Console(stderr=True),
    )
    bar.add_task("networks", total=total, note="")
    bar.start()
    return bar


def _boards(device: Any) -> int:
    """How many boards measure at once: every board of a tracker's key, else one."""
    if device.connection.kind != "tracker":
        return 1
    from archkit.device._connect import tracker_servers

    total, _ = tracker_servers(device)
    return max(1, total)


def _measure_loop(
    candidates: Iterable[Any],
    device: Any,
    runtime: str,
    protocol: TimingProtocol,
    path: Any,
    seen: set[str],
    *,
    networks: int | None,
    deadline: float,
    database: Any,
    progress: bool,
    on_record: Callable[[dict[str, Any]], None] | None,
    libraries: Any = None,
    measured: list[Any] | None = None,
    doing: str = "measuring",
    tag: dict[str, Any] | None = None,
) -> tuple[int, list[tuple[str, str]], str]:
    """Measure groups of ``protocol.interleave`` networks until a stop condition; with a
    tracker, one worker per board of the key, each measuring its own groups (the tracker
    hands every worker a free board). Every result is appended to ``path`` as it comes, and
    its candidate to ``measured`` where given.

    With one board (or this machine), the next group is drawn before a group is measured, so
    that some of its libraries (ONNX files) are compiled with this group's on otherwise idle
    cores (``upcoming`` of :func:`measure_group`); onnxruntime's files are kept for that in a
    temporary folder of the loop's, each group's deleted once it is measured."""
    stream = _fresh(candidates, seen)
    lock = threading.Lock()
    state = {"done": 0, "taken": 0, "failed_groups": 0, "stopped_by": "networks"}
    stop = threading.Event()
    failed: list[tuple[str, str]] = []
    workers = _boards(device)
    where = f"{device.name} ({runtime}" + (f", {workers} boards)" if workers > 1 else ")")
    bar = _progress(networks, f"{doing} on {where}", progress)
    # The next group, drawn ahead (one worker only: boards of a farm take groups in turn).
    drawn: list[tuple[Any, Any]] = []

    def draw(size: int) -> list[tuple[Any, Any]]:
        group = drawn[:size]
        del drawn[:size]
        while len(group) < size and (item := next(stream, None)) is not None:
            group.append(item)
        return group

    def next_group() -> tuple[list[tuple[Any, Any]], list[tuple[Any, Any]]]:
        """A group to measure, and (one worker) the one after it."""
        with lock:
            if stop.is_set():
                return [], []
            if networks is not None and state["taken"] >= networks:
                state["stopped_by"] = "networks"
                return [], []
            if time.monotonic() >= deadline:
                state["stopped_by"] = "minutes"
                return [], []
            size = protocol.interleave
            if networks is not None:
                size = min(size, networks - state["taken"])
            group = draw(size)
            if not group:
                state["stopped_by"] = "candidates"
            state["taken"] += len(group)
            if workers == 1 and group:
                after = protocol.interleave
                if networks is not None:
                    after = min(after, networks - state["taken"])
                drawn.extend(draw(max(0, after)))
            return group, list(drawn)

    def work() -> None:
        while True:
            group, upcoming = next_group()
            if not group:
                break
            try:
                results = measure_group([c.spec for c, _ in group], device, runtime, protocol,
                                        kernels=True, database=database,
                                        compiled_dir=libraries,
                                        upcoming=[c.spec for c, _ in upcoming])
            except MeasurementError as err:  # the board was lost: its group failed
                results = [err] * len(group)
            if exports is not None:
                for _, network in group:
                    (exports / f"{network_fingerprint(network)}.onnx").unlink(missing_ok=True)
            with lock:
                if all(isinstance(r, MeasurementError) for r in results):
                    state["failed_groups"] += 1
                    if state["failed_groups"] >= _MAX_FAILED_GROUPS:
                        state["stopped_by"] = "failures"
                        stop.set()
                else:
                    state["failed_groups"] = 0
                for (candidate, network), result in zip(group, results, strict=True):
                    if isinstance(result, MeasurementError):
                        failed.append((candidate.name, result.reason))
                        state["taken"] -= 1  # its place goes to another network
                        continue
                    record = _record(candidate, network, result)
                    if tag:
                        record.update(tag)
                    append_record(path, record)
                    if measured is not None:
                        measured.append(candidate)
                    state["done"] += 1
                    if on_record is not None:
                        on_record(record)
                if bar is not None:
                    bar.update(bar.task_ids[0], completed=state["done"],
                               note=f"{len(failed)} failed" if failed else "")

    exports = None
    if runtime == "onnxruntime" and libraries is None:
        folder = tempfile.TemporaryDirectory(prefix="archkit-onnx-")  # noqa: SIM115 - below
        exports = libraries = Path(folder.name)
    try:
        if workers == 1:
            work()
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers, thread_name_prefix="archkit-latency") as pool:
                for future in [pool.submit(work) for _ in range(workers)]:
                    future.result()
    finally:
        if bar is not None:
            bar.stop()
        if exports is not None:
            folder.cleanup()
    return state["done"], failed, state["stopped_by"]


def _check_data_conditions(path: Any, now: Conditions) -> None:
    built, _, _ = read_records(path)
    diff = differences(built, now)
    if diff:
        raise LatencyModelError(
            f"{path} holds measurements taken under other conditions ("
            + "; ".join(diff)
            + "): they cannot be mixed with new ones. Move the file away to start again."
        )


def build_latency_model(
    device: Any,
    candidates: Iterable[Any],
    *,
    runtime: str = "onnxruntime",
    minutes: float | None = 30.0,
    networks: int | None = None,
    from_model: str | None = None,
    protocol: TimingProtocol | None = None,
    cache_dir: Any = None,
    progress: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> BuildResult:
    """Measure networks on ``device``, fit a latency model and store it (resumable).

    Every measured network is appended to ``<cache>/latency/<device>-<runtime>.jsonl`` as it
    comes; a second call continues from there (networks already measured are skipped) and
    refits on everything. Measuring stops after ``networks`` new networks, at the ``minutes``
    budget (a part is kept for fitting), or when ``candidates`` runs out.

    Args:
        device: A device name or :class:`~archkit.device.DeviceProfile`: this machine, a
            board over RPC (``archkit serve`` for onnxruntime), or a tracker's key, whose
            boards all measure at once.
        candidates: Networks to measure: objects with ``name`` and ``spec`` (and optionally
            ``space`` and ``params``), e.g. ``archkit.search.random_candidates(spaces)``.
        runtime: ``onnxruntime`` or ``tvm``.
        minutes: Time budget for this call (None: no limit).
        networks: Stop after this many new networks (None: no limit).
        from_model: Adapt this device's model (same runtime) instead of building from scratch:
            each network is timed end to end and profiled here twice, the second pass in
            reverse order after the first (each network's calmer measurement is fitted), the
            old kernel regressors are boosted on with the kernel times (new trees for what
            differs) and the network correction is refitted (:meth:`LatencyModel.adapted`).
            A few networks (``networks=20``; at least 3) suffice. The first pass stops at
            half the ``minutes`` budget, so the second fits in it. A resumed adaptation
            measures again the networks its earlier run measured once, as the same
            ``candidates`` stream draws them. The result's ``warnings`` say when the two
            passes disagree, or when networks were left with one measurement.
        protocol: Timing protocol (default :class:`TimingProtocol`; a resumed build keeps the
            protocol of its measurements file).
        cache_dir: Cache root (default :func:`archkit.device.default_cache_dir`).
        progress: Show a progress bar on stderr.
        on_record: Called with every measured record (for tests and reports).

    Raises:
        LatencyModelError: Unknown runtime, data measured under other conditions, too little
            data to fit, or ``from_model`` missing or built under another runtime version.
        DeviceError: The device is unknown or cannot be reached.
    """
    if runtime not in RUNTIMES:
        raise LatencyModelError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    started = time.monotonic()
    device = resolve_device(device)
    if device.connection.ssh:  # one tunnel for the whole build
        from archkit.device._tunnel import ssh_tunnel

        with ssh_tunnel(device) as through:
            return build_latency_model(
                through, candidates, runtime=runtime, minutes=minutes, networks=networks,
                from_model=from_model, protocol=protocol, cache_dir=cache_dir,
                progress=progress, on_record=on_record,
            )  # fmt: skip
    if device.is_remote:
        # A board that is not there (or serves no onnxruntime) fails here, in seconds.
        from archkit.device._connect import check_reachable

        check_reachable(device, runtime=runtime, kernels=True)
    now, database_folder = conditions_now(device, runtime, for_build=True)
    database = None
    if runtime == "tvm" and now.tuning != UNTUNED:
        from archkit.device._latency._runtimes import tuning_state

        _, database = tuning_state(database_folder)
    path = data_path(device.name, runtime, cache_dir)
    with _measuring_alone(path, device, runtime, "build"):
        seen: set[str] = set()
        old_records: list[dict[str, Any]] = []
        if path.exists():
            _check_data_conditions(path, now)
            _, stored_protocol, old_records = read_records(path)
            protocol = stored_protocol
            seen = {r["fingerprint"] for r in old_records}
            PROBE_BASELINES.seed(probe_key(device, protocol, runtime),
                                 [r.get("probe_ms") for r in old_records])
        if from_model is not None and networks is not None and len(seen) + networks < \
                ADAPT_MIN_NETWORKS:
            raise LatencyModelError(
                f"adapting needs at least {ADAPT_MIN_NETWORKS} networks measured on {device.name} "
                f"(the correction fits a scale, a per-kernel time and an offset to whole "
                f"networks): {len(seen)} measured, {networks} asked for; ask for more with "
                "--networks")
        if not path.exists():
            protocol = protocol or TimingProtocol.default(runtime)
            start_data(path, now, protocol)

        base = None
        if from_model is not None:
            base = load_latency_model(from_model, runtime=runtime, cache_dir=cache_dir, check=False)
            if base.conditions.runtime_version != now.runtime_version:
                raise LatencyModelError(
                    f"{from_model}/{runtime} was built with {runtime} "
                    f"{base.conditions.runtime_version}, here it is {now.runtime_version}: "
                    "adapting across runtime versions is not supported; rebuild it first"
                )
        budget_s = math.inf if minutes is None else minutes * 60.0
        deadline = started + max(0.0, budget_s - (0.0 if base else _FIT_RESERVE_S))
        twice = base is not None and _ADAPT_PASSES > 1
        again: list[Any] = []
        lost = 0
        if twice and old_records:
            # A resumed adaptation: the networks its earlier run measured once (it was stopped in
            # its second pass, or before) are measured again first, then this run's.
            candidates, again, lost = _drawn_again(candidates, _measured_once(old_records),
                                                   len(seen))
        libraries = compiled_dir(now, cache_dir) if runtime == "tvm" else None
        warnings: list[str] = []
        once: list[str] = []  # networks left with one measurement, and why

        def measure_again(networks: list[Any]) -> None:
            """An adaptation's second pass over ``networks``, in this order."""
            done_again: list[Any] = []
            _, failed_again, stop = _measure_loop(
                networks, device, runtime, protocol, path, set(), networks=len(networks),
                deadline=deadline, database=database, progress=progress, on_record=on_record,
                libraries=libraries, measured=done_again, doing="measuring again",
                tag={"pass": 2},
            )
            once.extend(_left_once(networks, done_again, failed_again, stop))

        if again:
            measure_again(again)
        if lost:
            once.append(f"{lost} of an earlier run, not drawn by these candidates (another "
                        "--seed, --draw or --space?)")
        measured: list[Any] = []
        if twice:
            # The first pass stops in time for the second (which costs no more: the same
            # networks, compiled already).
            first_start = time.monotonic()
            first_deadline = first_start + (deadline - first_start) / 2
        done, failed, stopped_by = _measure_loop(
            candidates, device, runtime, protocol, path, seen, networks=networks,
            deadline=first_deadline if twice else deadline, database=database,
            progress=progress, on_record=on_record, libraries=libraries, measured=measured,
            tag={"pass": 1} if twice else None,
        )
        if twice and measured:
            measure_again(measured[::-1])  # the same networks again, last first
        if once:
            warnings.append(
                f"networks measured once only, fitted on that one measurement: "
                f"{'; '.join(once)}. Run the same command again to measure them a second time")
        measured_s = time.monotonic() - started
        _, _, all_records = read_records(path)
        records = calmer_measurements(all_records)
        measuring_minutes = sum(r.get("seconds", 0.0) for r in all_records) / 60.0
        fit_start = time.monotonic()
        built = {
            "networks": len(records),
            "boards": sorted({r["server"] for r in records if r.get("server")}),
            "last_run": {"new_networks": done, "wall_minutes": round(measured_s / 60.0, 2)},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "spaces": sorted({r["space"] for r in records if r.get("space")}),
            "data": str(path),
        }
        if base is not None:
            if not records:
                raise LatencyModelError(f"no network could be measured on {device.name}")
            passes = _passes_agreement(all_records)
            if passes:
                built["passes"] = passes
                warnings += _passes_warning(passes, device.name, runtime, path)
            profiled = sum(len(r["kernels"]) for r in records if r.get("kernels_us"))
            built.update(kernels=profiled, adapted_from={
                "device": base.device, "conditions": base.conditions.to_dict(),
                "networks": base.built.get("networks"), "kernels": base.built.get("kernels"),
            })
            model = base.adapted(records, now, built)
            stats = {"networks": len(records), "kernels": profiled}
        else:
            model, stats = fit_model([r for r in records if r.get("kernels_us")], now, protocol,
                                     built)
            built["kernels"] = stats["kernels"]
        minutes_total = measuring_minutes + (time.monotonic() - fit_start) / 60.0
        built["minutes"] = round(minutes_total, 2)
        built["fit"] = stats
        model.built = built
        out = write_model_json(model_path(device.name, runtime, cache_dir), model.to_json())
        return BuildResult(model, out, len(records), done, int(built["kernels"]), minutes_total,
                           stats, tuple(failed), stopped_by, tuple(warnings))


@contextmanager
def _measuring_alone(path: Any, device: Any, runtime: str, doing: str) -> Iterator[None]:
    """The locks a build (``doing``: ``build``) or an evaluation (``evaluate``) of ``device``
    holds while it measures: its measurements file's (``<path>.lock``: two builds appending to
    one file would interleave their records), a build only; and, for a device measured on this
    machine, this machine's (:func:`~archkit.device._machine.holding_this_machine`).

    Raises:
        LatencyModelError: Another process holds one (its pid, what it does and since when).
    """
    what = f"{doing} {device.name}/{runtime}"
    with ExitStack() as stack:
        if doing == "build":
            stack.enter_context(exclusive_lock(
                path.with_name(path.name + ".lock"), what,
                f"another build is measuring {device.name}/{runtime} into {path} ({{holder}}): "
                "two at once would interleave their records and time each other's networks; "
                "wait for it, or stop it (a stopped build resumes)"))
        stack.enter_context(holding_this_machine(device, what))
        yield


def _measured_once(records: list[dict[str, Any]]) -> set[str]:
    """The fingerprints of the networks an adaptation's first pass measured (``"pass": 1``)
    and no second pass did (a network of a build from scratch in the same file is not due a
    second measurement)."""
    first = {r["fingerprint"] for r in records if r.get("pass") == 1}
    return first - {r["fingerprint"] for r in records if r.get("pass") == 2}


def _left_once(networks: list[Any], measured: list[Any], failed: list[tuple[str, str]],
               stopped_by: str) -> list[str]:
    """Why some of a second pass's ``networks`` were not ``measured``: one note each (the first
    five named), or none."""
    missed = [c.name for c in networks if c not in measured]
    if not missed:
        return []
    why = "the --minutes budget ran out" if stopped_by == "minutes" else (
        "failed: " + "; ".join(sorted({reason for _, reason in failed})) if failed else stopped_by)
    shown = ", ".join(missed[:5]) + (f" and {len(missed) - 5} more" if len(missed) > 5 else "")
    return [f"{len(missed)} of {len(networks)} ({why}): {shown}"]


def _drawn_again(candidates: Iterable[Any], fingerprints: set[str], measured: int,
                 ) -> tuple[Iterator[Any], list[Any], int]:
    """The candidates of ``fingerprints``, found where a resumed build's stream draws them
    again: among its first ``measured + 2 * len + 50`` candidates (the earlier runs drew their
    ``measured`` networks first, between networks that failed or were drawn twice). Returns
    the whole stream (what was read, then the rest), the candidates found in stream order,
    and how many were not found."""
    from archkit.ops import lower

    stream = iter(candidates)
    read: list[Any] = []
    found: list[Any] = []
    wanted = set(fingerprints)
    ahead = measured + 2 * len(wanted) + 50 if wanted else 0
    for candidate in itertools.islice(stream, ahead):
        read.append(candidate)
        fingerprint = network_fingerprint(lower(candidate.spec))
        if fingerprint in wanted:
            wanted.discard(fingerprint)
            found.append(candidate)
            if not wanted:
                break
    return itertools.chain(read, stream), found, len(wanted)


def _passes_agreement(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How the first two measurements of each network measured twice on one board compare
    (as timed): the median of first / second, and the share within +-10% of each other (None:
    no network was). Two boards (a farm's passes) are not compared: they differ as boards."""
    import statistics

    first: dict[str, tuple[float, Any] | None] = {}
    ratios = []
    for record in records:
        ms = record.get("e2e_raw_ms") or record["e2e_ms"]
        fingerprint = record["fingerprint"]
        if fingerprint not in first:
            first[fingerprint] = (ms, record.get("server"))
        elif first[fingerprint] is not None:
            first_ms, server = first[fingerprint]
            if server == record.get("server"):
                ratios.append(first_ms / ms)
            first[fingerprint] = None  # a third measurement is not compared
    if not ratios:
        return None
    return {"networks": len(ratios),
            "median_first_over_second": round(statistics.median(ratios), 4),
            "within_10pct": round(sum(abs(r - 1.0) <= 0.10 for r in ratios) / len(ratios), 4)}


def _passes_warning(passes: dict[str, Any], device: str, runtime: str, path: Any) -> list[str]:
    ratio, agreeing = passes["median_first_over_second"], passes["within_10pct"]
    if abs(ratio - 1.0) <= _PASSES_TOLERANCE and agreeing >= _PASSES_AGREEING:
        return []
    which, slower = ("first", ratio - 1.0) if ratio >= 1.0 else ("second", 1.0 / ratio - 1.0)
    shift = (f"the {which} pass {slower:.0%} slower (median)"
             if slower > _PASSES_TOLERANCE else f"the median within {slower:.0%}")
    return [
        f"the two passes over {passes['networks']} networks disagree: {agreeing:.0%} of the "
        f"networks within +-10% of their other measurement, {shift}, so the machine was "
        f"busy during some of the measuring. The model "
        f"fits each network's calmer measurement, but a spell over both of a network's still "
        f"moves it: adapt again on a quiet machine (move {path} away first) and check with "
        f"archkit latency evaluate {device} --runtime {runtime} --networks 60"
    ]


@dataclass(frozen=True)
class Evaluation:
    """Predicted vs measured on held-out networks.

    Attributes:
        rows: One dict per network: ``name``, ``space``, ``params``, ``predicted_ms``,
            ``measured_ms`` (first measurement), ``measured_again_ms`` (second), both at
            the model's probe reference (:meth:`LatencyModel.measured_ms`), ``error``
            (relative, predicted vs the first measurement), ``repeat_error`` (second vs
            first), ``error_vs_mean`` (predicted vs the mean of the two),
            ``extrapolated``, ``probe_ms`` and ``probe_ms_again`` (the probe's time in each
            measurement's group, None without a probe), ``probe_ratio`` and
            ``probe_ratio_again`` (those against the baseline that decided retries),
            ``measured_raw_ms`` and ``measured_again_raw_ms`` (as timed) and ``timings``
            (group timings both took; more than 2: a probe was slow).
        summary: Shares within +-5% and +-10% and mean/worst error, for the prediction, for
            the device's own repeatability (the noise floor) and for the prediction against
            the mean of the two measurements (``prediction_vs_mean``), with the counts.
    """

    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    def frame(self) -> Any:
        """The rows as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows)


def _shares(errors: list[float]) -> dict[str, float]:
    n = max(1, len(errors))
    return {
        "within_5pct": sum(e <= 0.05 for e in errors) / n,
        "within_10pct": sum(e <= 0.10 for e in errors) / n,
        "mean_error": sum(errors) / n,
        "worst_error": max(errors, default=0.0),
    }


def evaluate_latency_model(
    device: Any,
    candidates: Iterable[Any],
    networks: int,
    *,
    runtime: str = "onnxruntime",
    cache_dir: Any = None,
    progress: bool = True,
) -> Evaluation:
    """Measure ``networks`` held-out networks twice and compare with the model's predictions.

    Networks the model was built from (by fingerprint, from its measurements file) are skipped.
    Each network is measured end to end twice: with onnxruntime in two separate passes over all
    networks (a fresh export and session each time, minutes apart); with TVM (a compile takes a
    minute) in two separate timing rounds of the same compiled group. The share of networks
    whose two measurements agree within +-10% is the noise floor a predictor cannot beat.

    Raises:
        LatencyModelError: No model, or one built under other conditions.
    """
    device = resolve_device(device)
    model = load_latency_model(device, runtime=runtime, cache_dir=cache_dir)
    path = data_path(device.name, runtime, cache_dir)
    seen: set[str] = set()
    protocol = model.protocol
    if path.exists():
        records = read_records(path)[2]
        seen = {r["fingerprint"] for r in records}
        # The probe's times while the model's networks were measured: its baseline.
        PROBE_BASELINES.seed(probe_key(device, protocol, runtime),
                             [r.get("probe_ms") for r in records])
    chosen = []
    for candidate, network in _fresh(candidates, seen):
        chosen.append((candidate, network))
        if len(chosen) >= networks:
            break
    libraries = compiled_dir(model.conditions, cache_dir) if runtime == "tvm" else None
    specs = [c.spec for c, _ in chosen]
    group = protocol.interleave
    two_passes = runtime == "onnxruntime"
    first: list[Any] = []
    second: list[Any] = []
    total = len(chosen) * (2 if two_passes else 1)
    with ExitStack() as stack:
        stack.enter_context(_measuring_alone(path, device, runtime, "evaluate"))
        if two_passes:
            # Each network's ONNX file is exported once for both passes (kept in a temporary
            # folder until the evaluation ends: a few MB each).
            libraries = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="archkit-evaluate-")))
        bar = _progress(total, f"evaluating on {device.name} ({runtime})", progress)
        try:
            for start in range(0, len(specs), group):
                results = measure_group(specs[start:start + group], device, runtime, protocol,
                                        kernels=False, rounds=1 if two_passes else 2,
                                        compiled_dir=libraries,
                                        upcoming=specs[start + group:start + 2 * group])
                first.extend(results)
                if bar is not None:
                    bar.update(bar.task_ids[0], advance=len(results))
            if two_passes:
                # The second pass runs in reverse order, so each network's two measurements are
                # far apart in time (drift in the machine's load shows up as disagreement).
                order = list(range(len(specs)))[::-1]
                again: dict[int, Any] = {}
                for start in range(0, len(order), group):
                    idx = order[start:start + group]
                    results = measure_group([specs[i] for i in idx], device, runtime, protocol,
                                            kernels=False, compiled_dir=libraries)
                    again.update(zip(idx, results, strict=True))
                    if bar is not None:
                        bar.update(bar.task_ids[0], advance=len(results))
                second = [again[i] for i in range(len(specs))]
        finally:
            if bar is not None:
                bar.stop()
    rows = []
    for i, (candidate, _network) in enumerate(chosen):
        m1 = first[i]
        if isinstance(m1, MeasurementError):
            rows.append({"name": candidate.name, "error_message": m1.reason})
            continue
        # The second measurement: the second pass's, or (one pass) the second timing round's;
        # None where it failed, or over RPC, where the rounds' times come without their own.
        if two_passes:
            m2 = second[i] if isinstance(second[i], Measured) else None
        else:
            m2 = m1.again
        if m2 is not None:
            again_ms = model.measured_ms(m2)
        else:
            again_ms = m1.rounds_ms[1] if not two_passes and len(m1.rounds_ms) > 1 else None
        explained = model.explain(candidate.spec)
        measured = model.measured_ms(m1)
        rows.append({
            "name": candidate.name,
            "space": getattr(candidate, "space", None),
            "params": getattr(candidate, "params", None),
            "predicted_ms": explained.latency_ms,
            "measured_ms": measured,
            "measured_again_ms": again_ms,
            "error": abs(explained.latency_ms - measured) / measured,
            "signed_error": (explained.latency_ms - measured) / measured,
            "repeat_error": None if again_ms is None else abs(again_ms - measured) / measured,
            "error_vs_mean": (None if again_ms is None else
                              abs(explained.latency_ms - (measured + again_ms) / 2)
                              / ((measured + again_ms) / 2)),
            "extrapolated": len(explained.extrapolations),
            "probe_ratio": m1.probe_ratio,
            "probe_ratio_again": None if m2 is None else m2.probe_ratio,
            "probe_ms": m1.probe_ms,
            "probe_ms_again": None if m2 is None else m2.probe_ms,
            "measured_raw_ms": m1.raw_ms,
            "measured_again_raw_ms": None if m2 is None else m2.raw_ms,
            "timings": m1.timings + (0 if m2 is None else m2.timings),
        })
    ok = [r for r in rows if "error" in r]
    errors = [r["error"] for r in ok]
    repeat = [r["repeat_error"] for r in ok if r["repeat_error"] is not None]
    summary = {
        "device": device.name,
        "runtime": runtime,
        "networks": len(ok),
        "failed": len(rows) - len(ok),
        "prediction": _shares(errors),
        "noise_floor": _shares(repeat),
        "noise_floor_networks": len(repeat),
        # Against the mean of the two measurements: where the model sits within the device's
        # own spread (a share within +-10% of one measurement cannot exceed what two
        # measurements of the same network reach by much).
        "prediction_vs_mean": _shares([r["error_vs_mean"] for r in ok
                                       if r["error_vs_mean"] is not None]),
        "second_measurement": "separate pass" if two_passes else "separate timing round",
        "model_networks": model.built.get("networks"),
        "probe_reference_ms": model.probe_reference_ms,
    }
    return Evaluation(rows, summary)


def prepare_tvm_libraries(device: Any, candidates: Iterable[Any], networks: int, *,
                          cache_dir: Any = None, progress: bool = True) -> int:
    """Compile the TVM libraries a later build or evaluation will time.

    Compiling takes about 5 s per network and does not care about load; timing does. This
    compiles ahead the first ``networks`` networks that ``build_latency_model`` (or
    ``evaluate_latency_model``) will draw from ``candidates`` (skipping those already measured
    for this device), on every core (:func:`~archkit.device._latency._compiling
    .compile_ahead`), so the timing can run later, on a quiet machine, in seconds per network.

    Returns:
        The number of libraries compiled (those already there are not recompiled).
    """
    from archkit.device._latency._compiling import compile_ahead, compile_jobs
    from archkit.device._latency._runtimes import compiled_library, tuning_state

    device = resolve_device(device)
    now, folder = conditions_now(device, "tvm", for_build=True)
    database = tuning_state(folder)[1] if now.tuning != UNTUNED else None
    path = data_path(device.name, "tvm", cache_dir)
    seen = {r["fingerprint"] for r in read_records(path)[2]} if path.exists() else set()
    target = compiled_dir(now, cache_dir)
    done = 0
    bar = _progress(networks, f"compiling for {device.name} (tvm)", progress)
    chunk = 2 * compile_jobs()  # a progress update every two libraries per worker
    specs = [candidate.spec for candidate, _ in itertools.islice(_fresh(candidates, seen),
                                                                  networks)]
    try:
        # (compiling on every core beside another job's timing would slow that timing)
        with holding_this_machine(device, f"compile {len(specs)} libraries for {device.name}"):
            for start in range(0, len(specs), chunk):
                compile_ahead(specs[start:start + chunk], device, database, target)
                for spec in specs[start:start + chunk]:  # (what a worker failed, with its error)
                    compiled_library(spec, device, database, target, target)
                    done += 1
                if bar is not None:
                    bar.update(bar.task_ids[0], completed=done)
    finally:
        if bar is not None:
            bar.stop()
    return done


def measure_networks(specs: list[Any], device: Any, *, runtime: str = "onnxruntime",
                     protocol: TimingProtocol | None = None,
                     model: LatencyModel | None = None,
                     cache_dir: Any = None) -> list[float | MeasurementError]:
    """End-to-end latency (ms) of each spec on a local device, under a model's protocol.

    What a search calls to check its winners against the model's predictions: the same
    runtime, thread count and timing protocol the model was built with, so the two compare.
    With ``model`` (its protocol then is the default) each time is at the model's probe
    reference (:meth:`LatencyModel.measured_ms`). TVM libraries, the probe's among them, are
    compiled into the cache's folder for the device's conditions (``cache_dir``, else the
    default cache), where builds keep theirs: a network a build or an earlier check compiled,
    and the probe, are not compiled again.

    Returns:
        Per spec, the median latency in ms or the :class:`MeasurementError` it failed with.
    """
    if runtime not in RUNTIMES:
        raise LatencyModelError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    device = resolve_device(device)
    protocol = protocol or (model.protocol if model is not None else
                            TimingProtocol.default(runtime))
    database = libraries = None
    if runtime == "tvm":
        from archkit.device._latency._runtimes import tuning_state

        now, folder = conditions_now(device, runtime, for_build=True)
        database = tuning_state(folder)[1] if now.tuning != UNTUNED else None
        libraries = compiled_dir(now, cache_dir)
    out: list[float | MeasurementError] = []
    with holding_this_machine(device, f"measure {len(specs)} networks on {device.name}/{runtime}",
                              wait=True):
        for start in range(0, len(specs), protocol.interleave):
            group = specs[start:start + protocol.interleave]
            upcoming = specs[start + protocol.interleave:start + 2 * protocol.interleave]
            for result in measure_group(group, device, runtime, protocol, kernels=False,
                                        database=database, compiled_dir=libraries,
                                        upcoming=upcoming):
                if isinstance(result, MeasurementError):
                    out.append(result)
                else:
                    out.append(result.e2e_ms if model is None else model.measured_ms(result))
    return out
