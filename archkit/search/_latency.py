"""The latency meter of a search: a candidate's median latency on a device, measured once."""

from __future__ import annotations

import dataclasses
from typing import Any

from archkit.search._errors import SearchInputError

__all__ = ["LatencyMeter"]


class LatencyMeter:
    """Median latency of a candidate on a device (``archkit.device``, imported when asked)."""

    def __init__(self, device: str, options: dict[str, Any]) -> None:
        try:
            from archkit.device import load_device
        except ImportError as exc:
            raise SearchInputError(
                "device", f"latency needs archkit.device (TVM), which cannot be imported: {exc}"
            ) from None
        self.name = device
        self.options = dict(options)
        self.device = load_device(device, **self.options)
        try:
            from archkit.device import check_reachable
        except ImportError:  # an archkit.device without the check: the first trial will tell
            check_reachable = None
        if check_reachable is not None:
            check_reachable(self.device)
        # Samplers revisit candidates (widths that round to the same channels, list choices);
        # compiling and timing one takes seconds to minutes, so each network is measured once.
        self._cache: dict[Any, float] = {}

    def __call__(self, spec: Any) -> float:
        from archkit.build import build_model, example_input
        from archkit.device import measure_latency

        key = dataclasses.replace(spec, name="candidate")
        if key not in self._cache:
            result = measure_latency(
                build_model(spec).eval(),
                example_input(spec),
                self.device,
                progress=False,
                name=spec.name,
            )
            self._cache[key] = float(result.median_ms)
        return self._cache[key]
