"""Random candidates from search spaces, drawn the way a search draws them.

A latency model is built from, and evaluated on, networks a search would propose: each is
``space.candidate(space.suggest(trial))`` for a trial of Optuna's :class:`RandomSampler`, so
every range (continuous width, stepped resolution, per-stage expansion and repeats) is sampled
by the same code as in ``archkit search``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from archkit.errors import SpecError
from archkit.search._space import SearchSpace

__all__ = ["Candidate", "random_candidates"]


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


def random_candidates(spaces: Sequence[SearchSpace], seed: int = 0) -> Iterator[Candidate]:
    """An endless stream of random candidates, taking the spaces in turn.

    The stream is a pure function of ``seed`` and the spaces: a resumed build draws the same
    networks again (and skips those it has measured). Candidates that are not valid networks
    are skipped.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = [
        optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed * 1000 + i))
        for i in range(len(spaces))
    ]
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
