"""The files of a latency model, one owner: ``<cache>/latency/<device>-<runtime>.*``.

- ``<device>-<runtime>.jsonl``: the measurements, one JSON line per network, appended as they
  come (a build that stops resumes from them). The first line is a header with the conditions
  and protocol they were measured under.
- ``<device>-<runtime>.json``: the fitted model (:meth:`LatencyModel.to_json`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from archkit.device._latency._conditions import Conditions, TimingProtocol
from archkit.device._latency._errors import LatencyModelError

__all__ = [
    "append_record",
    "compiled_dir",
    "data_path",
    "latency_dir",
    "list_models",
    "model_path",
    "read_model_json",
    "read_records",
    "start_data",
    "write_model_json",
]

_HEADER = "archkit-latency-data"


def latency_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache>/latency`` (cache: ``cache_dir``, else :func:`archkit.device.default_cache_dir`)."""
    if cache_dir is None:
        from archkit.device import default_cache_dir

        cache_dir = default_cache_dir()
    return Path(cache_dir) / "latency"


def model_path(device: str, runtime: str, cache_dir: Any = None) -> Path:
    return latency_dir(cache_dir) / f"{device}-{runtime}.json"


def data_path(device: str, runtime: str, cache_dir: Any = None) -> Path:
    return latency_dir(cache_dir) / f"{device}-{runtime}.jsonl"


def compiled_dir(conditions: Conditions, cache_dir: Any = None) -> Path:
    """Folder of compiled TVM libraries for these conditions (device, target, TVM version,
    tuning state): a library is reused only under the conditions it was compiled for."""
    import hashlib

    key = json.dumps([conditions.target, conditions.threads, conditions.runtime_version,
                      conditions.tuning, conditions.cpu], sort_keys=True, default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return latency_dir(cache_dir) / "compiled" / f"{conditions.device}-{digest}"


def start_data(path: Path, conditions: Conditions, protocol: TimingProtocol) -> None:
    """Create the measurements file with its header (nothing if it exists)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": _HEADER, "conditions": conditions.to_dict(),
              "protocol": protocol.to_dict()}
    path.write_text(json.dumps(header) + "\n")


def read_records(path: Path) -> tuple[Conditions, TimingProtocol, list[dict[str, Any]]]:
    """The header and every complete record (a line cut short by a kill is skipped).

    Raises:
        LatencyModelError: The file is not a measurements file.
    """
    lines = path.read_text().splitlines()
    try:
        header = json.loads(lines[0])
        if header.get("format") != _HEADER:
            raise ValueError
        conditions = Conditions.from_dict(header["conditions"])
        protocol = TimingProtocol.from_dict(header["protocol"])
    except (IndexError, ValueError, KeyError, TypeError):
        raise LatencyModelError(f"{path}: not an archkit latency measurements file") from None
    records = []
    for line in lines[1:]:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return conditions, protocol, records


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one measured network (flushed, so a kill loses at most the line being written)."""
    with path.open("a") as f:
        f.write(json.dumps(record, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_model_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    tmp.replace(path)
    return path


def read_model_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LatencyModelError(f"no latency model at {path}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise LatencyModelError(f"{path}: cannot read the latency model: {err}") from None


def list_models(cache_dir: Any = None) -> list[dict[str, Any]]:
    """One summary per stored model: device, runtime, networks, kernels, conditions, path."""
    folder = latency_dir(cache_dir)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict) or data.get("format") != "archkit-latency-model":
            continue
        built = data.get("built", {})
        conditions = data.get("conditions", {})
        out.append({
            "device": data.get("device"),
            "runtime": data.get("runtime"),
            "networks": built.get("networks"),
            "kernels": built.get("kernels"),
            "build_minutes": built.get("minutes"),
            "adapted_from": (built.get("adapted_from") or {}).get("device"),
            "created": built.get("created"),
            "runtime_version": conditions.get("runtime_version"),
            "threads": conditions.get("threads"),
            "tuning": conditions.get("tuning"),
            "path": str(path),
        })
    return out
