"""Spec files in, valid networks out: decoding (``archkit.spec``) composed with lowering.

The decoder checks every key against the fields the operators declare; lowering then checks that
each row fits the tensor it receives. A spec that :func:`load_spec`, :func:`parse_spec` or
:func:`apply_overrides` returns lowers (and so builds and counts) without error.
"""

from __future__ import annotations

from pathlib import Path

from archkit.ops._lower import lower
from archkit.ops._operators import OPERATORS
from archkit.spec._load import decode_spec, override_spec, read_spec_text
from archkit.spec._model import Spec

__all__ = ["load_spec", "parse_spec", "apply_overrides"]


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file.

    Raises:
        SpecError: the file cannot be read, is not YAML, or does not describe a valid network.
    """
    return parse_spec(read_spec_text(path), source=str(path))


def parse_spec(text: str, source: str = "<string>") -> Spec:
    """Parse and validate spec text (see ``docs/spec.md`` for the format)."""
    fields = {name: op.fields for name, op in OPERATORS.items()}
    spec = decode_spec(text, source, fields)
    lower(spec)
    return spec


def apply_overrides(
    spec: Spec,
    *,
    width: float | None = None,
    resolution: int | None = None,
    expansion: float | None = None,
) -> Spec:
    """Return a variant of ``spec``: a new width multiplier, input resolution or expansion ratio.

    ``expansion`` replaces every bottleneck expansion ratio above 1 (rows with ``t: 1``, like
    MobileNetV2's first bottleneck, keep it; see :attr:`archkit.spec.Row.has_expansion`).

    Raises:
        SpecError: an override is out of range or makes the network invalid.
    """
    variant = override_spec(spec, width=width, resolution=resolution, expansion=expansion)
    lower(variant)
    return variant
