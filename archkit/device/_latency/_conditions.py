"""What a latency model was built under, and how it was measured.

A model is only as good as the conditions it was measured in: nn-Meter's users most often
report predictions that disagree with their own board because the predictor was built under
another runtime version, governor or thread count. Every model records :class:`Conditions`;
a prediction under other conditions is refused with what differs and how to rebuild.

Reading the current conditions imports neither tvm nor onnxruntime (package metadata only).
"""

from __future__ import annotations

import functools
import platform
import statistics
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from archkit.device._compile import UNTUNED_SCHEDULE
from archkit.device._farm import RUNTIMES
from archkit.device._latency._kernels import FEATURES_VERSION

__all__ = [
    "ONNX_EXPORTERS",
    "RUNTIMES",
    "Conditions",
    "UNTUNED",
    "TimingProtocol",
    "at_probe_reference",
    "current_conditions",
    "differences",
    "probe_reference",
    "tuning_label",
]

#: A TVM model's tuning state without tuning records: the untuned build's schedule named
#: (models of TVM's serial default schedules said ``untuned``, and are refused).
UNTUNED = f"untuned:{UNTUNED_SCHEDULE}"


#: How a measurement exports onnxruntime's ONNX files (:attr:`TimingProtocol.onnx_exporter`).
ONNX_EXPORTERS = ("torchscript", "dynamo")

#: The distribution whose version a model of each runtime records.
_DISTRIBUTIONS = {"onnxruntime": "onnxruntime", "tvm": "apache-tvm"}


def tuning_label(records: int) -> str:
    """A TVM model's tuning state for a database of ``records`` records: :data:`UNTUNED`
    without any, else ``tuned:<records>:<schedule>``, the schedule of the kernels without a
    record named (models of tuned builds whose other kernels ran serial said
    ``tuned:<records>``, and are refused)."""
    return f"tuned:{records}:{UNTUNED_SCHEDULE}" if records else UNTUNED


@dataclass(frozen=True)
class TimingProtocol:
    """How every network is timed (the same for building and evaluating a model).

    On a shared 2-core machine repeatability comes from: a fixed runtime thread count (the
    device's ``threads``); ``warmup_runs`` untimed runs; ``repeats`` timed repeats, each long
    enough (``min_repeat_ms`` of back-to-back runs) that a timer tick or one preemption is a
    small part of it; the median over repeats (a slow spell moves a few repeats, not the
    median); and interleaving: the repeats of a group of ``interleave`` networks are taken
    round-robin, so load that comes and goes is spread over the group instead of landing on one
    network. Per-kernel times come from ``profile_runs`` separate profiled runs (per-kernel
    median); they train the kernel regressors, end-to-end times fit the network correction.

    onnxruntime's intra-op threads do not spin between kernels (``spinning`` False): on a
    shared 2-core machine a spinning pool fights other processes for the cores and a
    descheduled spinner stalls every parallel kernel. Measured here under load, the medians of
    eight rounds of one network (MobileNetV2 1.0/160, 2 threads) spread 6.9x with spinning and
    1.35x without, in the same minute.

    Whole-machine slow spells (another process on the shared cores, tens of seconds long)
    slow every network of a group alike, so neither medians nor interleaving remove them. With
    ``probe_tolerance`` set (a local device, either runtime), every group is timed with a fixed
    probe network (:data:`~archkit.device._latency._runtimes.PROBE`, MobileNetV2 0.5/128) as
    one more member; a group whose probe ran more than ``probe_tolerance`` slower than its
    baseline under these conditions (the lower quartile of its times so far) was timed in a
    spell, and is timed again after ``probe_pause_s``, up to ``probe_retries`` times (the last
    timing is kept, its probe ratio recorded). Measured here: 40 networks timed in two passes,
    7 disagreed by more than 10%, all 7 in groups whose probe was 14-43% slower than its
    median; the 32 networks whose groups' probes were within 10% of it agreed, all of them.
    Smaller drifts of the whole machine (a few percent for minutes) pass the tolerance but
    still move every network of a group with the probe: with ``probe_normalize`` each
    statistic is divided by its timing's probe ratio, which gives the network's time on the
    machine in its usual state. Measured here: a 100-network evaluation whose second pass ran
    ~5% slower throughout (no probe beyond tolerance) repeated 68% of networks within +-10%
    raw and 99% divided by the probe ratio; the 40 networks above 82.5% raw, 100% divided.

    Attributes:
        warmup_runs: Untimed runs before timing.
        repeats: Timed repeats (the statistic is over these).
        min_repeat_ms: Minimum length of one repeat.
        statistic: ``median`` of the repeats.
        interleave: Networks timed round-robin together.
        profile_runs: Profiled runs per network for per-kernel times.
        spinning: onnxruntime's ``session.intra_op.allow_spinning``.
        tvm_spin_count: ``TVM_THREAD_POOL_SPIN_COUNT`` for TVM's worker threads (0: sleep at
            once, like ``spinning`` False; None: TVM's default, which spins). TVM reads it
            once per process, at its thread pool's first use.
        probe_tolerance: How much slower than its baseline the probe may run before a group
            is timed again (None: no probe). Outside spells the probe ran within 4% of its
            median here, in spells 14-43% slower.
        probe_retries: Timings of a group after its first, at most.
        probe_pause_s: Wait before timing a group again (spells last tens of seconds).
        probe_normalize: Divide each network's statistic by its timing's probe ratio.
        onnx_exporter: How onnxruntime's ONNX files are exported: ``torchscript`` (torch's
            TorchScript-based exporter, 0.2-1.3 s a network here) or ``dynamo`` (the
            torch.export-based one ``archkit export`` uses, 2.5-7.6 s, about ten times longer:
            what most of a build's time went to). onnxruntime's optimized graphs of the two
            are the same kernels but for global average pooling (``GlobalAveragePool`` run in
            onnxruntime's blocked layout, against ``ReduceMean`` after a reordering of the
            layout); the networks run alike (the two files of twelve random networks, timed
            taking turns: 0.956-1.025x, median 1.000). A network the TorchScript exporter
            fails on is exported with torch.export.
    """

    warmup_runs: int = 10
    repeats: int = 15
    min_repeat_ms: float = 25.0
    statistic: str = "median"
    interleave: int = 4
    profile_runs: int = 10
    spinning: bool = False
    tvm_spin_count: int | None = 0
    probe_tolerance: float | None = 0.10
    probe_retries: int = 3
    probe_pause_s: float = 10.0
    probe_normalize: bool = True
    onnx_exporter: str = "torchscript"

    def __post_init__(self) -> None:
        if self.onnx_exporter not in ONNX_EXPORTERS:
            raise ValueError(f"onnx_exporter must be one of {', '.join(ONNX_EXPORTERS)}, got "
                             f"{self.onnx_exporter!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimingProtocol:
        # Files from before a field existed were measured with the runtime's default, and
        # without a probe.
        return cls(**{"tvm_spin_count": None, "probe_tolerance": None, "probe_normalize": False,
                      "onnx_exporter": "dynamo", **data})

    @classmethod
    def default(cls, runtime: str) -> TimingProtocol:
        """The protocol a new build uses, for either runtime (TVM's probe is compiled once per
        device, target and tuning state, with the networks' libraries)."""
        return cls()


def probe_reference(times_ms: Any) -> float | None:
    """The probe's usual time among ``times_ms`` (ms; empty values skipped): their lower
    quartile, the fastest of fewer than four; None for none."""
    times = [t for t in times_ms if t]
    if not times:
        return None
    return statistics.quantiles(times, n=4)[0] if len(times) >= 4 else min(times)


def at_probe_reference(raw_ms: float | None, probe_ms: float | None,
                       reference_ms: float | None) -> float | None:
    """A time taken while the probe ran ``probe_ms``, at the probe speed ``reference_ms``
    (a model's: see ``LatencyModel.probe_reference_ms``); None where a value is missing."""
    if not (raw_ms and probe_ms and reference_ms):
        return None
    return raw_ms * reference_ms / probe_ms


@dataclass(frozen=True)
class Conditions:
    """Everything a latency model's numbers depend on besides the network.

    Attributes:
        device: Device name.
        runtime: ``onnxruntime`` or ``tvm``.
        runtime_version: Version of the runtime.
        torch_version: Version of torch (it exports the networks the runtime runs).
        threads: Runtime threads (the device profile's ``threads``).
        cpu: The CPU model (``/proc/cpuinfo``) for local devices; the profile's target for boards.
        target: The device profile's target as written (``host`` or a TVM target dict).
        governor: The CPU frequency governor where readable (None otherwise).
        tuning: TVM only: :func:`tuning_label` of the records in the device database.
        features_version: Version of the kernel features.
    """

    device: str
    runtime: str
    runtime_version: str
    torch_version: str
    threads: int
    cpu: str
    target: Any
    governor: str | None = None
    tuning: str | None = None
    features_version: int = FEATURES_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conditions:
        return cls(**data)


#: Fields whose difference makes a model's predictions meaningless (``device`` is the key of
#: the file; ``extra`` is informative only).
_COMPARED = (
    "runtime_version",
    "torch_version",
    "threads",
    "cpu",
    "target",
    "governor",
    "tuning",
    "features_version",
)


@functools.lru_cache(maxsize=8)
def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _governor() -> str | None:
    try:
        path = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
        return path.read_text().strip() or None
    except OSError:
        return None


def current_conditions(device: Any, runtime: str, *, tuning: str | None = None) -> Conditions:
    """The conditions a measurement on ``device`` with ``runtime`` would run under now.

    Args:
        device: A :class:`~archkit.device.DeviceProfile`.
        runtime: ``onnxruntime`` or ``tvm``.
        tuning: TVM's tuning state (:func:`tuning_label`), if known.
    """
    local = not device.is_remote
    target = device.target if isinstance(device.target, str) else dict(device.target)
    return Conditions(
        device=device.name,
        runtime=runtime,
        runtime_version=_version(_DISTRIBUTIONS[runtime]),
        torch_version=_version("torch"),
        threads=int(device.threads),
        cpu=_cpu_model() if local else str(target),
        target=target,
        governor=_governor() if local else None,
        tuning=tuning if runtime == "tvm" else None,
    )


def differences(built: Conditions, now: Conditions) -> list[str]:
    """Human lines ``threads: built with 2, now 1`` for every compared field that differs.

    A governor that cannot be read now (or could not then) is not a difference: only two
    readable, different governors are.
    """
    lines = []
    for name in _COMPARED:
        then, current = getattr(built, name), getattr(now, name)
        if name == "governor" and (then is None or current is None):
            continue
        if name == "tuning" and (then is None or current is None):
            continue
        if then != current:
            lines.append(f"{name.replace('_', ' ')}: built with {then}, now {current}")
    return lines
