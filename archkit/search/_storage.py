"""Study storage: a journal file in the run directory by default, or any RDB URL (PostgreSQL for
many workers on many machines). Optuna is imported here, lazily, never at package import."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from archkit.search._errors import StorageError

__all__ = ["open_storage", "default_storage_url", "redact_url", "JOURNAL_FILE"]

JOURNAL_FILE = "study.journal"
_RDB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")


def default_storage_url(run_dir: str | Path) -> str:
    """The journal file of a run directory.

    Optuna's journal file storage appends one JSON line per operation under a file lock, so
    several local worker processes may share it, and a killed process loses only the trial it was
    running (SQLite would also do, but its locking is unreliable on network file systems).
    """
    return f"journal:{Path(run_dir).resolve() / JOURNAL_FILE}"


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (what run.json records)."""
    if "://" not in url or "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL sqlalchemy cannot parse is shown without credentials
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def _postgres_driver(url: str) -> str:
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg (v3); archkit depends on
    # psycopg2-binary, so name it unless psycopg 3 is installed or a driver is given.
    head, rest = url.split("://", 1)
    if "+" in head:
        return url
    import importlib.util

    driver = "psycopg" if importlib.util.find_spec("psycopg") else "psycopg2"
    return f"postgresql+{driver}://{rest}"


def open_storage(url: str, *, connect_timeout_s: int = 10) -> Any:
    """Open an Optuna storage from ``journal:PATH``, a ``*.journal`` path or an RDB URL.

    Raises:
        StorageError: the URL is not understood, or the database cannot be reached.
    """
    import optuna

    if url.startswith("journal:") or url.endswith(".journal"):
        path = Path(url.removeprefix("journal:"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The lock is held for one append (milliseconds); a lock left by a killed process
            # is broken after 10 s instead of Optuna's default 30 s.
            lock = optuna.storages.journal.JournalFileSymlinkLock(str(path), grace_period=10)
            backend = optuna.storages.journal.JournalFileBackend(str(path), lock_obj=lock)
        except OSError as exc:
            raise StorageError(f"cannot open journal file {path}: {exc.strerror or exc}") from None
        return optuna.storages.JournalStorage(backend)
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    if scheme not in _RDB_SCHEMES:
        raise StorageError(
            f"expected postgresql://..., mysql://..., sqlite:///... or "
            f"journal:PATH, got {redact_url(url)!r}"
        )
    if scheme in ("postgresql", "postgres"):
        url = _postgres_driver(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if scheme in ("postgresql", "postgres"):
        engine_kwargs["connect_args"] = {"connect_timeout": connect_timeout_s}
    elif scheme == "mysql":
        engine_kwargs["connect_args"] = {"connect_timeout": connect_timeout_s}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except ModuleNotFoundError as exc:
            raise StorageError(
                f"the database driver is missing ({exc.name}); "
                f"install psycopg2-binary for PostgreSQL"
            ) from None
        except Exception as exc:  # noqa: BLE001 - sqlalchemy raises many types
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            detail = reason[0] if reason else type(exc).__name__
            # Workers started together on an empty database race to create Optuna's tables;
            # the losers see "already exists" / "duplicate key" and find the tables on retry.
            if attempt < 4 and ("already exists" in detail or "duplicate key" in detail):
                time.sleep(0.2 + random.random() * (attempt + 1))
                continue
            raise StorageError(f"cannot open {redact_url(url)}: {detail}") from None
    raise AssertionError("unreachable")
