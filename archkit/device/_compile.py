"""PyTorch (BatchNorm folded) -> ``torch.export`` -> Relax -> ``tvm.compile`` -> shared library.

Everything heavy (torch, tvm) is imported inside the functions.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archkit.device._errors import DeviceError, MeasurementError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from archkit.device._devices import DeviceProfile

__all__ = ["UNTUNED_SCHEDULE", "RelaxProgram", "build", "export_library", "flatten_outputs",
           "fold_batchnorms", "parallelize_outer_loops", "schedule_kernels", "to_relax"]

#: What an untuned build does to TVM's default CPU schedules (see
#: :func:`parallelize_outer_loops`); part of a TVM latency model's tuning state, so models and
#: compiled libraries of TVM's serial default are neither used nor reused.
UNTUNED_SCHEDULE = "parallel-outer"

# TVM's pass contexts and target scopes are thread-local, but torch.export and the pass
# infrastructure are not meant to be driven from several threads at once: compile one at a time.
COMPILE_LOCK = threading.RLock()


@dataclass(frozen=True)
class RelaxProgram:
    """A network imported into Relax with its BatchNorms folded into the convolutions.

    Attributes:
        mod: The Relax IRModule (weights bound as constants).
        batchnorms_in: BatchNorm ops after import.
        batchnorms_folded: BatchNorm ops folded into a preceding convolution.
        batchnorms_decomposed: BatchNorm ops not after a convolution, lowered to scale+shift.
    """

    mod: Any
    batchnorms_in: int
    batchnorms_folded: int
    batchnorms_decomposed: int


def _count_op(mod: Any, op_name: str) -> int:
    from tvm import relax

    count = 0

    def visit(expr: Any) -> None:
        nonlocal count
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", None) == op_name:
            count += 1

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return count


def flatten_outputs(value: Any) -> list[Any]:
    """Flatten (nested) tuples/lists of tensors into a list, in order."""
    if isinstance(value, list | tuple) or type(value).__name__ == "Array":
        return [leaf for item in value for leaf in flatten_outputs(item)]
    return [value]


def reference_outputs(model: torch.nn.Module, example_input: torch.Tensor) -> list[Any]:
    """PyTorch's outputs on ``example_input`` (eval mode, training flag restored), as numpy
    arrays: what every runtime's outputs are checked against."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return [t.detach().cpu().numpy() for t in flatten_outputs(model(example_input))]
    finally:
        model.train(was_training)


def fold_batchnorms(model: torch.nn.Module) -> tuple[torch.nn.Module, int]:
    """An eval-mode copy of ``model`` with every BatchNorm that directly follows a convolution
    in a ``Sequential`` (archkit's ``conv -> bn -> act`` nodes) folded into the convolution's
    weights and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``), and how many were.

    Folding in PyTorch instead of Relax (``FoldBatchnormToConv2D`` then ``FoldConstant``) gives
    TVM the same kernels (the fused modules' TIR functions are structurally equal, so tuning
    records still apply) and skips the constant folding that JIT-compiles one TIR function per
    folded BatchNorm: importing MobileNetV2 0.75/160 took 13.7 s that way and 2.4-3.0 s this
    way on this host (2026-12-01). ``model`` itself is not changed.
    """
    import copy

    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    count = 0
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, bn = module._modules[first], module._modules[second]
            if (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d
                    and bn.track_running_stats and conv.out_channels == bn.num_features):
                module._modules[first] = fuse_conv_bn_eval(conv, bn)
                module._modules[second] = nn.Identity()
                count += 1
    return folded, count


def to_relax(model: torch.nn.Module, example_input: torch.Tensor) -> RelaxProgram:
    """Export ``model`` with ``torch.export`` and import it into Relax, BatchNorm folded.

    BatchNorms after a convolution are folded in PyTorch (:func:`fold_batchnorms`); any other
    is folded by Relax where it can be, else lowered to scale and shift. The model is run in
    eval mode (its training flag is restored afterwards).

    Raises:
        MeasurementError: ``torch.export`` or the Relax import failed (stage ``compile``).
    """
    import torch
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from archkit.build import quiet_export_notices

    quiet_export_notices()
    was_training = model.training
    model.eval()
    try:
        with COMPILE_LOCK, torch.no_grad():
            folded, n_torch = fold_batchnorms(model)
            exported = torch.export.export(folded, (example_input,))
            mod = from_exported_program(exported, keep_params_as_input=False)
            n_relax = _count_op(mod, "relax.nn.batch_norm")
            if n_relax:
                mod = relax.transform.FoldBatchnormToConv2D()(mod)
            mod = relax.transform.FoldConstant()(mod)
            n_left = _count_op(mod, "relax.nn.batch_norm")
            if n_left:
                # BatchNorm without a convolution before it: scale and shift, folded where
                # possible into constants.
                mod = relax.transform.DecomposeOpsForInference()(mod)
                mod = relax.transform.FoldConstant()(mod)
    except MeasurementError:
        raise
    except Exception as err:  # torch.export / frontend errors are many and varied
        raise MeasurementError(
            f"could not import the model into TVM Relax: {type(err).__name__}: {err}",
            stage="compile",
        ) from err
    finally:
        model.train(was_training)
    n_in = n_torch + n_relax
    return RelaxProgram(mod, n_in, n_in - n_left, n_left)


def parallelize_outer_loops(mod: Any) -> tuple[Any, int]:
    """Every kernel (``PrimFunc``) of ``mod`` with each of its blocks' two outermost loops fused
    and marked parallel, in place; ``mod`` and how many blocks were.

    TVM 0.27's default CPU pipeline (``tvm/relax/backend/cpu_generic/pipeline.py``) runs no
    scheduling pass: an untuned module launches no parallel work and runs the same at every
    thread count. This is the cheapest schedule that uses the cores: after fusion, a block's
    outermost loops are the batch (1) and its first spatial or channel axis, so the fused loop
    splits the kernel's output across the thread pool. A block whose outer loops cannot be
    fused or parallelized (a reduction axis outermost) stays serial, and a function already
    scheduled (``tirx.is_scheduled``: a tuning record applied) is left as it is. Measured with
    ``benchmarks/tvm_untuned_parallel.py`` on this 2-core host (2026-12-01): MobileNetV2
    0.5/128 11.00 -> 5.58 ms (1.97x), 1.0/224 84.75 -> 44.20 ms (1.92x), outputs as close to
    PyTorch's as the serial build's (max difference 1.7e-6 and 1.5e-6 of the largest output).
    """
    from tvm import s_tir, tirx

    count = 0
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc) or (func.attrs is not None
                                                   and func.attrs.get("tirx.is_scheduled")):
            continue
        sch = s_tir.Schedule(func)
        try:
            blocks = sch.get_child_blocks(sch.get_sblock("root"))
        except Exception:  # noqa: BLE001 - a kernel without a root block stays as it is
            continue
        for block in blocks:
            loops = sch.get_loops(block)
            if not loops:
                continue
            try:
                sch.parallel(sch.fuse(loops[0], loops[1]) if len(loops) > 1 else loops[0])
                count += 1
            except Exception:  # noqa: BLE001 - a reduction axis outermost: leave it serial
                pass
        mod[gv] = sch.mod["main"]
    return mod, count


def _scope(tgt: Any, database: Any) -> Any:
    """The contexts a compile runs in: the target; with a database, the database and
    ``opt_level=3``, as MetaSchedule's ``compile_relax`` has them."""
    import contextlib

    import tvm

    scope = contextlib.ExitStack()
    scope.enter_context(tgt)
    if database is not None:
        scope.enter_context(database)
        scope.enter_context(tvm.transform.PassContext(opt_level=3))
    return scope


def schedule_kernels(mod: Any, tgt: Any, database: Any = None) -> Any:
    """``mod`` through the default CPU pipeline's dispatch and fusion passes (its own pass
    lists, in its order), the database's records applied to the fused kernels (as
    MetaSchedule's ``compile_relax`` applies them, after the same passes, so the kernels' keys
    are the ones tuning extracted), and every kernel without a record given
    :func:`parallelize_outer_loops`' schedule (``compile_relax`` leaves those serial)."""
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline

    with _scope(tgt, database):
        mod = tvm.transform.Sequential(pipeline.library_dispatch_passes(tgt)
                                       + pipeline.legalize_passes(tgt))(mod)
        if database is not None:
            mod = tvm.relax.transform.MetaScheduleApplyDatabase()(mod)
        return parallelize_outer_loops(mod)[0]


def _compile(mod: Any, tgt: Any, database: Any = None) -> Any:
    """:func:`schedule_kernels`, then the default CPU pipeline's lowering passes and
    ``tvm.compile`` (measured: ``benchmarks/tvm_untuned_parallel.py``, untuned and
    ``--tuned``)."""
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline

    with _scope(tgt, database):
        mod = schedule_kernels(mod, tgt, database)
        mod = tvm.transform.Sequential(pipeline.dataflow_lower_passes(tgt)
                                       + pipeline.finalize_passes(tgt))(mod)
        return tvm.compile(mod, target=tgt, relax_pipeline=None)


def build(program: RelaxProgram, target: dict[str, Any], database: Any = None) -> Any:
    """Compile a Relax program for ``target`` (a JSON dict); apply tuning records if given.

    Kernels without a tuning record (every kernel without ``database``) get
    :func:`parallelize_outer_loops`' schedule instead of TVM's serial default
    (:data:`UNTUNED_SCHEDULE`); with ``database`` the rest get their tuned schedules.

    Args:
        program: Output of :func:`to_relax`.
        target: TVM target dict.
        database: A MetaSchedule database; functions it has records for use the tuned schedules.

    Returns:
        The ``tvm.relax.VMExecutable``.
    """
    import tvm

    tgt = tvm.target.Target(target)
    try:
        with COMPILE_LOCK:
            return _compile(program.mod, tgt, database)
    except Exception as err:
        raise MeasurementError(
            f"TVM could not compile the model for {target}: {type(err).__name__}: {err}",
            stage="compile",
        ) from err


def export_library(executable: Any, path: Path, device: DeviceProfile) -> Path:
    """Link ``executable`` into a shared library for the device with its cross compiler.

    Raises:
        DeviceError: The cross compiler is missing or cannot link (says which package to install).
    """
    from tvm.support import cc

    compiler = device.cross_compiler
    if compiler and shutil.which(compiler) is None:
        raise DeviceError(
            f"cross compiler {compiler!r} not found on PATH; on Debian/Ubuntu install it with "
            "`apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross` "
            "(or run scripts/aarch64_toolchain.sh)",
            source=device.source,
            field="cross_compiler",
        )
    options = list(device.cross_compiler_options) or None
    fcompile = cc.cross_compiler(compiler, options=options) if compiler else cc.create_shared
    try:
        executable.export_library(str(path), fcompile=fcompile)
    except Exception as err:
        hint = ""
        if "crti.o" in str(err) or "cannot find -lc" in str(err):
            hint = (
                " (the C library for the target is missing: "
                "`apt-get install libc6-dev-arm64-cross`)"
            )
        raise DeviceError(
            f"linking with {compiler or 'the host compiler'} failed{hint}: {err}",
            source=device.source,
            field="cross_compiler",
        ) from err
    return path
