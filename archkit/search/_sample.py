"""Random candidates from search spaces, drawn the way a search draws them.

A latency model is built from, and evaluated on, networks a search would propose: each is
``space.candidate(space.suggest(trial))`` for a trial of Optuna's :class:`RandomSampler`, so
every range (continuous width, stepped resolution, per-stage expansion and repeats) is sampled
by the same code as in ``archkit search``.

Twenty random networks of three spaces can miss a corner (the thinnest widths, the largest
resolutions) that a space-filling design covers. ``draw="sobol"`` takes each space's trials
from Optuna's :class:`QMCSampler` (a scrambled Sobol' sequence) instead. Measured, adapting a
latency model from 20 such networks was no better than from 20 random ones
(benchmarks/adapt_draws.py, docs/latency.md), so random stays the default; with three spaces
in turn, 20 networks are about 6 points of each space's sequence, too few for its spread to
show.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from archkit.errors import SpecError
from archkit.search._space import SearchSpace

__all__ = ["DRAWS", "Candidate", "random_candidates"]


@dataclass(frozen=True)
class Candidate:
    """One drawn network: its space, its parameters and its spec."""

    space: str
    params: dict[str, float]
    spec: Any

    @property
    def name(self) -> str:
        shown = ",".join(f"{k}={v:.4g}" for k, v in self.params.items())
        return f"{self.space}[{shown}]"


#: How :func:`random_candidates` can draw: Optuna's RandomSampler, or its QMCSampler.
DRAWS = ("random", "sobol")


def random_candidates(spaces: Sequence[SearchSpace], seed: int = 0,
                      draw: str = "random") -> Iterator[Candidate]:
    """An endless stream of random candidates, taking the spaces in turn.

    The stream is a pure function of ``seed``, ``draw`` and the spaces: a resumed build draws
    the same networks again (and skips those it has measured). Candidates that are not valid
    networks are skipped.

    Args:
        spaces: The search spaces, taken in turn.
        seed: Seed of every space's sampler.
        draw: ``"random"`` (independent uniform draws, as a search's random sampler makes) or
            ``"sobol"`` (a scrambled Sobol' sequence per space: the first networks spread
            evenly over every parameter's range; Optuna draws each space's first one at
            random and learns the space from it).

    Raises:
        ValueError: An unknown ``draw``.
    """
    import optuna

    if draw not in DRAWS:
        raise ValueError(f"draw must be one of {', '.join(DRAWS)}, got {draw!r}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def sampler(i: int) -> Any:
        if draw == "random":
            return optuna.samplers.RandomSampler(seed=seed * 1000 + i)
        with warnings.catch_warnings():  # "experimental" since Optuna 3.0, as of 5.0
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(
                qmc_type="sobol", scramble=True, seed=seed * 1000 + i,
                independent_sampler=optuna.samplers.RandomSampler(seed=seed * 1000 + i),
                warn_independent_sampling=False, warn_asynchronous_seeding=False)

    studies = [optuna.create_study(sampler=sampler(i)) for i in range(len(spaces))]
    while True:
        for space, study in zip(spaces, studies, strict=True):
            trial = study.ask()
            params = space.suggest(trial)
            study.tell(trial, 0.0)
            try:
                spec = space.candidate(params)
            except SpecError:
                continue
            yield Candidate(space.name, dict(params), spec)
