"""``random_candidates``: the networks latency models are built and evaluated on."""

from __future__ import annotations

from itertools import islice

import pytest

from archkit.search import random_candidates, resolve_space


def _widths(draw: str, seed: int, n: int) -> list[float]:
    space = resolve_space("mobilenetv1")[0]
    return [c.params["width"] for c in islice(random_candidates([space], seed=seed, draw=draw), n)]


def test_draws_are_a_function_of_the_seed():
    for draw in ("random", "sobol"):
        assert _widths(draw, 3, 8) == _widths(draw, 3, 8)
        assert _widths(draw, 3, 8) != _widths(draw, 4, 8)
    assert _widths("random", 3, 8) != _widths("sobol", 3, 8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sobol_draws_cover_every_stratum(seed):
    """The property a Sobol' sequence has and random draws lack (scipy.stats.qmc's
    definition): its first 2**m points put exactly one in each of 2**m equal intervals of every
    parameter's range. Optuna draws a space's first trial at random and its QMC points after
    it, so the 16 draws after the first split MobileNetV1's width range (0.25..1.4, continuous)
    into 16 sixteenths, one each."""
    space = resolve_space("mobilenetv1")[0]
    [width] = [r for r in space.ranges if r.name == "width"]
    widths = _widths("sobol", seed, 17)[1:]
    bins = sorted(int((w - width.low) / (width.high - width.low) * 16) for w in widths)
    assert bins == list(range(16))


def test_an_unknown_draw_is_refused():
    with pytest.raises(ValueError, match="draw must be one of random, sobol"):
        next(random_candidates([resolve_space("mobilenetv1")[0]], draw="halton"))
