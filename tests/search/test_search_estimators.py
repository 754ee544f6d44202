"""Every estimator passes the contract in archkit.search.testing; proxy and train on real
models (tiny ones, so that CI's CPUs finish in seconds)."""

from __future__ import annotations

import json
import textwrap

import pytest

from archkit.search import (
    ESTIMATORS,
    SearchInputError,
    load_search_space,
    make_estimator,
    parse_search_space,
    run_search,
)
from archkit.search._estimators import synflow_log10
from archkit.search.testing import check_estimator
from archkit.spec import apply_overrides, load_spec

from .conftest import SPACES, SPECS, archkit


def tiny_space(spec: str = "mobilenetv2", resolutions=(32, 64)):
    return parse_search_space(
        textwrap.dedent(f"""
        name: tiny_{spec}
        base: {SPECS / f"{spec}.yaml"}
        width: [0.35, 0.5]
        resolution: {{choices: {list(resolutions)}}}
    """)
    )


@pytest.fixture
def one_thread():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def estimator_cases(digits_folder):
    return {
        "published": (make_estimator("published"), load_search_space(SPACES / "mobilenetv1.yaml")),
        "proxy": (make_estimator("proxy"), tiny_space("shufflenet_g3", (64, 96))),
        "train": (
            make_estimator("train", data=digits_folder, epochs=1, max_images=100),
            tiny_space("mobilenetv2", (32,)),
        ),
    }


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimator_contract(name, digits_folder, one_thread):
    estimator, space = estimator_cases(digits_folder)[name]
    check_estimator(estimator, space)


def test_synflow_ranks_published_checkpoints(one_thread):
    # Training-free, yet it orders MobileNetV2 multipliers at one resolution like ImageNet does.
    base = load_spec(SPECS / "mobilenetv2.yaml")
    scores = [
        synflow_log10(apply_overrides(base, width=w, resolution=64)) for w in (0.35, 0.5, 0.75, 1.0)
    ]
    assert scores == sorted(scores)


def test_proxy_search_on_a_space_published_cannot_score(tmp_path, one_thread):
    space = tiny_space("shufflenet_g3", (64, 96))
    with pytest.raises(SearchInputError):
        make_estimator("published").prepare(space)
    result = run_search(space, objective="proxy", trials=3, seed=0, run_dir=tmp_path / "p")
    assert result.best["objective"].notna().all()
    assert result.best["calibrated"].isna().all()  # the notion does not apply to a proxy
    assert result.info["objective"]["name"] == "proxy"


def test_train_on_digits_via_the_cli(digits_folder, tmp_path):
    space = tmp_path / "tiny.yaml"
    space.write_text(
        f"base: {SPECS / 'mobilenetv2.yaml'}\nwidth: [0.35]\nresolution: {{choices: [32]}}\n"
    )
    proc = archkit(
        "search",
        space,
        "--objective",
        "train",
        "--data",
        digits_folder,
        "--epochs",
        "3",
        "--trials",
        "1",
        "--budget-params",
        "2M",
        "--run-dir",
        tmp_path / "run",
        "--format",
        "json",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    [best] = out["results"]
    # Ten classes: chance is 10 %; three epochs on 240 images must learn something.
    assert best["objective"] > 20.0
    assert out["objective"]["classes"] == 10 and out["objective"]["val_images"] == 60
    winner = load_spec(tmp_path / "run" / best["spec"])
    assert winner.num_classes == 10  # the network that was trained, with its 10-way classifier


def test_train_needs_an_image_folder(tmp_path):
    with pytest.raises(SearchInputError, match="objective_options.data: .* is not a folder"):
        make_estimator("train", data=tmp_path / "missing")
    (tmp_path / "one").mkdir()
    with pytest.raises(SearchInputError, match="need at least 2 class folders"):
        make_estimator("train", data=tmp_path)
