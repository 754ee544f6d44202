"""The Optuna study of a search: its sampler, and opening (or joining) it in a storage."""

from __future__ import annotations

import json
import warnings
from typing import Any

from archkit.search._errors import SearchInputError, StorageError
from archkit.search._storage import open_storage

__all__ = ["make_sampler", "open_study", "config_fingerprint"]


def make_sampler(seed: int) -> Any:
    """Optuna's TPE sampler as archkit searches with it (single- and multi-objective alike)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # multivariate: width and resolution trade off against each other under a budget.
        # constant_liar: concurrent workers do not all draw next to the same running trial.
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constant_liar=True, n_startup_trials=10
        )


def config_fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    """What workers joining one study must agree on."""
    keys = ("space_name", "budgets", "objective", "pareto", "memory_dtype", "memory_schedule")
    return {k: config.get(k) for k in keys}


def open_study(
    storage_url: str,
    name: str,
    directions: list[str],
    config: dict[str, Any],
    *,
    join: bool,
) -> Any:
    """Create the study ``name`` in the storage at ``storage_url``, or join it (``join``).

    Raises:
        StorageError: the storage cannot be opened, or the study created or loaded.
        SearchInputError: the study exists (and ``join`` is false), or was created with other
            directions or settings (``config``'s fingerprint).
    """
    import optuna

    storage = open_storage(storage_url)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            directions=directions,
            load_if_exists=join,
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise SearchInputError(
            "study_name",
            f"study {name!r} already exists in this storage; use {{resume}} or another name",
        ) from None
    except Exception as exc:  # noqa: BLE001 - storage back-ends raise many types
        raise StorageError(f"cannot create or load study {name!r}: {exc}") from None
    if [d.name.lower() for d in study.directions] != directions:
        raise SearchInputError(
            "study_name",
            f"study {name!r} exists with objectives "
            f"{[d.name.lower() for d in study.directions]}, "
            f"this search has {directions}",
        )
    fingerprint = config_fingerprint(config)
    stored = study.user_attrs.get("archkit")
    if stored is None:
        study.set_user_attr("archkit", fingerprint)
    elif stored != json.loads(json.dumps(fingerprint)):
        raise SearchInputError(
            "study_name",
            f"study {name!r} was created with other settings "
            f"({stored}); this search has {fingerprint}",
        )
    return study
