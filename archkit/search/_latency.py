"""The latency meter of a search: a candidate's latency on a device, predicted or measured.

With a latency model for the device and runtime (``archkit latency build``), a candidate's
latency is predicted in microseconds without the device, and only the winners are measured at
the end (:meth:`LatencyMeter.verify`); without one (or with ``latency="measure"``), every
candidate is compiled and timed on the device once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from archkit.search._errors import SearchInputError

__all__ = ["LatencyMeter"]


class LatencyMeter:
    """Latency of a candidate on a device (``archkit.device``, imported when asked).

    Attributes:
        source: ``model`` (predicted) or ``measure`` (compiled and timed per candidate).
        model: The latency model when ``source`` is ``model``.
        note: Why a model was not used (``auto`` without a usable model), else None.
    """

    def __init__(self, device: str, options: dict[str, Any], latency: str = "measure",
                 runtime: str = "tvm") -> None:
        try:
            from archkit.device import LatencyModelError, load_device, load_latency_model
        except ImportError as exc:
            raise SearchInputError(
                "device", f"latency needs archkit.device (TVM), which cannot be imported: {exc}"
            ) from None
        self.name = device
        self.options = dict(options)
        self.runtime = runtime
        self.device = load_device(device, **self.options)
        self.model = None
        self.note: str | None = None
        if latency != "measure":
            try:
                self.model = load_latency_model(self.device, runtime=runtime)
            except LatencyModelError as err:
                if latency == "model":
                    raise SearchInputError("latency", str(err)) from None
                self.note = f"no usable latency model, measuring every candidate: {err}"
        self.source = "model" if self.model is not None else "measure"
        if self.model is None:
            from archkit.device import check_reachable

            check_reachable(self.device)
        # Samplers revisit candidates (widths that round to the same channels, list choices);
        # compiling and timing one takes seconds to minutes, so each network is measured once.
        self._cache: dict[Any, float] = {}

    def describe(self) -> dict[str, Any]:
        """For run.json: where the latencies came from."""
        out: dict[str, Any] = {"source": self.source, "device": self.device.name,
                               "runtime": self.runtime if self.model is not None else "tvm"}
        if self.model is not None:
            built = self.model.built
            out["model"] = {
                "networks": built.get("networks"),
                "kernels": built.get("kernels"),
                "created": built.get("created"),
                "adapted_from": (built.get("adapted_from") or {}).get("device"),
                "conditions": self.model.conditions.to_dict(),
            }
        if self.note:
            out["note"] = self.note
        return out

    def __call__(self, spec: Any) -> float:
        if self.model is not None:
            return self.model.predict(spec)
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

    def verify(self, specs: list[Any]) -> list[dict[str, Any]]:
        """Measure predicted winners end to end, under the model's protocol.

        Returns:
            Per spec: ``predicted_ms``, ``measured_ms`` and ``error`` (relative), or ``failed``.
        """
        if self.model is None or not specs:
            return []
        from archkit.device import measure_networks

        measured = measure_networks(specs, self.device, runtime=self.runtime, model=self.model)
        out = []
        for spec, value in zip(specs, measured, strict=True):
            predicted = self.model.predict(spec)
            if isinstance(value, float):
                out.append({"spec": spec.name, "predicted_ms": predicted, "measured_ms": value,
                            "error": (predicted - value) / value})
            else:
                out.append({"spec": spec.name, "predicted_ms": predicted, "failed": str(value)})
        return out
