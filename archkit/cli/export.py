"""``archkit export``: a spec's PyTorch model as an ONNX file (torch.export-based exporter)."""

from __future__ import annotations

import click

from archkit.cli._common import load_with_overrides, override_options

__all__ = ["command"]


@click.command("export")
@click.argument("spec", metavar="SPEC")
@override_options
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="The .onnx file to write [default: NAME.onnx in this folder].")
@click.option("--opset", type=click.IntRange(7), default=None,
              help="ONNX opset [default: the exporter's own, archkit.build.ONNX_OPSET].")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="torch.manual_seed before the weights are initialized: the same seed, the "
              "same file.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Run the file in onnxruntime and compare it with PyTorch on a random input.")
def command(spec: str, width: float | None, resolution: int | None, expansion: float | None,
            output: str | None, opset: int | None, seed: int, check: bool) -> None:
    """Export SPEC (a YAML file or a shipped name) to ONNX: the exact model `archkit profile`
    counts, its weights initialized from --seed (PyTorch's initialization), input named
    `input` (1 x C x H x W).

    \b
    Examples:
      archkit export mobilenetv2 -o mobilenetv2.onnx
      archkit export specs/mobilenetv2.yaml --width 0.5 --resolution 160 -o v2_050_160.onnx
    """
    from pathlib import Path

    loaded = load_with_overrides(spec, width, resolution, expansion)
    path = Path(output) if output is not None else Path(f"{loaded.name}.onnx")
    if path.suffix != ".onnx":
        raise click.BadParameter(f"must end in .onnx, got {str(path)!r}", param_hint="-o")
    from archkit._imports import try_import

    with try_import():
        import torch  # one line naming the extra when torch is missing
    from archkit.build import ONNX_OPSET, build_model, example_input, export_onnx

    torch.manual_seed(seed)
    model = build_model(loaded).eval()
    x = example_input(loaded)
    export_onnx(loaded, path, model=model, example=x, opset=opset or ONNX_OPSET)
    size_mb = path.stat().st_size / 1e6
    click.echo(f"wrote {path} ({size_mb:.1f} MB, opset {opset or ONNX_OPSET}, input "
               f"{'x'.join(map(str, x.shape))})")
    if check:
        diff, scale = _check(model, path)
        click.echo(f"onnxruntime matches PyTorch: max |difference| {diff:.2e} (outputs up to "
                   f"{scale:.2e})")


def _check(model, path, seed: int = 0) -> tuple[float, float]:
    """The largest absolute difference between ``model`` (PyTorch) and the ONNX file in
    onnxruntime, over every output, on one random input, and the largest absolute output; a
    real difference fails the job."""
    from archkit._imports import try_import

    with try_import():
        import onnxruntime as ort
    import numpy as np
    import torch

    from archkit.errors import JobFailed

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(
        expected.values() if isinstance(expected, dict) else expected)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    diff = max(float(np.max(np.abs(e.numpy() - g))) for e, g in zip(expected, got, strict=True))
    scale = max(float(np.max(np.abs(e.numpy()))) for e in expected)
    # Relative to the outputs' size: freshly initialized logits can be tiny.
    if not diff <= 1e-4 * scale:
        raise JobFailed(f"{path}: onnxruntime differs from PyTorch by {diff:.3g} (output scale "
                        f"{scale:.3g}); the file was written but is not the same model")
    return diff, scale
