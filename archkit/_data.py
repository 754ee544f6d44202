"""The data archkit ships: specs, device profiles and search spaces, read as package data.

They live in ``archkit/data/<kind>/`` (the repository's top-level ``specs/``, ``devices/`` and
``search_spaces/`` are links to those folders), so an installed archkit finds every shipped name
from any working directory.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["KINDS", "resolve", "shipped_dir", "shipped_file", "shipped_names"]

#: The kinds of shipped data, each a folder of ``NAME.yaml`` files.
KINDS = ("specs", "devices", "search_spaces")


def shipped_dir(kind: str) -> Path:
    """The folder holding the shipped files of ``kind`` (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of shipped data {kind!r}; expected one of {KINDS}")
    # archkit is installed as plain files (never zipped), so the resource is a real folder.
    return Path(str(files("archkit") / "data" / kind))


def shipped_file(kind: str, name: str) -> Path | None:
    """The shipped ``NAME.yaml`` of ``kind``, or None when there is none by that name."""
    path = shipped_dir(kind) / f"{name}.yaml"
    return path if path.is_file() else None


def shipped_names(kind: str) -> list[str]:
    """The names (file stems) of the shipped files of ``kind``, sorted."""
    return sorted(p.stem for p in shipped_dir(kind).glob("*.yaml"))


def resolve(kind: str, value: str | Path) -> Path | None:
    """The file a command-line name or path means: ``value`` itself when it is a path (it has a
    ``.yaml``/``.yml`` suffix, a folder part, or exists), else ``./<kind>/NAME.yaml``, else the
    shipped ``NAME.yaml`` of ``kind``. None when ``value`` is a bare name nothing matches."""
    path = Path(value)
    if path.suffix in (".yaml", ".yml") or len(path.parts) > 1 or path.exists():
        return path
    local = Path(kind) / f"{value}.yaml"
    if local.is_file():
        return local
    return shipped_file(kind, str(value))
