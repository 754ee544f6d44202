"""Study storage: a journal file in the run directory by default, or any RDB URL (PostgreSQL for
many workers on many machines). Optuna is imported here, lazily, never at package import.

Two faults are handled here, where they happen:

- A journal lock left by a killed process (:class:`OwnedFileLock`): the lock names its owner
  (host, boot, pid, process start time), so a waiter on the same host breaks it at once when that
  owner is gone, and never breaks a live owner's lock.
- A storage that goes away mid-search (a database stopped, a full disk, a journal that cannot be
  written): every storage call goes through :func:`guard_storage`, which turns the back-end's
  error into one :class:`StorageLostError` naming what failed and where (no password).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import logging
import os
import random
import re
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from archkit.errors import ArchkitError
from archkit.search._errors import StorageError

__all__ = [
    "JOURNAL_FILE",
    "OwnedFileLock",
    "StorageLostError",
    "default_storage_url",
    "guard_storage",
    "journal_path",
    "mask_secrets",
    "open_storage",
    "redact_url",
]

JOURNAL_FILE = "study.journal"
_RDB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")
_log = logging.getLogger("archkit.search")

# user:PASSWORD@ in any URL, and password=... in a query string or a DSN.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][\w+.-]*://[^\s:/?#@]*:)([^\s@/]*)(@)")
_PARAM_PASSWORD = re.compile(r"(\b(?:password|passwd|pwd)=)([^\s&;]*)", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """``text`` with every password of a URL or DSN in it replaced by ``***``: what archkit
    writes to files, logs and errors (the command line included)."""
    text = _URL_PASSWORD.sub(r"\1***\3", text)
    return _PARAM_PASSWORD.sub(r"\1***", text)


class StorageLostError(ArchkitError):
    """The study storage failed mid-search: unreachable database, full disk, unwritable journal.

    The job ran and failed (exit status 1). ``where`` is the storage without its password,
    ``reason`` the back-end's own first line (no traceback).
    """

    exit_code = 1

    def __init__(self, where: str, reason: str, message: str | None = None) -> None:
        self.where, self.reason = where, reason
        super().__init__(message or f"the study storage {where} failed: {reason}")


def journal_path(run_dir: str | Path) -> Path:
    """The default journal file of a run directory."""
    return Path(run_dir) / JOURNAL_FILE


def default_storage_url(run_dir: str | Path) -> str:
    """The journal file of a run directory.

    Optuna's journal file storage appends one JSON line per operation under a file lock, so
    several local worker processes may share it, and a killed process loses only the trial it was
    running (SQLite would also do, but its locking is unreliable on network file systems).
    """
    return f"journal:{journal_path(run_dir).resolve()}"


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (what run.json records)."""
    if "://" not in url or "@" not in url:
        return mask_secrets(url)
    try:
        from sqlalchemy.engine import make_url

        return mask_secrets(make_url(url).render_as_string(hide_password=True))
    except Exception:  # noqa: BLE001 - a URL sqlalchemy cannot parse is shown without credentials
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


# --- the journal lock ------------------------------------------------------------------------

_LOCK_TAG = "ak1"


def _short(text: str) -> str:
    # The whole token stays under 60 bytes: ext4 keeps such a symlink target in the inode, and
    # removing a longer one costs a block and ~3 ms per journal append (measured).
    return hashlib.blake2s(text.encode(), digest_size=4).hexdigest() if text else ""


@functools.cache
def _host() -> str:
    """This host as the pids of a lock are meaningful: its name and its pid namespace (two
    containers of one name, sharing a volume, do not see each other's processes)."""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    return _short(f"{socket.gethostname()}/{namespace}")


@functools.cache
def _boot_id() -> str:
    try:
        return _short(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    except OSError:
        return ""


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), None where unknown; "Z" for a
    zombie (dead, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after "(comm)", which may hold spaces
    if len(fields) < 20:
        return None
    return "Z" if fields[0] in ("Z", "X") else fields[19]


@functools.cache
def _owner(pid: int) -> str:
    # Cached per pid: a forked child gets its own.
    return ";".join([_LOCK_TAG, _host(), _boot_id(), str(pid), _process_start(pid) or ""])


def _owner_token() -> str:
    return f"{_owner(os.getpid())};{uuid.uuid4().hex[:8]}"


def owner_is_gone(token: str) -> bool:
    """True only when the lock owner named by ``token`` certainly no longer runs: it ran on this
    host and its process is gone (or is a zombie, or the pid now belongs to a newer process, or
    the machine rebooted since). An owner on another host, or one we cannot judge, is alive."""
    parts = token.split(";")
    if len(parts) != 6 or parts[0] != _LOCK_TAG or parts[1] != _host():
        return False
    _, _, boot, pid_text, start, _ = parts
    if boot and _boot_id() and boot != _boot_id():
        return True
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ValueError:
        return False
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's process: it exists
    now = _process_start(pid)
    return now == "Z" or (bool(start) and now is not None and now != start)


class OwnedFileLock:  # Optuna's JournalFileBackend calls acquire() and release(), nothing else
    """The journal's lock, compatible with Optuna's ``JournalFileSymlinkLock`` (the same
    ``<journal>.lock`` symlink, created atomically with ``os.symlink``), whose link target names
    its owner (short hashes of the host name and boot id, pid, process start time, a nonce).

    A waiter breaks a lock at once when its owner is certainly gone (:func:`owner_is_gone`); the
    check and the removal run under an ``flock`` of the journal file, so two waiters never both
    break it, and a lock just taken by a live process is never removed. A lock of another host, or
    of a plain Optuna process (its target is the journal path), is broken only after
    ``grace_period`` seconds without change, as Optuna does.
    """

    def __init__(self, filepath: str, grace_period: float = 10.0) -> None:
        self._journal = filepath
        self._lock_file = filepath + ".lock"
        self.grace_period = grace_period
        self._token: str | None = None

    def acquire(self) -> bool:
        sleep_s, warned_at = 0.001, time.monotonic()
        seen: tuple[str, float] | None = None
        seen_since = time.monotonic()
        while True:
            token = _owner_token()
            try:
                os.symlink(token, self._lock_file)
                self._token = token
                return True
            except FileExistsError:
                pass
            except OSError as exc:  # name the lock, not the link's target (our token)
                raise OSError(exc.errno, exc.strerror, self._lock_file) from None
            try:
                target = os.readlink(self._lock_file)
                mtime = os.lstat(self._lock_file).st_mtime
            except FileNotFoundError:
                continue  # released meanwhile
            except OSError:
                target, mtime = "", 0.0  # not a symlink (another lock class): grace period only
            if target and owner_is_gone(target) and self._break(target):
                _log.debug("broke the journal lock of a process that is gone: %s", target)
                continue
            if seen != (target, mtime):
                seen, seen_since = (target, mtime), time.monotonic()
            elif time.monotonic() - seen_since > self.grace_period and not _alive_here(target):
                # Optuna's rule for owners we cannot judge: unchanged for the grace period.
                with contextlib.suppress(OSError):
                    self._break(target)
                continue
            if time.monotonic() - warned_at > 10:
                holder = (
                    f"process {target.split(';')[3]} of this machine, still running"
                    if _alive_here(target)
                    else "a process of another machine, or of plain Optuna"
                )
                _log.warning(
                    "archkit: waiting for the journal lock %s, held by %s", self._lock_file, holder
                )
                warned_at = time.monotonic()
            time.sleep(sleep_s)
            sleep_s = min(sleep_s * 2, 0.05)

    def _break(self, target: str) -> bool:
        """Remove the lock if it still names ``target``; True if it is gone now."""
        try:
            guard = os.open(self._journal, os.O_RDONLY)
        except OSError:
            return False
        try:
            import fcntl

            fcntl.flock(guard, fcntl.LOCK_EX)  # breakers take turns; released if we die
            try:
                if os.readlink(self._lock_file) != target:
                    return True  # released or replaced meanwhile: try again
            except FileNotFoundError:
                return True
            except OSError:
                if target:  # it was a symlink and is no longer one: replaced
                    return True
            os.unlink(self._lock_file)
            return True
        except (OSError, ImportError):
            return False  # no flock here (some network file systems): rely on the grace period
        finally:
            os.close(guard)

    def release(self) -> None:
        token, self._token = self._token, None
        try:
            if os.readlink(self._lock_file) == token:
                os.unlink(self._lock_file)
        except OSError:
            pass  # broken by someone after the grace period: not ours to remove any more


def _alive_here(target: str) -> bool:
    """True when ``target`` names an owner on this host whose process still runs: never broken,
    however long it holds the lock."""
    parts = target.split(";")
    return (
        len(parts) == 6
        and parts[0] == _LOCK_TAG
        and parts[1] == _host()
        and not owner_is_gone(target)
    )


@functools.cache
def _journal_backend_class() -> type:
    from optuna.storages.journal import JournalFileBackend

    class WholeLineJournalBackend(JournalFileBackend):
        """Optuna's journal file, whose appends are whole or absent: a write that fails part way
        (a full disk) is cut back, so the next append does not follow half a line and leave a
        journal Optuna can no longer read."""

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            import json

            data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
            with _locked(self._lock):
                fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
                try:
                    start = os.fstat(fd).st_size
                    try:
                        view = memoryview(data.encode("utf-8"))
                        while view:
                            view = view[os.write(fd, view) :]
                        os.fsync(fd)
                    except BaseException:
                        with contextlib.suppress(OSError):
                            os.ftruncate(fd, start)
                        raise
                finally:
                    os.close(fd)

    return WholeLineJournalBackend


@contextlib.contextmanager
def _locked(lock: Any) -> Any:
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


# --- storage calls that fail ------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """The back-end's own first line: the database driver's message, or the OS error."""
    cause: BaseException | None = exc
    # Optuna wraps SQLAlchemy's error in StorageInternalError ("... exceeding max length"), and
    # SQLAlchemy wraps the driver's: the innermost says what happened.
    while cause is not None:
        inner = getattr(cause, "orig", None) or cause.__cause__
        if inner is None or inner is cause:
            break
        cause = inner
    if isinstance(cause, OSError) and cause.strerror:
        text = cause.strerror + (f": {cause.filename}" if cause.filename else "")
    else:
        text = str(cause).strip()
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return mask_secrets(line or type(cause).__name__)


def _is_storage_failure(exc: BaseException) -> bool:
    import optuna

    if isinstance(exc, OSError | optuna.exceptions.StorageInternalError):
        return True
    return any(c.__module__.split(".")[0] == "sqlalchemy" for c in type(exc).__mro__)


@functools.cache
def _guarded_class() -> type:
    from optuna.storages import BaseStorage

    def delegate(name: str) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return getattr(self._inner, name)(*args, **kwargs)
            except Exception as exc:
                if _is_storage_failure(exc):
                    raise StorageLostError(self.where, _reason(exc)) from None
                raise

        method.__name__ = name
        return method

    members = {
        name: delegate(name)
        for name, _ in inspect.getmembers(BaseStorage, inspect.isfunction)
        if not name.startswith("_")
    }

    def __init__(self: Any, inner: Any, where: str) -> None:  # noqa: N807
        self._inner, self.where = inner, where

    def __getattr__(self: Any, name: str) -> Any:  # noqa: N807
        return getattr(self.__dict__["_inner"], name)

    return type(
        "GuardedStorage",
        (BaseStorage,),
        {**members, "__init__": __init__, "__getattr__": __getattr__},
    )


def guard_storage(storage: Any, where: str) -> Any:
    """``storage`` whose every call raises :class:`StorageLostError` (naming ``where``) when the
    back-end fails: an OS error (full disk, read-only file system), a database error, Optuna's
    ``StorageInternalError``. Optuna's own errors (a duplicated study ...) pass unchanged."""
    return _guarded_class()(storage, where)


def _postgres_driver(url: str) -> str:
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg (v3); archkit depends on
    # psycopg2-binary, so name it unless psycopg 3 is installed or a driver is given.
    head, rest = url.split("://", 1)
    if "+" in head:
        return url
    import importlib.util

    driver = "psycopg" if importlib.util.find_spec("psycopg") else "psycopg2"
    return f"postgresql+{driver}://{rest}"


class _QuietFallback(logging.Filter):
    """Drops Optuna's "Caught an error from sqlalchemy ... Falling back" warning. Optuna reads
    any OperationalError in one query as too many IN variables and retries; when the database
    is gone the retry fails too and archkit reports that, in one line, with the resume command.
    The warning would print the SQL and the driver's text above that line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Caught an error from sqlalchemy")


def _quiet_optuna_fallback() -> None:
    logger = logging.getLogger("optuna.storages._rdb.storage")
    if not any(isinstance(f, _QuietFallback) for f in logger.filters):
        logger.addFilter(_QuietFallback())


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
            # on this host is broken at once (see OwnedFileLock).
            lock = OwnedFileLock(str(path))
            backend = _journal_backend_class()(str(path), lock_obj=lock)
            storage = optuna.storages.JournalStorage(backend)
        except OSError as exc:
            raise StorageError(f"cannot open journal file {path}: {exc.strerror or exc}") from None
        except Exception as exc:  # noqa: BLE001 - a journal Optuna cannot replay
            raise StorageError(f"cannot read journal file {path}: {_reason(exc)}") from None
        return guard_storage(storage, f"journal {path}")
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    if scheme not in _RDB_SCHEMES:
        raise StorageError(
            f"expected postgresql://..., mysql://..., sqlite:///... or "
            f"journal:PATH, got {redact_url(url)!r}"
        )
    where = f"database {redact_url(url)}"
    _quiet_optuna_fallback()
    if scheme in ("postgresql", "postgres"):
        url = _postgres_driver(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if scheme in ("postgresql", "postgres"):
        engine_kwargs["connect_args"] = {"connect_timeout": connect_timeout_s}
    elif scheme == "mysql":
        engine_kwargs["connect_args"] = {"connect_timeout": connect_timeout_s}
    for attempt in range(5):
        try:
            rdb = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
            # Optuna caches finished trials of an RDB storage this way when given one directly.
            return guard_storage(optuna.storages.get_storage(rdb), where)
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
