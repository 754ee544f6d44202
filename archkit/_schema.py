"""The one way archkit reads its YAML files: specs, search spaces and device profiles.

Each format keeps its own schema (what its keys mean); this module holds what they share, so a
mistake reads the same in all three (a :class:`~archkit.errors.FileFormatError` naming the file,
the row and operator where the format has rows, and the field; saying what must hold and what
was found):

- :func:`read_text`: the file's text (at most :data:`MAX_FILE_BYTES`, UTF-8);
- :func:`load_yaml`: safe YAML (no tags that construct Python objects) that rejects a key
  written twice in one mapping (PyYAML silently keeps the last);
- :class:`Where` and the ``check_*`` functions: unknown keys (with a did-you-mean), mappings,
  integers, numbers, booleans and strings, each failure one error at that place;
- :func:`show`: a short, bounded rendering of a user's value (YAML aliases can build billions of
  elements, and Python refuses ``str`` of an integer of thousands of digits).

A small helper rather than pydantic: the three formats' checks are few and their messages
(row index and operator, ``c: num_classes``, bounded values of hostile input) are the point;
pydantic's own messages would need rewriting to keep them, and it would be a new dependency.
"""

from __future__ import annotations

import difflib
import math
import reprlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from archkit.errors import FileFormatError

__all__ = [
    "MAX_FILE_BYTES",
    "Where",
    "check_bool",
    "check_int",
    "check_keys",
    "check_mapping",
    "check_number",
    "check_string",
    "did_you_mean",
    "is_number",
    "kind",
    "load_yaml",
    "read_text",
    "show",
]

MAX_FILE_BYTES = 1 << 20
_MERGE_TAG = "tag:yaml.org,2002:merge"

ErrorType = Callable[..., FileFormatError]


@dataclass(frozen=True)
class Where:
    """A place in one file, and the error type its format raises.

    ``fail(message, field)`` builds the error; :meth:`at_row` and :meth:`inside` narrow the place
    (a row of a spec; the keys of a nested mapping, named ``parent.key``).
    """

    source: str | None
    error: ErrorType = FileFormatError
    row: int | None = None
    op: str | None = None
    prefix: str = ""

    def fail(self, message: str, field: str | None = None) -> FileFormatError:
        """The error ``message`` at ``field`` (relative to this place; ``None``: the place)."""
        name = None if field is None else f"{self.prefix}{field}"
        if name is None and self.prefix:
            name = self.prefix.rstrip(".")
        return self.error(message, source=self.source, row=self.row, op=self.op, field=name)

    def at_row(self, row: int, op: str | None = None) -> Where:
        """Row ``row`` (of operator ``op``, when it is known)."""
        return replace(self, row=row, op=op)

    def inside(self, key: str) -> Where:
        """The keys of the mapping at ``key``, named ``key.<child>``."""
        return replace(self, prefix=f"{self.prefix}{key}.")


# --------------------------------------------------------------------------- reading

def read_text(path: str | Path, where: Where, what: str) -> str:
    """The text of a file, every failure one error naming it.

    Args:
        path: the file.
        where: the place that errors name (the file).
        what: what the file is, for "cannot read the spec: ..." (``"spec"``).
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise where.fail(f"cannot read the {what}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise where.fail(f"file is larger than {MAX_FILE_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise where.fail(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


class DuplicateKeyError(yaml.composer.ComposerError):
    """A key written twice in one mapping (YAML 1.2 forbids it; PyYAML keeps the last)."""

    def __init__(self, key: str, path: tuple[str | int, ...], first: yaml.Node,
                 again: yaml.Node, mapping: yaml.MappingNode) -> None:
        super().__init__("while reading a mapping", first.start_mark,
                         f"found duplicate key {key!r}", again.start_mark)
        self.key = key
        #: Keys and list indices from the top of the document to the mapping.
        self.path = path
        self.first_line = first.start_mark.line + 1
        self.line = again.start_mark.line + 1
        #: The mapping's scalar entries (to name a row's operator).
        self.scalars = {
            k.value: v.value for k, v in mapping.value
            if isinstance(k, yaml.ScalarNode) and isinstance(v, yaml.ScalarNode)
        }


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate keys, knowing where in the document it is."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[Any] = []

    def compose_node(self, parent: Any, index: Any) -> Any:
        # ``index`` is a mapping value's key node, a sequence item's position, or None.
        self._path.append(index)
        try:
            return super().compose_node(parent, index)
        finally:
            self._path.pop()

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key, _ in node.value:
            # Keys are compared as written and resolved (``c`` and ``"c"`` are one key); a merge
            # (``<<: *base``) may be overridden, as YAML's merge keys intend.
            if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                continue
            ident = (key.tag, key.value)
            if ident in seen:
                raise DuplicateKeyError(key.value, self._where(), seen[ident], key, node)
            seen[ident] = key
        return node

    def _where(self) -> tuple[str | int, ...]:
        path = self._path[1:]  # the document's own node comes first
        return tuple(
            p if isinstance(p, int) else p.value if isinstance(p, yaml.ScalarNode) else "?"
            for p in path
        )


def load_yaml(text: str, where: Where, *, rows: str | None = None) -> Any:
    """Safe YAML: no tags that construct Python objects, no key twice in one mapping.

    Every failure is one ``where`` error naming, where YAML knows it, the line and column. A
    duplicate key is named as its field (``connection.port``); in the list of rows at ``rows``
    (a spec's ``layers``) as row index, operator and key.
    """
    loader = None
    try:
        loader = _Loader(text)  # the reader rejects unprintable characters here
        return loader.get_single_data()
    except DuplicateKeyError as dup:
        raise _duplicate(dup, where, rows) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else "a character"
        raise where.fail(f"not valid YAML at line {line}: {what} is not allowed "
                         f"({exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise where.fail(f"not valid YAML{at}: {problem}") from None
    except (RecursionError, ValueError, OverflowError) as exc:
        raise where.fail(f"not valid YAML: {type(exc).__name__}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _duplicate(dup: DuplicateKeyError, where: Where, rows: str | None) -> FileFormatError:
    message = (f"duplicate key {show(dup.key)} (first at line {dup.first_line}, again at line "
               f"{dup.line}; YAML would silently keep the last)")
    path = dup.path
    if rows is not None and len(path) == 2 and path[0] == rows and isinstance(path[1], int):
        op = dup.scalars.get("op") if dup.key != "op" else None
        return where.at_row(path[1], op).fail(message, dup.key)
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in (*path, dup.key)]
    return where.fail(message, "".join(parts).lstrip("."))


# --------------------------------------------------------------------------- rendering

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 40, 40


def show(value: Any) -> str:
    """A short, safe rendering of a user's value for an error message, bounded whatever the
    input."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**15:
        return f"an integer of {value.bit_length()} bits"
    try:
        return _REPR.repr(value)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__}"


def kind(value: Any) -> str:
    """The type of a user's value, for "must be a mapping, got list"."""
    return "nothing" if value is None else type(value).__name__


def did_you_mean(word: Any, known: Iterable[str]) -> str:
    """``", did you mean 'x'?"`` when ``word`` is close to one of ``known`` (difflib), else
    ``""``."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f", did you mean {close[0]!r}?" if close else ""


# --------------------------------------------------------------------------- checks

def check_mapping(value: Any, where: Where, field: str | None = None) -> Mapping:
    """``value`` if it is a mapping."""
    if not isinstance(value, Mapping):
        raise where.fail(f"must be a mapping, got {kind(value)}", field)
    return value


def check_keys(mapping: Mapping, allowed: Iterable[str], where: Where, *, owner: str = "") -> None:
    """Every key of ``mapping`` is ``allowed``; an unknown key fails at its own name, with the
    closest allowed key when one is close (``owner``: "for conv2d")."""
    allowed = list(allowed)
    for key in mapping:
        if key not in allowed:
            suffix = f" {owner}" if owner else ""
            raise where.fail(
                f"unknown key {show(key)}{suffix}{did_you_mean(key, allowed)} "
                f"(allowed: {', '.join(allowed)})",
                key if isinstance(key, str) else show(key),
            )


def _finite(value: int | float) -> bool:
    # math.isfinite raises OverflowError for integers beyond a float's range; integers are finite.
    return isinstance(value, int) or math.isfinite(value)


def is_number(value: Any) -> bool:
    """A finite int or float (not a boolean)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and _finite(value)


def check_int(value: Any, where: Where, field: str | None, lo: int, hi: int) -> int:
    """``value`` if it is an integer in ``lo..hi``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.fail(f"must be an integer, got {show(value)}", field)
    if not lo <= value <= hi:
        raise where.fail(f"must be between {lo} and {hi}, got {show(value)}", field)
    return value


def check_number(value: Any, where: Where, field: str | None, lo: float, hi: float, *,
                 exclusive: bool = False) -> float:
    """``value`` as a float if it is a finite number in ``lo..hi`` (above ``lo`` when
    ``exclusive``)."""
    if not is_number(value):
        raise where.fail(f"must be a finite number, got {show(value)}", field)
    if value < lo or (exclusive and value == lo) or value > hi:
        bound = f"above {lo:g}" if exclusive else f"at least {lo:g}"
        raise where.fail(f"must be {bound} and at most {hi:g}, got {show(value)}", field)
    return float(value)


def check_bool(value: Any, where: Where, field: str | None) -> bool:
    """``value`` if it is ``true`` or ``false``."""
    if not isinstance(value, bool):
        raise where.fail(f"must be true or false, got {show(value)}", field)
    return value


def check_string(value: Any, where: Where, field: str | None, *, non_empty: bool = False) -> str:
    """``value`` if it is a string (with more than blanks, when ``non_empty``)."""
    if not isinstance(value, str) or (non_empty and not value.strip()):
        what = "a non-empty string" if non_empty else "a string"
        raise where.fail(f"must be {what}, got {show(value)}", field)
    return value
