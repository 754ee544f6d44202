"""The schema of a row's YAML keys: what the decoder checks, declared by each operator.

The decoder (:func:`archkit.spec.decode_spec`) takes the fields of every row kind as an argument,
so it depends on nothing; the operators (``archkit.ops``) declare their fields with
:class:`FieldRule` next to their lowering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FieldRule", "NUM_CLASSES", "NAME_PATTERN", "COMMON_FIELDS"]

#: The value of ``c`` that means "the spec's number of classes".
NUM_CLASSES = "num_classes"


@dataclass(frozen=True)
class FieldRule:
    """One YAML key of a row: its attribute on :class:`~archkit.spec.Row`, type and bounds."""

    key: str
    attr: str
    kind: type
    default: Any = None
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    #: ``c`` may be the literal ``num_classes`` (classifier rows).
    allow_classes: bool = False
    help: str = ""
    #: Missing means ``None`` (not "required") when there is no default.
    optional: bool = False
    #: For ``kind=tuple``: the type of every item (the YAML value is a list).
    item: type | None = None
    #: A string value must match this regular expression (whole string).
    pattern: str | None = None


#: A feature-map name: a Python identifier, so it reads like the module path it mirrors.
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
#: Keys every row may carry, whatever its operator (docs/heads.md).
COMMON_FIELDS = (
    FieldRule("name", "name", str, optional=True, pattern=NAME_PATTERN,
              help="feature-map name that later rows may read with from:"),
    FieldRule("from", "from_feature", str, optional=True,
              pattern=rf"{NAME_PATTERN}(\.[0-9]+(\.{NAME_PATTERN})?)?",
              help="the feature map this row reads: <name>, <name>.<repeat> or "
                   "<name>.<repeat>.<node>"),
)
