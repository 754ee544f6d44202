"""The paper's tables next to archkit's counts, as DataFrames (the markdown is rendered apart).

Each function returns one comparison table; :mod:`archkit.report._markdown` writes them, with the
explanations, to ``reports/paper_tables.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from archkit import reference
from archkit.cost import count
from archkit.ops import PRIMITIVES, lower
from archkit.report._families import (
    family_spec,
    shufflenet_g2,
    shufflenet_unscaled_stem,
)
from archkit.report._table3 import KB, memory_by_resolution
from archkit.spec import Spec

__all__ = [
    "TABLE3_NETWORKS",
    "match_kind",
    "section4_ranges",
    "table2",
    "table3",
    "table4",
    "tfslim_table",
    "truncate",
]


def truncate(value: float, decimals: int = 0) -> float:
    """``value`` cut (not rounded) to ``decimals`` places: 300.77 -> 300."""
    factor = 10**decimals
    return math.floor(value * factor + 1e-9) / factor


def _round_half_up(value: float, decimals: int) -> float:
    factor = 10**decimals
    return math.floor(value * factor + 0.5) / factor


def match_kind(published: float, exact: float, decimals: int) -> str:
    """How a published number relates to an exact one at ``decimals`` places.

    Returns:
        ``"both"`` (truncation and rounding agree and match), ``"truncated"``, ``"rounded"``
        (half up), ``"off by rounding"`` (within one unit of the last place: a double rounding
        such as 149.4976 -> 149.5 -> 150), or ``"differs"``.
    """
    unit = 10**-decimals
    t = math.isclose(truncate(exact, decimals), published, abs_tol=unit / 100)
    r = math.isclose(_round_half_up(exact, decimals), published, abs_tol=unit / 100)
    if t and r:
        return "both"
    if t:
        return "truncated"
    if r:
        return "rounded"
    if abs(exact - published) <= unit * 1.0001:
        return "off by rounding"
    return "differs"


# ---------------------------------------------------------------------------------- Table 2


def _shape_text(channels: int, height: int, width: int) -> str:
    if height == width == 1:
        return f"1×1×{channels}"
    if height == width:
        return f"{height}²×{channels}"
    return f"{height}×{width}×{channels}"


def _operator_text(spec_row, block) -> str:
    op = spec_row.op
    if op == "conv2d":
        k = spec_row.kernel
        return "conv2d" if k == 3 else f"conv2d {k}x{k}"
    if op == "avgpool":
        return f"avgpool {block.in_shape.height}x{block.in_shape.width}"
    return op


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}"


def table2(spec: Spec) -> pd.DataFrame:
    """Table 2 rendered back from ``spec`` next to the paper's, one row per paper row.

    Columns ``<field>_paper`` and ``<field>_archkit`` for input, operator, t, c, n, s, and
    ``same`` (every field equal after the spelling differences listed in ``note``).
    """
    network = lower(spec)
    rendered = []
    for row in spec.rows:
        blocks = [b for b in network.blocks if b.row.index == row.index]
        first = blocks[0]
        shape = first.in_shape
        strided = row.op in ("conv2d", "bottleneck", "dwsep", "shuffle", "maxpool")
        rendered.append(
            {
                "op": row.op,
                "input": _shape_text(shape.channels, shape.height, shape.width),
                "operator": _operator_text(row, first),
                "t": _number(row.expansion) if row.op == "bottleneck" else "-",
                "c": str(first.out_shape.channels) if row.op not in ("avgpool", "dropout") else "-",
                "n": str(row.repeats),
                "s": str(row.stride) if strided else "-",
            }
        )
    # archkit's extra rows (dropout) have no paper row; the paper's classifier is a 1x1 conv.
    archkit_rows = [r for r in rendered if r["op"] != "dropout"]
    records = []
    for index, paper_row in enumerate(reference.TABLE2):
        ours = archkit_rows[index] if index < len(archkit_rows) else None
        record = {"row": index}
        notes = []
        same = ours is not None
        for field in ("input", "operator", "t", "c", "n", "s"):
            theirs = getattr(paper_row, field)
            mine = ours[field] if ours else ""
            record[f"{field}_paper"] = theirs
            record[f"{field}_archkit"] = mine
            if theirs == mine:
                continue
            if ours and ours["op"] == "fc" and field == "operator" and theirs == "conv2d 1x1":
                notes.append("fc = a 1x1 conv on a 1x1 map (same MAdds and weights)")
            elif ours and ours["op"] == "fc" and field == "c" and theirs == "k":
                notes.append(f"k = num_classes = {mine}")
            elif ours and ours["op"] == "fc" and field in ("n", "s"):
                notes.append(f"the paper prints '-' for the classifier's {field}")
            else:
                same = False
                notes.append(f"{field}: paper {theirs!r}, archkit {mine!r}")
        record["same"] = same
        record["note"] = "; ".join(notes)
        records.append(record)
    extra = [r for r in rendered if r["op"] == "dropout"]
    for r in extra:
        records.append(
            {
                "row": None,
                **{f"{f}_paper": "" for f in ("input", "operator", "t", "c", "n", "s")},
                **{f"{f}_archkit": r[f] for f in ("input", "operator", "t", "c", "n", "s")},
                "same": True,
                "note": "not a row of Table 2 (the text: 'we utilize dropout'); costs nothing",
            }
        )
    return pd.DataFrame.from_records(records)


def table2_bottleneck_layers(spec: Spec) -> int:
    """Number of bottleneck layers (blocks) ``spec`` lowers to."""
    return sum(1 for b in lower(spec).blocks if b.row.op == "bottleneck")


# ---------------------------------------------------------------------------------- Table 3


@dataclass(frozen=True)
class Table3Network:
    """One column of Table 3 and the spec archkit counts for it."""

    label: str
    paper_key: str | None
    spec_factory: Callable[[str | Path | None], Spec]
    first_layer_trick: bool
    description: str


def _v1(specs_dir):
    return family_spec("mobilenetv1", 1.0, 224, specs_dir)


def _v2(specs_dir):
    return family_spec("mobilenetv2", 1.0, 224, specs_dir)


def _shuffle_2x_g3(specs_dir):
    return family_spec("shufflenet_g3", 2.0, 224, specs_dir)


def _shuffle_2x_g2(specs_dir):
    return shufflenet_g2(family_spec("shufflenet_g3", 2.0, 224, specs_dir))


TABLE3_NETWORKS: tuple[Table3Network, ...] = (
    Table3Network("MobileNetV1", "MobileNetV1", _v1, False, "specs/mobilenetv1.yaml (1.0, 224)"),
    Table3Network("MobileNetV2", "MobileNetV2", _v2, True, "specs/mobilenetv2.yaml (1.0, 224)"),
    Table3Network(
        "ShuffleNet 2x (g=3)",
        "ShuffleNet (2x,g=3)",
        _shuffle_2x_g3,
        True,
        "specs/shufflenet_g3.yaml --width 2",
    ),
    Table3Network(
        "ShuffleNet 2x (g=2)",
        "ShuffleNet (2x,g=3)",
        _shuffle_2x_g2,
        True,
        "the g=3 spec with groups 2 and 1x channels 200/400/800, --width 2",
    ),
)

TABLE3_RULE_LABELS = {
    "tensor_between_blocks": "largest tensor between blocks",
    "tensor_all": "largest tensor, every tensor",
    "live_naive": "live, naive schedule",
    "live_fused": "live, fused schedule",
    "row_input": "row c at its input resolution",
}


def table3(
    network: Table3Network, specs_dir: str | Path | None = None, dtype: str = "fp16"
) -> pd.DataFrame:
    """One Table 3 column: the paper's cells and every rule's cell, per resolution.

    Rows are the resolutions 112..1 and ``max``; columns ``paper_channels``, ``paper_kb``,
    ``paper_arith_kb`` (the paper's channels x H x W x 2 / 1000), then ``<rule>_channels`` and
    ``<rule>_kb`` for each rule of :data:`TABLE3_RULE_LABELS`.
    """
    spec = network.spec_factory(specs_dir)
    cells = memory_by_resolution(
        spec, reference.TABLE3_RESOLUTIONS, dtype, first_layer_trick=network.first_layer_trick
    )
    paper_cells = reference.TABLE3.get(network.paper_key or "", ())
    records = []
    for i, resolution in enumerate((*reference.TABLE3_RESOLUTIONS, 0)):
        record: dict[str, object] = {"resolution": resolution or "max"}
        if resolution and paper_cells:
            cell = paper_cells[i]
            record["paper_channels"] = cell.channels
            record["paper_kb"] = cell.kb
            record["paper_arith_kb"] = cell.channels * resolution * resolution * 2 / KB
        elif paper_cells:
            record["paper_channels"] = None
            record["paper_kb"] = reference.TABLE3_MAX_KB[network.paper_key]
            record["paper_arith_kb"] = None
        for rule in TABLE3_RULE_LABELS:
            c = cells[rule][resolution]
            record[f"{rule}_channels"] = c.channels
            record[f"{rule}_kb"] = c.kb
        records.append(record)
    return pd.DataFrame.from_records(records)


# ---------------------------------------------------------------------------------- Table 4


def _madds_params(spec: Spec) -> dict[str, float]:
    slim = count(spec, "tf-slim")
    torch_style = count(spec, "pytorch")
    slim_vars = count(spec, "tf-slim-vars")
    return {
        "madds_m": torch_style.madds / 1e6,
        "madds_m_1001": slim.madds / 1e6,
        "params_m_pytorch": torch_style.params / 1e6,
        "params_m_tf_slim": slim.params / 1e6,
        "params_m_tf_slim_vars": slim_vars.params / 1e6,
    }


def table4(specs_dir: str | Path | None = None) -> pd.DataFrame:
    """Table 4's Params and MAdds next to archkit's count of the spec that models each row.

    ``madds_match`` / ``params_match`` are :func:`match_kind` of the paper's number against
    archkit's (MAdds at 0 decimals with 1000 classes; params at 1 decimal, under whichever
    convention matches, named in ``params_convention``).
    """
    v2 = family_spec("mobilenetv2", 1.0, 224, specs_dir)
    sh15 = family_spec("shufflenet_g3", 1.5, 224, specs_dir)
    models = {
        "MobileNetV1": ("mobilenetv1 1.0/224", family_spec("mobilenetv1", 1.0, 224, specs_dir)),
        "ShuffleNet (1.5)": (
            "shufflenet_g3 1.5x, stem kept at 24 channels",
            shufflenet_unscaled_stem(sh15),
        ),
        "ShuffleNet (x2)": ("shufflenet_g3 2x", family_spec("shufflenet_g3", 2.0, 224, specs_dir)),
        "MobileNetV2": ("mobilenetv2 1.0/224", v2),
        "MobileNetV2 (1.4)": (
            "mobilenetv2 1.4/224",
            family_spec("mobilenetv2", 1.4, 224, specs_dir),
        ),
    }
    records = []
    for row in reference.TABLE4:
        record: dict[str, object] = {
            "model": row.model,
            "paper_params_m": row.params_m,
            "paper_madds_m": row.madds_m,
        }
        if row.model not in models:
            record.update(archkit_spec="(no spec)", madds_match="no spec", params_match="no spec")
            records.append(record)
            continue
        label, spec = models[row.model]
        numbers = _madds_params(spec)
        record["archkit_spec"] = label
        record.update(numbers)
        record["madds_match"] = match_kind(row.madds_m, numbers["madds_m"], 0)
        kinds = {
            convention: match_kind(row.params_m, numbers[f"params_m_{convention}"], 1)
            for convention in ("tf_slim", "tf_slim_vars", "pytorch")
        }
        matching = [c for c, k in kinds.items() if k in ("both", "truncated", "rounded")]
        record["params_convention"] = ", ".join(c.replace("_", "-") for c in matching) or "-"
        record["params_match"] = kinds[matching[0]] if matching else "differs"
        records.append(record)
    # The 1.5x model as the spec file scales it (stem 36 channels), for the record.
    paper_sh15 = next(row for row in reference.TABLE4 if row.model == "ShuffleNet (1.5)")
    numbers = _madds_params(sh15)
    records.append(
        {
            "model": "ShuffleNet (1.5), stem scaled",
            "paper_params_m": paper_sh15.params_m,
            "paper_madds_m": paper_sh15.madds_m,
            "archkit_spec": "shufflenet_g3 --width 1.5 (stem 36 channels)",
            **numbers,
            "madds_match": match_kind(paper_sh15.madds_m, numbers["madds_m"], 0),
            "params_convention": "pytorch, tf-slim",
            "params_match": match_kind(paper_sh15.params_m, numbers["params_m_pytorch"], 1),
        }
    )
    return pd.DataFrame.from_records(records)


def section4_ranges(specs_dir: str | Path | None = None) -> pd.DataFrame:
    """MAdds and params over Section 4's grid (widths 0.35..1.4, resolutions 96..224)."""
    records = []
    for width in reference.SECTION4_CLAIMS["widths"]:
        for resolution in reference.SECTION4_CLAIMS["resolutions"]:
            spec = family_spec("mobilenetv2", width, resolution, specs_dir)
            records.append({"width": width, "resolution": resolution, **_madds_params(spec)})
    return pd.DataFrame.from_records(records)


# ---------------------------------------------------------------------------------- TF-slim


def _stem_madds(spec: Spec) -> int:
    network = lower(spec)
    return sum(
        PRIMITIVES[node.prim].madds(node) for block, node in network.nodes() if block.row.index == 0
    )


def tfslim_table(family: str, specs_dir: str | Path | None = None) -> pd.DataFrame:
    """Every row of TF-slim's table for ``mobilenetv2`` or ``mobilenetv1`` against archkit.

    MACs are compared with archkit's count under a 1001-way classifier (TF-slim's), params under
    the three conventions; ``*_match`` columns are :func:`match_kind` results.
    """
    rows = {
        "mobilenetv2": reference.TFSLIM_MOBILENET_V2,
        "mobilenetv1": reference.TFSLIM_MOBILENET_V1,
    }[family]
    records = []
    for row in rows:
        spec = family_spec(family, row.width, row.resolution, specs_dir)
        numbers = _madds_params(spec)
        # A hypothesis for the rows that differ: the first conv (the stem) left out.
        stem_m = _stem_madds(spec) / 1e6
        records.append(
            {
                "width": row.width,
                "resolution": row.resolution,
                "published_macs_m": row.macs_m,
                "macs_m": numbers["madds_m_1001"],
                "macs_match": match_kind(row.macs_m, numbers["madds_m_1001"], 0),
                "stem_macs_m": stem_m,
                "macs_without_stem_match": match_kind(
                    row.macs_m, numbers["madds_m_1001"] - stem_m, 0
                ),
                "published_params_m": row.params_m,
                "params_m_tf_slim": numbers["params_m_tf_slim"],
                "params_m_tf_slim_vars": numbers["params_m_tf_slim_vars"],
                "params_m_pytorch": numbers["params_m_pytorch"],
                **{
                    f"params_match_{c}": match_kind(row.params_m, numbers[f"params_m_{c}"], 2)
                    for c in ("tf_slim", "tf_slim_vars", "pytorch")
                },
                "top1": row.top1,
            }
        )
    return pd.DataFrame.from_records(records)
