"""``archkit profile``: analytic costs of specs, per stage or per layer, and device latency."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from archkit._json import json_default
from archkit.cli._common import board_options, human, load_with_overrides, override_options
from archkit.cost import CONVENTIONS, DTYPE_BYTES

__all__ = ["command"]


@click.command("profile")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@override_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="table for people; json or csv for programs.")
@click.option("--per-layer", is_flag=True,
              help="One row per primitive layer, not per stage; with --device, also the measured "
                   "time of every layer and stage row (profiled runs on the device).")
@click.option("--dtype", type=click.Choice(list(DTYPE_BYTES)), default="fp32", show_default=True,
              help="Element type for activation memory.")
@click.option("--convention", type=click.Choice(CONVENTIONS), default="pytorch",
              show_default=True, help="Parameter counting convention (see docs/costs.md).")
@click.option("--device", default=None,
              help="Also compile with TVM and time on this device (devices/NAME.yaml or a path).")
@board_options
@click.option("--runtime", type=click.Choice(["tvm", "onnxruntime"]), default="tvm",
              show_default=True,
              help="What runs the network on the device: TVM, or onnxruntime (on a board: "
                   "`archkit serve` there); with --predict, the runtime of the latency model.")
@click.option("--tune", type=int, default=0, show_default=True,
              help="MetaSchedule tuning trials on the device before timing.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Cache root: tuning databases, and latency models with --predict "
                   "[default: $ARCHKIT_CACHE_DIR or ~/.cache/archkit].")
@click.option("--repeats", type=click.IntRange(min=3), default=30, show_default=True,
              help="Timed repeats on the device (median and p90 over them).")
@click.option("--emulated", is_flag=True, default=None,
              help="The device is an emulator: label its timings 'emulated'.")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="With --device: also time PyTorch eager and onnxruntime on this host.")
@click.option("--predict", is_flag=True,
              help="With --device: predict the latency with the device's latency model "
                   "(archkit latency build), without contacting the device.")
@click.option("--measure/--no-measure", default=None,
              help="With --device: measure on the device [default: unless --predict].")
def command(specs: tuple[str, ...], width: float | None, resolution: int | None,
            expansion: float | None, fmt: str, per_layer: bool, dtype: str, convention: str,
            device: str | None, host: str | None, port: int | None, key: str | None,
            tracker: str | None, ssh: str | None, runtime: str, tune: int,
            cache_dir: str | None, repeats: int, emulated: bool | None,
            baselines: bool, predict: bool, measure: bool | None) -> None:
    """Count MAdds, parameters and peak activation memory of each SPEC (a YAML file, or the
    name of a shipped spec: mobilenetv2, mobilenetv1, shufflenet_g3, ...).

    Counting is analytic (no model is built). With --device, each spec is also compiled
    through TVM, checked against PyTorch on the device and timed there; with --per-layer too,
    profiled runs there time every fused kernel, shown per layer and per stage row beside the
    MAdds (ns per MAdd), with the profiler's overhead (over RPC: `archkit serve` on the board).
    With --device and --predict, its latency is predicted by the device's latency model instead
    (per stage too), in microseconds and without the device; --predict --measure does both.

    \b
    Examples:
      archkit profile mobilenetv2 --width 0.75 --resolution 160
      archkit profile specs/*.yaml --per-layer --dtype fp16 --format json
      archkit profile mobilenetv2 --device rpi4 --host 192.168.1.20 --port 9090
      archkit profile mobilenetv2 --device host --per-layer
    """
    from archkit.cost import cost_table

    if device is None:
        _refuse_device_options(click.get_current_context())
    if runtime == "onnxruntime" and tune:
        raise click.UsageError("--tune tunes TVM; it does not apply to --runtime onnxruntime")

    profiles = [
        cost_table(load_with_overrides(path, width, resolution, expansion,
                                       strict=len(specs) == 1), dtype=dtype,
                   convention=convention)
        for path in specs
    ]
    latencies: list[dict[str, Any] | None] = [None] * len(profiles)
    if (predict or measure) and device is None:
        raise click.UsageError("--predict and --measure need --device")
    if measure is None:
        measure = not predict
    if device is not None and predict:
        latencies = _predict(profiles, device, runtime, measure, cache_dir)
    elif device is not None and measure:
        from archkit.device import load_device, measure_specs
        from archkit.device._kernel_times import DEFAULT_PROFILE_RUNS

        target = load_device(device, host=host, port=port, key=key, tracker=tracker,
                             emulated=emulated, ssh=ssh)
        measured = measure_specs([p.spec for p in profiles], target, tune_trials=tune,
                                 cache_dir=cache_dir, repeats=repeats, baselines=baselines,
                                 runtime=runtime,
                                 profile_runs=DEFAULT_PROFILE_RUNS if per_layer else 0)
        latencies = [m.to_dict() for m in measured]
    if fmt == "json":
        _print_json(profiles, latencies, per_layer)
    elif fmt == "csv":
        _print_csv(profiles, latencies, per_layer)
    else:
        _print_tables(profiles, latencies, per_layer)
    if any(lat is not None and lat.get("error") for lat in latencies):
        from archkit.errors import JobFailed

        raise JobFailed("a latency measurement failed (see above)")


#: The options that only mean something with --device.
_DEVICE_OPTIONS = ("host", "port", "key", "tracker", "ssh", "runtime", "tune", "cache_dir",
                   "repeats", "emulated", "baselines", "predict", "measure")


def _refuse_device_options(ctx: click.Context) -> None:
    """An option that would silently do nothing is a usage error."""
    from click.core import ParameterSource

    given = [
        param for param in ctx.command.params
        if param.name in _DEVICE_OPTIONS
        and ctx.get_parameter_source(param.name) is not ParameterSource.DEFAULT
    ]
    if given:
        flags = ", ".join(_flag(param, ctx) for param in given)
        verb = "applies" if len(given) == 1 else "apply"
        raise click.UsageError(f"{flags} only {verb} with --device NAME (add --device or drop "
                               f"{'it' if len(given) == 1 else 'them'})", ctx=ctx)


def _flag(param: click.Parameter, ctx: click.Context) -> str:
    """The flag as the user wrote it (``--no-baselines``, not ``--baselines``)."""
    value = ctx.params.get(param.name)
    secondary = getattr(param, "secondary_opts", None)
    return secondary[0] if secondary and value is False else param.opts[0]


def layer_rows(profile) -> list[dict[str, Any]]:
    """One row per layer, with the activation memory in bytes of ``--dtype`` as well as in
    elements (``live_elements``, ``output_elements``)."""
    size = profile.element_bytes
    return [
        {**row, "output_bytes": row["output_elements"] * size,
         "live_bytes": row["live_elements"] * size}
        for row in profile.layer_records
    ]


def _predict(profiles, device: str, runtime: str, measure: bool,
             cache_dir: str | None) -> list[dict[str, Any]]:
    """Predicted latency (total and per stage row) from the device's model in ``cache_dir``
    (None: the default cache); measured too (under the model's protocol) with ``measure``."""
    from archkit.device import load_latency_model, measure_networks
    from archkit.ops import lower

    model = load_latency_model(device, runtime=runtime, cache_dir=cache_dir)
    out = []
    for p in profiles:
        explained = model.explain(p.spec)
        stages: dict[int, float] = {}
        for block, ms in zip(lower(p.spec).blocks, explained.blocks_ms, strict=True):
            stages[block.row.index] = stages.get(block.row.index, 0.0) + ms
        out.append({
            "device": model.device,
            "runtime": runtime,
            "predicted_latency_ms": explained.latency_ms,
            "predicted_stage_ms": stages,
            "predicted_overhead_ms": explained.offset_ms,
            "extrapolations": list(explained.extrapolations),
            "model": {"networks": model.built.get("networks"),
                      "created": model.built.get("created"),
                      "adapted_from": (model.built.get("adapted_from") or {}).get("device")},
        })
    if measure:
        measured = measure_networks([p.spec for p in profiles], model.device, runtime=runtime,
                                    model=model, cache_dir=cache_dir)
        for entry, value in zip(out, measured, strict=True):
            if isinstance(value, float):
                entry["latency_ms"] = value
                entry["prediction_error"] = (entry["predicted_latency_ms"] - value) / value
            else:
                entry["error"] = str(value)
    return out


def _rows(p, latency: dict[str, Any] | None) -> tuple[list[dict[str, Any]],
                                                      list[dict[str, Any]], Any]:
    """(stage rows, layer rows, :class:`~archkit.device.KernelProfile` or None) of one spec, as
    every format shows them: the cost columns, then the predicted or measured times.

    Measured: ``measured_ms`` per stage row, ``measured_us`` per layer (0 for a layer the
    runtime fused into another), their ``share`` of the per-row sum and ``ns_per_madd``.
    """
    stages = [dict(r) for r in p.stage_records]
    layers = layer_rows(p)
    if latency is not None and "predicted_stage_ms" in latency:
        for stage in stages:
            stage["predicted_ms"] = latency["predicted_stage_ms"].get(stage["stage"])
    measured = (latency or {}).get("kernel_profile")
    if not measured:
        return stages, layers, None
    from archkit.device import KernelProfile

    profile = KernelProfile.from_dict(measured)
    layer_us, stage_ms = profile.per_layer(p.layer_records)
    total_ms = profile.rows_ms
    for row, us in zip(layers, layer_us, strict=True):
        row.update(measured_us=us, share=us / 1e3 / total_ms, ns_per_madd=_per_madd(us * 1e3, row))
    for stage in stages:
        ms = stage_ms.get(stage["stage"], 0.0)
        stage.update(measured_ms=ms, share=ms / total_ms, ns_per_madd=_per_madd(ms * 1e6, stage))
    return stages, layers, profile


def _per_madd(ns: float, row: dict[str, Any]) -> float | None:
    return ns / row["madds"] if row["madds"] else None


def _print_json(profiles, latencies, per_layer: bool) -> None:
    """Always a list, one object per spec (a program need not care how many it passed)."""
    docs = []
    for p, latency in zip(profiles, latencies, strict=True):
        stages, layers, profile = _rows(p, latency)
        doc: dict[str, Any] = {"totals": p.totals(), "stages": stages}
        if latency is not None and "predicted_latency_ms" in latency:
            doc["predicted_latency_ms"] = latency["predicted_latency_ms"]
            if "latency_ms" in latency:
                doc["latency_ms"] = latency["latency_ms"]
        if per_layer:
            doc["layers"] = layers
        if latency is not None:
            doc["latency"] = {k: v for k, v in latency.items() if k != "kernel_profile"}
        if profile is not None:
            doc["profile"] = profile.to_dict()  # the overhead figures and the raw node times
        docs.append(doc)
    click.echo(json.dumps(docs, indent=2, default=json_default))


def _print_csv(profiles, latencies, per_layer: bool) -> None:
    """One row per stage (or layer) of every spec; the network's latency on each of its rows,
    and with per-layer times one more row, ``network``, for the time no layer owns."""
    import csv

    rows = []
    for p, latency in zip(profiles, latencies, strict=True):
        stages, layers, profile = _rows(p, latency)
        extra: dict[str, Any] = {}
        if latency is not None:
            if "predicted_latency_ms" in latency:
                extra["predicted_latency_ms"] = latency["predicted_latency_ms"]
            measured = latency.get("median_ms", latency.get("latency_ms"))
            if measured is not None:
                extra["latency_ms"] = measured
        own = layers if per_layer else stages
        if profile is not None:
            key = "measured_us" if per_layer else "measured_ms"
            value = profile.network_ms * (1e3 if per_layer else 1.0)
            own = [*own, {"block" if per_layer else "stage": "network", "op": "network",
                          key: value, "share": profile.network_ms / profile.rows_ms}]
        rows += [{"spec": p.spec.name, "dtype": p.dtype, **row, **extra} for row in own]
    fields = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def _print_tables(profiles, latencies, per_layer: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=160)
    for p, latency in zip(profiles, latencies, strict=True):
        spec = p.spec
        stages, layers, profile = _rows(p, latency)
        title = (f"{spec.name}  width {spec.width:g}  {spec.resolution}x{spec.resolution}  "
                 f"({spec.source})")
        if per_layer:
            table = Table(title=title)
            timed = ("us", "ns/MAdd") if profile is not None else ()
            for column in ("block", "op", "node", "input", "output", "s", "k", "g", "MAdds",
                           *timed, "params", f"live ({p.dtype})"):
                table.add_column(column, justify="right" if column not in ("op", "node") else
                                 "left")
            for r in layers:
                times = (f"{r['measured_us']:.1f}", _opt(r["ns_per_madd"], ".3f")) if timed else ()
                table.add_row(str(r["block"]), r["op"], r["node"], r["input"], r["output"],
                              _opt(r["stride"]), _opt(r["kernel"]), _opt(r["groups"]),
                              f"{r['madds']:,}", *times, f"{r['params']:,}",
                              human(r["live_bytes"], "B"))
        else:
            table = Table(title=title)
            for column in ("row", "op", "t", "c", "n", "s", "input", "output", "MAdds",
                           "params", f"peak live ({p.dtype})"):
                table.add_column(column, justify="left" if column == "op" else "right")
            for r in p.stage_records:
                table.add_row(str(r["stage"]), r["op"], _opt(r["t"]), str(r["c"]), str(r["n"]),
                              str(r["s"]), r["input"], r["output"], human(r["madds"]),
                              f"{r['params']:,}", human(r["peak_live_bytes"], "B"))
        console.print(table)
        if profile is not None:
            console.print(_stage_times_table(stages, profile))
        totals = p.totals()
        console.print(
            f"[bold]total[/]: {totals['madds']:,} MAdds ({human(totals['madds'])}), "
            f"{totals['params']:,} params ({p.convention}; BatchNorm {totals['bn_params']:,}), "
            f"peak activations {human(totals['peak_activation_bytes'], 'B')} naive / "
            f"{human(totals['peak_activation_bytes_fused'], 'B')} fused bottlenecks "
            f"({p.dtype})"
        )
        if latency is not None:
            _print_latency(console, latency)
        if profile is not None:
            _print_overhead(console, profile)
        console.print()


def _stage_times_table(stages: list[dict[str, Any]], profile):
    """Measured time per stage row, beside its MAdds; the network row holds what no layer owns."""
    from rich.table import Table

    table = Table(title=f"measured per stage row ({profile.source}, median of {profile.runs} "
                        "profiled runs)")
    for column in ("row", "op", "MAdds", "ms", "share", "ns/MAdd"):
        table.add_column(column, justify="left" if column == "op" else "right")
    for r in stages:
        table.add_row(str(r["stage"]), r["op"], human(r["madds"]), f"{r['measured_ms']:.3f}",
                      f"{r['share']:.1%}", _opt(r["ns_per_madd"], ".3f"))
    table.add_row("-", "network", "-", f"{profile.network_ms:.3f}",
                  f"{profile.network_ms / profile.rows_ms:.1%}", "-")
    table.add_row("", "[bold]sum[/]", "", f"{profile.rows_ms:.3f}", "100.0%", "")
    return table


def _print_overhead(console, profile) -> None:
    console.print(
        f"  per-row times sum to {profile.rows_ms:.3f} ms (layers {profile.nodes_ms:.3f} + "
        f"network {profile.network_ms:.3f}) vs the uninstrumented median "
        f"{profile.e2e_ms:.3f} ms; profiler overhead {profile.overhead_ms:+.3f} ms "
        f"({profile.overhead_ms / profile.e2e_ms:+.1%}): a profiled run takes "
        f"{profile.profiled_run_ms:.3f} ms, {profile.outside_kernels_ms:.3f} ms of it outside "
        "the timed kernels"
    )


def _print_prediction(console, latency: dict[str, Any]) -> None:
    adapted = latency["model"].get("adapted_from")
    console.print(
        f"[bold]predicted latency[/] on {latency['device']} ({latency['runtime']}): "
        f"{latency['predicted_latency_ms']:.3f} ms (latency model of "
        f"{latency['model']['networks']} measured networks"
        + (f", adapted from {adapted}" if adapted else "") + "; no device contacted)"
    )
    stages = ", ".join(f"row {row}: {ms:.3f}" for row, ms in latency["predicted_stage_ms"].items())
    console.print(f"  per stage (ms): {stages}; per-run overhead "
                  f"{latency['predicted_overhead_ms']:.3f}")
    for note in latency["extrapolations"]:
        console.print(f"  [yellow]extrapolated[/]: {note}")
    if "latency_ms" in latency:
        console.print(f"  measured {latency['latency_ms']:.3f} ms (prediction error "
                      f"{latency['prediction_error']:+.1%})")
    elif latency.get("error"):
        console.print(f"  [bold red]measurement failed[/]: {latency['error']}")


def _print_latency(console, latency: dict[str, Any]) -> None:
    if "predicted_latency_ms" in latency:
        _print_prediction(console, latency)
        return
    if latency.get("error"):
        console.print(f"[bold red]latency: failed[/]: {latency['error']}")
        return
    emulated = latency.get("emulated") or latency.get("label") == "emulated"
    label = "EMULATED latency (an emulator, not a device timing)" if emulated else "latency"
    meta = latency.get("metadata") or {}
    runtime = meta.get("runtime", "tvm")
    label += f" ({runtime})"
    console.print(
        f"[bold]{label}[/] on {latency.get('device', '?')}: median {latency['median_ms']:.3f} ms,"
        f" p90 {latency['p90_ms']:.3f} ms, spread {latency['min_ms']:.3f}-"
        f"{latency['max_ms']:.3f} ms over {latency.get('repeats', '?')} repeats;"
        f" max |out - torch| {latency.get('max_abs_diff', float('nan')):.2e}"
    )
    tuning = meta.get("tuning") or {}
    if runtime == "onnxruntime":
        console.print(
            f"  onnxruntime {meta.get('onnxruntime_version', '?')} on {meta.get('machine', '?')},"
            f" threads {meta.get('threads', '?')}, governor {meta.get('governor') or 'unknown'}"
        )
    else:
        console.print(
            f"  TVM {meta.get('tvm_version', '?')}, target {meta.get('target', '?')}, threads "
            f"{meta.get('threads', '?')}, tuning {tuning.get('state', 'untuned')}, governor "
            f"{meta.get('governor') or 'unknown'}"
        )
    base = latency.get("host_baselines")
    if base:
        parts = ", ".join(
            f"{name.removesuffix('_ms')} {value:.3f} ms" for name, value in base.items()
            if name.endswith("_ms") and not name.endswith("p90_ms")
            and isinstance(value, int | float)
        )
        console.print(f"  on this host: {parts}")


def _opt(value: Any, spec: str = "g") -> str:
    if value is None:
        return "-"
    return f"{value:{spec}}" if isinstance(value, float) else str(value)
