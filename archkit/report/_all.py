"""``archkit report all``: regenerate every file in ``reports/``."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from pathlib import Path

from archkit.report._draw import draw, draw_figure5, save
from archkit.report._markdown import write_paper_tables
from archkit.report._plot_data import figure5_data, pareto_data

__all__ = ["REPORT_FILES", "write_figure5", "write_memory_plot", "write_all"]

#: file (relative to the reports directory) -> (what it is, the command that regenerates it)
REPORT_FILES: dict[str, tuple[str, str]] = {
    "paper_tables.md": (
        "Tables 2, 3 and 4 (Params/MAdds), Section 4's ranges and TF-slim's MobileNetV1/V2 "
        "tables, paper and archkit side by side",
        "archkit report paper-tables",
    ),
    "figure5.html": (
        "Figure 5, interactive: published top-1 vs archkit's MAdds",
        "archkit report figure5",
    ),
    "figure5.png": ("Figure 5, static", "archkit report figure5"),
    "memory_vs_madds.html": (
        "peak activation memory (fp16, Section 5.1 fused schedule) vs MAdds of the families, "
        "interactive",
        "archkit report memory",
    ),
    "memory_vs_madds.png": ("the same, static", "archkit report memory"),
    "plotly.min.js": (
        "plotly.js, shared by the HTML files (they work offline)",
        "archkit report figure5 (or memory, all)",
    ),
}


def write_figure5(
    out_dir: str | Path = "reports", *, png: bool = True, specs_dir: str | Path | None = None
) -> list[Path]:
    """``<out_dir>/figure5.html`` and ``.png``."""
    return save(draw_figure5(figure5_data(specs_dir)), Path(out_dir) / "figure5", png=png)


def write_memory_plot(
    out_dir: str | Path = "reports", *, png: bool = True, specs_dir: str | Path | None = None
) -> list[Path]:
    """``<out_dir>/memory_vs_madds.html`` and ``.png``: the families' fp16 fused-schedule peak
    activation memory against MAdds (Section 5.1's point, for every published model)."""
    data = pareto_data("memory", dtype="fp16", schedule="fused", specs_dir=specs_dir)
    data = dataclasses.replace(
        data,
        title="peak activation memory vs MAdds (fp16, fused schedule)",
        notes=(*data.notes, "Regenerate: archkit report memory"),
    )
    return save(draw(data), Path(out_dir) / "memory_vs_madds", png=png)


#: Reports other modules of archkit.report write (present only when the module is):
#: file -> (module, function(path, specs_dir), what, command).
OPTIONAL_REPORTS: dict[str, tuple[str, str, str, str]] = {
    "heads_tables.md": (
        "archkit.report.heads",
        "write_heads_tables",
        "Tables 5, 6 and 7 (SSDLite, Mobile DeepLabv3), paper and archkit side by side",
        "archkit report all",
    ),
}


#: Files in reports/ that benchmarks measure (on the machine each names); ``archkit report``
#: lists them but never writes them: file -> (what, command).
MEASURED_FILES: dict[str, tuple[str, str]] = {
    "tuning_curve.html": (
        "TVM latency vs MetaSchedule tuning minutes for MobileNetV2 1.0/224 and 0.5/160, beside "
        "onnxruntime and PyTorch in the same run (also `.png`, `.csv`, and `.md`: every point)",
        "python benchmarks/latency_host.py --tuning-curve 30 15",
    ),
    "latency_predictor.md": (
        "latency models on held-out networks beside the device's own repeatability (and "
        "`latency_predictor.json`, `latency_host*_*.html/png/csv` scatter plots)",
        "python benchmarks/latency_predictor.py",
    ),
}


def _optional_writers() -> list[tuple[str, object, str, str]]:
    found = []
    for name, (module, function, what, command) in OPTIONAL_REPORTS.items():
        if importlib.util.find_spec(module) is not None:
            found.append((name, getattr(importlib.import_module(module), function), what, command))
    return found


def _index(out_dir: Path) -> Path:
    lines = [
        "# reports/",
        "",
        "Generated reproductions of the MobileNetV2 paper, committed so they can be read "
        "without running anything. Never edit them by hand: `archkit report all` regenerates "
        "every file here (PNG export needs Chromium: `scripts/chromium.sh`).",
        "",
        "| file | what | regenerate with |",
        "|---|---|---|",
    ]
    files = {**REPORT_FILES, **{n: (w, c) for n, _, w, c in _optional_writers()}}
    for name, (what, command) in files.items():
        lines.append(f"| [{name}]({name}) | {what} | `{command}` |")
    lines += [
        "",
        "Measured by benchmarks on a real machine (each file says which, and when); `archkit "
        "report` does not touch them:",
        "",
        "| file | what | measured with |",
        "|---|---|---|",
    ]
    for name, (what, command) in MEASURED_FILES.items():
        lines.append(f"| [{name}]({name}) | {what} | `{command}` |")
    lines += ["", "See docs/reports.md for the rules behind each number.", ""]
    path = out_dir / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_all(
    out_dir: str | Path = "reports", *, png: bool = True, specs_dir: str | Path | None = None
) -> list[Path]:
    """Regenerate every report file; return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_paper_tables(out_dir / "paper_tables.md", specs_dir)]
    written += write_figure5(out_dir, png=png, specs_dir=specs_dir)
    written += write_memory_plot(out_dir, png=png, specs_dir=specs_dir)
    for name, writer, _, _ in _optional_writers():
        written.append(writer(out_dir / name, specs_dir))
    written.append(_index(out_dir))
    return written
