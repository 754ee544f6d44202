"""The Optuna study of a search: its sampler, and opening (or joining) it in a storage."""

from __future__ import annotations

import json
import warnings
from typing import Any

from archkit.search._errors import SearchInputError, StorageError
from archkit.search._storage import StorageLostError, open_storage

__all__ = ["make_sampler", "open_study", "config_fingerprint", "stored_config"]

#: The study's user attribute with what workers must agree on (:func:`config_fingerprint`).
FINGERPRINT_KEY = "archkit"
#: The study's user attribute with the whole config ``--resume`` needs (run.json's ``config``).
CONFIG_KEY = "archkit_config"


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
    resumable: dict[str, Any] | None = None,
) -> Any:
    """Create the study ``name`` in the storage at ``storage_url``, or join it (``join``).

    ``resumable`` (run.json's ``config``) is kept in the study too, so a run directory whose
    run.json is lost can still be resumed (:func:`stored_config`).

    Raises:
        StorageError: the storage cannot be opened, or the study created or loaded.
        SearchInputError: the study exists (and ``join`` is false), or was created with other
            directions or settings (``config``'s fingerprint).
    """
    import optuna

    storage = open_storage(storage_url)
    try:
        study = optuna.create_study(
            study_name=name, storage=storage, directions=directions, load_if_exists=join
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
    try:
        attrs = study.user_attrs
        stored = attrs.get(FINGERPRINT_KEY)
        if stored is None:
            study.set_user_attr(FINGERPRINT_KEY, fingerprint)
        if resumable is not None and CONFIG_KEY not in attrs:
            study.set_user_attr(CONFIG_KEY, json.loads(json.dumps(resumable)))
    except StorageLostError as exc:
        raise StorageError(f"cannot update study {name!r}: {exc.reason}") from None
    if stored is not None and stored != json.loads(json.dumps(fingerprint)):
        raise SearchInputError(
            "study_name",
            f"study {name!r} was created with other settings "
            f"({stored}); this search has {fingerprint}",
        )
    return study


def stored_config(storage_url: str | None) -> dict[str, Any] | None:
    """The resumable config kept in the only study of ``storage_url`` (None if there is not
    exactly one such study, or the storage cannot be read)."""
    if storage_url is None:
        return None
    try:
        storage = open_storage(storage_url)
        configs = [
            s.user_attrs[CONFIG_KEY]
            for s in storage.get_all_studies()
            if CONFIG_KEY in s.user_attrs
        ]
    except (StorageError, StorageLostError):
        return None
    return configs[0] if len(configs) == 1 else None
