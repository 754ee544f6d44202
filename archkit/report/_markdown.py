"""``reports/paper_tables.md``: the paper's tables and archkit's, side by side, with every
difference explained. The tables come from :mod:`archkit.report._tables`, the prose from
:mod:`archkit.report._prose`; every archkit number is computed when the file is written."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from archkit import reference
from archkit.report import _prose as prose
from archkit.report._families import family_spec
from archkit.report._tables import (
    TABLE3_NETWORKS,
    TABLE3_RULE_LABELS,
    section4_ranges,
    table2,
    table2_bottleneck_layers,
    table3,
    table4,
    tfslim_table,
    truncate,
)

__all__ = ["COMMAND", "markdown_table", "paper_tables_markdown", "write_paper_tables"]

COMMAND = "archkit report paper-tables"
_MATCHING = ("both", "truncated", "rounded")
_FIELDS = ("input", "operator", "t", "c", "n", "s")


def markdown_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, missing: str = ""
) -> str:
    """A Markdown pipe table, cells as ``str(value)`` and ``missing`` for None.

    pandas' ``DataFrame.to_markdown`` (tabulate) pads every column to its widest cell and writes
    an alignment row (``|:---|``); the committed reports have neither, so they are written here.
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(missing if v is None else str(v) for v in row) + " |")
    return "\n".join(lines)


def _na(value: object) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _cell(channels: object, kb: object) -> str:
    if _na(kb):
        return "–"
    return f"{int(channels)}/{kb:.1f}" if not _na(channels) else f"{kb:.1f}"


def _m(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


# ---------------------------------------------------------------------------------- Table 2


def _section_table2(specs_dir) -> str:
    spec = family_spec("mobilenetv2", 1.0, 224, specs_dir)
    frame = table2(spec)
    rows = []
    for r in frame.to_dict("records"):
        extra = _na(r["row"])
        rows.append(
            [
                *(r[f"{f}_paper"] for f in _FIELDS),
                *(r[f"{f}_archkit"] for f in _FIELDS),
                "extra" if extra else ("✓" if r["same"] else "✗"),
                r["note"],
            ]
        )
    headers = [
        "paper Input",
        "Operator",
        "t",
        "c",
        "n",
        "s",
        "archkit Input",
        "Operator",
        "t",
        "c",
        "n",
        "s",
        "same",
        "note",
    ]
    paper_rows = frame[frame["row"].notna()]
    notes = prose.TABLE2_NOTES.format(
        verdict=(
            "Every paper row is reproduced" if paper_rows["same"].all() else "**Some rows differ**"
        ),
        num_classes=spec.num_classes,
        text_layers=reference.TABLE2_TEXT_BOTTLENECK_LAYERS,
        repeats=sum(int(r.n) for r in reference.TABLE2 if r.operator == "bottleneck"),
        blocks=table2_bottleneck_layers(spec),
    )
    return "\n\n".join([prose.TABLE2_INTRO, markdown_table(headers, rows), notes])


# ---------------------------------------------------------------------------------- Table 3


def _table3_notes(label: str, frame: pd.DataFrame) -> str:
    rows = {r["resolution"]: r for r in frame.to_dict("records")}

    def channels(resolution, rule="tensor_between_blocks"):
        return int(rows[resolution][f"{rule}_channels"])

    def kb(resolution, rule="tensor_between_blocks"):
        return rows[resolution][f"{rule}_kb"]

    def cell(resolution, rule="tensor_between_blocks"):
        return _cell(rows[resolution][f"{rule}_channels"], kb(resolution, rule))

    if label == "MobileNetV1":
        return prose.TABLE3_V1.format(
            kb7=_m(kb(7), 1), kb7x2=_m(2 * kb(7), 1), live_max=_m(kb("max", "live_naive"), 1)
        )
    if label == "MobileNetV2":
        return prose.TABLE3_V2.format(
            real56=channels(56),
            real28=channels(28),
            real14=channels(14),
            kb7_1280=_m(kb(7), 1),
            fused_max=_m(kb("max", "live_fused"), 1),
            naive_max=_m(kb("max", "live_naive"), 1),
        )
    if label == "ShuffleNet 2x (g=3)":
        return prose.TABLE3_SHUFFLE_G3.format(
            c28=cell(28), c14=cell(14), c7=cell(7), max_kb=_m(kb("max"), 1)
        )
    return prose.TABLE3_SHUFFLE_G2.format(
        c56=cell(56),
        c28=cell(28),
        c14=cell(14),
        c7=cell(7),
        c1=cell(1),
        live_max=_m(kb("max", "live_naive"), 1),
    )


def _section_table3(specs_dir) -> str:
    parts = [prose.TABLE3_INTRO]
    for network in TABLE3_NETWORKS:
        frame = table3(network, specs_dir)
        rules = ["tensor_between_blocks", "tensor_all", "live_naive", "live_fused"]
        if network.label == "MobileNetV2":
            rules.append("row_input")
        headers = [
            "resolution",
            "paper",
            "paper ch×H×W×2/1000",
            *(TABLE3_RULE_LABELS[r] for r in rules),
        ]
        rows = []
        for r in frame.to_dict("records"):
            resolution = r["resolution"]
            rows.append(
                [
                    "max" if resolution == "max" else f"{resolution}×{resolution}",
                    (
                        f"{r['paper_kb']:g}K"
                        if _na(r["paper_channels"])
                        else f"{int(r['paper_channels'])}/{r['paper_kb']:g}"
                    ),
                    "" if _na(r["paper_arith_kb"]) else _m(r["paper_arith_kb"], 1),
                    *(_cell(r[f"{rule}_channels"], r[f"{rule}_kb"]) for rule in rules),
                ]
            )
        title = f"### {network.label}"
        if network.paper_key and network.label != network.paper_key and "g=2" in network.label:
            title += " (not in the paper: the network its ShuffleNet column matches)"
        trick = (
            "yes"
            if network.first_layer_trick
            else "no (the caption names MobileNetV2 and ShuffleNet only)"
        )
        parts += [
            title,
            f"archkit: {network.description}; first-layer trick: {trick}. Paper column: "
            f'Table 3\'s "{network.paper_key}".',
            markdown_table(headers, rows),
            _table3_notes(network.label, frame),
        ]
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------- Table 4


def _section_table4(specs_dir) -> str:
    frame = table4(specs_dir)
    rows = []
    for r in frame.to_dict("records"):
        if r["madds_match"] == "no spec":
            rows.append(
                [
                    r["model"],
                    r["paper_params_m"],
                    r["paper_madds_m"],
                    r["archkit_spec"],
                    "",
                    "",
                    "",
                    "",
                    "not modelled",
                ]
            )
            continue
        rows.append(
            [
                r["model"],
                r["paper_params_m"],
                r["paper_madds_m"],
                r["archkit_spec"],
                _m(r["params_m_tf_slim"], 3),
                _m(r["params_m_pytorch"], 3),
                _m(r["madds_m"]),
                f"{r['params_match']} ({r['params_convention']})",
                r["madds_match"],
            ]
        )
    by_model = {r["model"]: r for r in frame.to_dict("records")}
    v2, v14 = by_model["MobileNetV2"], by_model["MobileNetV2 (1.4)"]
    sh15, sh15s = by_model["ShuffleNet (1.5)"], by_model["ShuffleNet (1.5), stem scaled"]
    notes = prose.TABLE4_NOTES.format(
        v2_madds=_m(v2["madds_m"]),
        v2_params=_m(v2["params_m_tf_slim"], 3),
        v2_params_pt=_m(v2["params_m_pytorch"], 3),
        v14_madds=_m(v14["madds_m"]),
        v14_params=_m(v14["params_m_tf_slim"]),
        v1_madds=_m(by_model["MobileNetV1"]["madds_m"]),
        sh15_scaled=_m(sh15s["madds_m"]),
        sh15=_m(sh15["madds_m"]),
        sh15_params=_m(sh15["params_m_pytorch"]),
    )
    headers = [
        "model",
        "paper params (M)",
        "paper MAdds (M)",
        "archkit spec",
        "params tf-slim",
        "params pytorch",
        "MAdds (M)",
        "params match",
        "MAdds match",
    ]
    return "\n\n".join(
        [prose.TABLE4_INTRO, markdown_table(headers, rows), notes, _section4(specs_dir)]
    )


def _section4(specs_dir) -> str:
    ranges = section4_ranges(specs_dir)
    lo = ranges.loc[ranges["madds_m_1001"].idxmin()]
    hi = ranges.loc[ranges["madds_m_1001"].idxmax()]
    p_lo, p_hi = ranges["params_m_tf_slim"].min(), ranges["params_m_tf_slim"].max()
    pt_lo, pt_hi = ranges["params_m_pytorch"].min(), ranges["params_m_pytorch"].max()
    claims = reference.SECTION4_CLAIMS

    def label(row) -> str:
        return f"{row['width']:g}/{int(row['resolution'])}"

    table = markdown_table(
        ["claim", "paper", "archkit (tf-slim)", "archkit (pytorch)", "agrees"],
        [
            [
                "MAdds, smallest",
                f"{claims['madds_m'][0]}M",
                f"{_m(lo['madds_m_1001'])}M ({label(lo)})",
                f"{_m(lo['madds_m'])}M",
                "✗",
            ],
            [
                "MAdds, largest",
                f"{claims['madds_m'][1]}M",
                f"{_m(hi['madds_m_1001'])}M ({label(hi)})",
                f"{_m(hi['madds_m'])}M",
                "✗ (see 1.4)",
            ],
            [
                "params, smallest",
                f"{claims['params_m'][0]}M",
                f"{_m(p_lo, 3)}M",
                f"{_m(pt_lo, 3)}M",
                "✓ rounded",
            ],
            [
                "params, largest",
                f"{claims['params_m'][1]}M",
                f"{_m(p_hi, 3)}M",
                f"{_m(pt_hi, 3)}M",
                "✗ (see 1.4)",
            ],
        ],
    )
    notes = prose.SECTION4_NOTES.format(
        lo_label=f"{lo['width']:g} at {int(lo['resolution'])}×{int(lo['resolution'])}",
        lo_madds=_m(lo["madds_m_1001"]),
        lo_trunc=int(truncate(lo["madds_m_1001"])),
        p_lo=_m(p_lo),
    )
    return "\n\n".join(
        ["### Section 4's ranges (widths 0.35..1.4 × resolutions 96..224)", table, notes]
    )


# ---------------------------------------------------------------------------------- TF-slim

_TFSLIM = {
    "mobilenetv2": ("MobileNetV2", reference.TFSLIM_MOBILENET_V2_SOURCE),
    "mobilenetv1": ("MobileNetV1", reference.TFSLIM_MOBILENET_V1_SOURCE),
}


def _tfslim_counts(frame: pd.DataFrame) -> dict[str, int]:
    return {
        "rows": len(frame),
        "macs_ok": int(frame["macs_match"].isin(_MATCHING).sum()),
        **{
            f"{c}_ok": int(frame[f"params_match_{c}"].isin(_MATCHING).sum())
            for c in ("tf_slim", "tf_slim_vars", "pytorch")
        },
    }


def _section_tfslim(family: str, specs_dir) -> str:
    frame = tfslim_table(family, specs_dir)
    label, source = _TFSLIM[family]
    rows = [
        [
            f"{r['width']:g}",
            r["resolution"],
            r["published_macs_m"],
            _m(r["macs_m"]),
            r["macs_match"],
            f"{r['published_params_m']:.2f}",
            _m(r["params_m_tf_slim"], 4),
            _m(r["params_m_tf_slim_vars"], 4),
            _m(r["params_m_pytorch"], 4),
            r["params_match_tf_slim"],
            r["params_match_tf_slim_vars"],
            r["params_match_pytorch"],
        ]
        for r in frame.to_dict("records")
    ]
    counts = _tfslim_counts(frame)
    n = counts["rows"]
    kinds = frame["macs_match"].value_counts().to_dict()
    summary = (
        f"Params reproduced to the printed 2 decimals: tf-slim {counts['tf_slim_ok']}/{n}, "
        f"tf-slim-vars {counts['tf_slim_vars_ok']}/{n}, pytorch {counts['pytorch_ok']}/{n}. "
        f"MACs: {', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}."
    )
    parts = [
        prose.TFSLIM_INTRO.format(label=label, source=source, family=family),
        markdown_table(
            [
                "width",
                "res",
                "MACs",
                "archkit",
                "MACs match",
                "params",
                "tf-slim",
                "tf-slim-vars",
                "pytorch",
                "tf-slim match",
                "tf-slim-vars match",
                "pytorch match",
            ],
            rows,
        ),
        summary,
    ]
    if family == "mobilenetv2":
        truncated = frame[frame["macs_match"] == "truncated"].to_dict("records")
        parts.append(
            prose.TFSLIM_V2_NOTES.format(
                n=counts["tf_slim_ok"],
                truncated=", ".join(
                    f"{r['width']:g}/{r['resolution']}: {_m(r['macs_m'])} → {r['published_macs_m']}"
                    for r in truncated
                ),
            )
        )
        return "\n\n".join(parts)
    notes = [
        prose.TFSLIM_V1_NOTES.format(
            vars_ok=counts["tf_slim_vars_ok"], slim_ok=counts["tf_slim_ok"], n=n
        )
    ]
    differs = frame[frame["macs_match"] == "differs"]
    no_stem = differs[differs["macs_without_stem_match"].isin(_MATCHING)].to_dict("records")
    if no_stem:
        first = no_stem[0]
        notes.append(
            prose.TFSLIM_V1_STEM.format(
                count=len(no_stem),
                width=f"{first['width']:g}",
                percent=_m(100 * (1 - first["published_macs_m"] / first["macs_m"]), 1),
                exact=_m(first["macs_m"]),
                stem=_m(first["stem_macs_m"]),
            )
        )
    for r in differs[~differs["macs_without_stem_match"].isin(_MATCHING)].to_dict("records"):
        notes.append(
            prose.TFSLIM_V1_OTHER.format(
                width=f"{r['width']:g}",
                resolution=r["resolution"],
                published=r["published_macs_m"],
                exact=_m(r["macs_m"]),
                stem=_m(r["stem_macs_m"]),
            )
        )
    parts.append("\n".join(notes))
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------- the file


def _header(specs_dir) -> str:
    v2 = _tfslim_counts(tfslim_table("mobilenetv2", specs_dir))
    v1 = _tfslim_counts(tfslim_table("mobilenetv1", specs_dir))
    by_model = {r["model"]: r for r in table4(specs_dir).to_dict("records")}
    return prose.HEADER.format(
        command=COMMAND,
        v1_madds=_m(by_model["MobileNetV1"]["madds_m"]),
        v14_madds=_m(by_model["MobileNetV2 (1.4)"]["madds_m"]),
        v14_params=_m(by_model["MobileNetV2 (1.4)"]["params_m_tf_slim"]),
        v2_rows=v2["rows"],
        v2_macs_ok=v2["macs_ok"],
        v2_params_ok=v2["tf_slim_ok"],
        v1_rows=v1["rows"],
        v1_macs_ok=v1["macs_ok"],
        v1_params_ok=v1["tf_slim_vars_ok"],
    ).rstrip()


def paper_tables_markdown(specs_dir: str | Path | None = None) -> str:
    """The whole ``reports/paper_tables.md`` text."""
    sections = [
        _header(specs_dir),
        _section_table2(specs_dir),
        _section_table3(specs_dir),
        _section_table4(specs_dir),
        _section_tfslim("mobilenetv2", specs_dir),
        _section_tfslim("mobilenetv1", specs_dir),
    ]
    return "\n\n".join(sections).rstrip() + "\n"


def write_paper_tables(
    path: str | Path = "reports/paper_tables.md", specs_dir: str | Path | None = None
) -> Path:
    """Write :func:`paper_tables_markdown` to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(paper_tables_markdown(specs_dir), encoding="utf-8")
    return path
