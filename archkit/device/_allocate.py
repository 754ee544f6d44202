"""Where to spend tuning trials: each kernel's share of the network's time.

MetaSchedule tunes one task per fused kernel (TIR function). archkit splits the trial budget by
each new task's share of the untuned network's time, so a 1x1 convolution that takes 12% of the
time gets 12% of the trials (and an elementwise ``reshape`` almost none):

* ``local`` devices: measured. The prepared module (the one MetaSchedule extracts its tasks from,
  so kernel names are task names) is compiled untuned and run on this machine with
  ``relax.VirtualMachine.set_instrument`` timing every kernel call (median over a few runs).
* boards: estimated, ``estimate_tir_flops`` of each task times its number of calls (TVM's own
  task weight): an untuned aarch64 kernel cannot run here, and its share on the board is what
  matters.

A quarter of the budget is spread evenly (every new task gets a few candidates: even a random
schedule from the design space beats TVM's default for most kernels); the rest follows the
shares. MetaSchedule takes one trial cap for all the tasks of a ``tune_tasks`` call, so tasks
with similar budgets are grouped (:func:`budget_groups`) and each group is one call.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KernelShares",
    "allocate_trials",
    "budget_groups",
    "estimated_shares",
    "measured_shares",
]

#: Part of the budget spread evenly over the new tasks before the rest follows the shares.
EVEN_PART = 0.25
#: At most this many ``tune_tasks`` calls (budget groups) per network.
MAX_GROUPS = 3


@dataclass(frozen=True)
class KernelShares:
    """Share of the network's time per task (sums to 1 over the tasks it covers).

    Attributes:
        shares: ``task_name -> share``.
        method: How they were obtained (``measured`` or ``estimated``), for the metadata.
        detail: What exactly was measured or estimated.
        kernel_ms: Measured milliseconds per task per network run (``measured`` only).
    """

    shares: dict[str, float]
    method: str
    detail: str
    kernel_ms: dict[str, float]


def _normalise(values: dict[str, float]) -> dict[str, float]:
    total = sum(v for v in values.values() if v > 0)
    if total <= 0:
        return {k: 1.0 / len(values) for k in values} if values else {}
    return {k: max(v, 0.0) / total for k, v in values.items()}


_MEASURED: dict[tuple[int, str], KernelShares] = {}


def measured_shares(
    prepared: Any, tasks: list[Any], target: Any, runs: int = 5, seed: int = 0
) -> KernelShares:
    """Time each task's kernels in the untuned prepared module on this machine.

    Remembered per module and target for the life of the process (tuning the same network in
    rounds compiles and profiles it once).

    Args:
        prepared: The module after ``_tune._prepare`` (legalized and fused).
        tasks: MetaSchedule's extracted tasks of ``prepared``.
        target: The ``tvm.target.Target`` (must run on this machine).
        runs: Timed network runs after one warm-up run; the per-kernel median is used.
        seed: Seed of the random input.
    """
    import numpy as np
    import tvm
    import tvm_ffi
    from tvm import relax

    key = (int(tvm_ffi.structural_hash(prepared)), str(target))
    if key in _MEASURED:
        return _MEASURED[key]
    executable = tvm.compile(prepared, target=target)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    param = prepared["main"].params[0]
    shape = [int(d) for d in param.ty.shape]  # R.Tensor((1, 3, H, W), "float32")
    x = np.random.default_rng(seed).standard_normal(shape).astype("float32")
    names = {t.task_name for t in tasks}
    started: dict[str, float] = {}
    spent: dict[str, float] = {}

    def instrument(func: Any, symbol: str, before_run: bool, ret: Any, *args: Any) -> int:
        name = str(symbol)
        if name in names:
            if before_run:
                started[name] = time.perf_counter()
            else:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started.pop(name)
        return 0  # VMInstrumentReturnKind.NO_OP: run the call as usual

    vm.set_instrument(instrument)
    data = tvm.runtime.tensor(x)
    per_run: dict[str, list[float]] = {name: [] for name in names}
    for run in range(runs + 1):
        spent.clear()
        vm["main"](data)
        if run == 0:
            continue  # warm-up: first-touch allocations, caches
        for name in names:
            per_run[name].append(spent.get(name, 0.0))
    kernel_ms = {name: float(np.median(v)) * 1e3 for name, v in per_run.items()}
    _MEASURED[key] = KernelShares(
        _normalise(kernel_ms),
        "measured",
        f"untuned kernels timed on this host with relax.VirtualMachine.set_instrument, "
        f"median of {runs} runs",
        kernel_ms,
    )
    return _MEASURED[key]


def estimated_shares(tasks: list[Any]) -> KernelShares:
    """Estimated FLOPs of each task's kernel times its number of calls (TVM's task weight)."""
    from tvm.s_tir.analysis import estimate_tir_flops

    flops = {}
    for task in tasks:
        try:
            one = float(estimate_tir_flops(task.dispatched[0]))
        except Exception:  # noqa: BLE001 - a kernel the estimator does not handle
            one = 0.0
        flops[task.task_name] = max(one, 1.0) * int(task.weight)
    return KernelShares(
        _normalise(flops),
        "estimated",
        "estimate_tir_flops x calls per network (the board's kernels cannot run on this host)",
        {},
    )


def allocate_trials(
    shares: dict[str, float], trials: int, even_part: float = EVEN_PART
) -> dict[str, int]:
    """Split ``trials`` over tasks: ``even_part`` evenly, the rest by share; each gets >= 1.

    Shares are renormalised over the given tasks (the new ones; reused tasks get nothing).
    The total is exactly ``trials``: with fewer trials than tasks, the ``trials`` tasks with the
    largest shares get one each and the others none (they stay untuned until a later budget).
    """
    if not shares:
        return {}
    names = sorted(shares)
    share = _normalise({k: shares[k] for k in names})
    n = len(names)
    if trials <= n:
        top = set(sorted(names, key=lambda k: (-share[k], k))[: max(0, trials)])
        return {k: int(k in top) for k in names}
    even = even_part * trials / n
    wanted = {k: even + (1 - even_part) * trials * share[k] for k in names}
    budget = {k: max(1, math.floor(v)) for k, v in wanted.items()}
    # Largest remainders get the trials lost to rounding down.
    left = trials - sum(budget.values())
    for k in sorted(names, key=lambda k: wanted[k] - math.floor(wanted[k]), reverse=True):
        if left <= 0:
            break
        budget[k] += 1
        left -= 1
    return budget


def budget_groups(budget: dict[str, int], max_groups: int = MAX_GROUPS) -> list[tuple[int, list]]:
    """Group tasks with similar budgets: ``[(trials per task, [task names]), ...]``.

    Tasks with a budget of 0 are left out.

    Tasks are sorted by budget and cut into at most ``max_groups`` runs of budgets within a
    factor of two where possible; each group's per-task budget is its mean, so the total stays
    that of ``budget`` (up to rounding).
    """
    budget = {k: v for k, v in budget.items() if v > 0}  # tasks given no trials are not tuned
    if not budget:
        return []
    order = sorted(budget, key=lambda k: (budget[k], k))
    octave = {k: int(math.floor(math.log2(budget[k]))) for k in order}
    levels = sorted(set(octave.values()))
    # Merge neighbouring octaves until there are at most max_groups levels.
    while len(levels) > max_groups:
        sizes = [sum(1 for k in order if octave[k] == lv) for lv in levels]
        i = min(range(len(levels) - 1), key=lambda j: sizes[j] + sizes[j + 1])
        for k in order:
            if octave[k] == levels[i + 1]:
                octave[k] = levels[i]
        levels.pop(i + 1)
    groups = []
    for lv in levels:
        names = [k for k in order if octave[k] == lv]
        per_task = max(1, round(sum(budget[k] for k in names) / len(names)))
        groups.append((per_task, names))
    return groups
