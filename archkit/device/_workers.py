"""Functions that MetaSchedule runs in its builder/runner worker processes.

They are pickled *by value* (cloudpickle), so this module must stay self-contained: standard
library and tvm only, imported inside the functions.
"""

from __future__ import annotations

__all__ = ["build_candidate", "direct_session", "export_shared"]


def build_candidate(mod, target, _params=None):  # noqa: ANN001 - called by MetaSchedule
    """Builder build: MetaSchedule's default without ``import tvm.s_tir.tensor_intrin``.

    That import registers every tensor intrinsic of every target and takes ~30 s of CPU in
    each fresh builder process on a small host; float32 CPU candidates do not need it.
    """
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)


def export_shared(mod, compiler=None, options=None):  # noqa: ANN001 - called by MetaSchedule
    """Builder export: link the candidate into a ``.so`` with the device's (cross) compiler.

    A ``.so`` (not MetaSchedule's default ``.tar``) so the board needs no compiler of its own.
    """
    import os
    import tempfile

    from tvm.support import cc

    path = os.path.join(tempfile.mkdtemp(prefix="archkit-ms-"), "candidate.so")
    fcompile = cc.cross_compiler(compiler, options=options) if compiler else cc.create_shared
    mod.export_library(path, fcompile=fcompile)
    return path


def direct_session(rpc_config):  # noqa: ANN001 - called by MetaSchedule's RPCRunner
    """Runner session for an ``rpc`` device: connect straight to the board's RPC server.

    MetaSchedule's RPCRunner only knows trackers; for a direct server its ``RPCConfig`` carries
    the server's host and port in the tracker fields and the optional server key.
    """
    from tvm import rpc

    key = rpc_config.tracker_key if rpc_config.tracker_key != "archkit-direct" else ""
    return rpc.connect(
        rpc_config.tracker_host,
        int(rpc_config.tracker_port),
        key,
        session_timeout=rpc_config.session_timeout_sec,
    )
