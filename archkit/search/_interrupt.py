"""Ctrl-C during a search: stop between trials, so no trial or storage write is cut in half."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

__all__ = ["GracefulInterrupt", "SearchInterrupted"]


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C ended a search after its run directory was written.

    Attributes:
        result: the :class:`~archkit.search.SearchResult` written (every finished trial).
        resume_command: the command that continues the search.
    """

    def __init__(self, result: Any, resume_command: str) -> None:
        super().__init__(resume_command)
        self.result, self.resume_command = result, resume_command


class GracefulInterrupt:
    """Ctrl-C stops the search between trials: the first SIGINT lets the running trial finish
    (so it is recorded, and no storage write is cut in half: Optuna's journal file lock does
    not survive a KeyboardInterrupt inside it); a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logging.getLogger("archkit.search").warning(
            "archkit: stopping after the running trial (Ctrl-C again to stop at once)"
        )
