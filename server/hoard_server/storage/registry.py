"""The data directory: named repositories, created, opened, listed and erased.

    <data_dir>/repositories/<name>/      one Repository each (names: ``layout.py``)

A repository directory appears by an atomic rename once initialised and disappears by a
rename before it is deleted, so a crash never leaves a half-made or half-erased repository
that looks real; leftovers of either are removed at start-up. Leftovers are named
``.creating-<hex>`` / ``.erasing-<hex>``: a leading dot, which no repository name may have,
so clean-up can never take a repository a user named.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from hoard_server.errors import FailedPrecondition, InvalidArgument, RepositoryNotFound
from hoard_server.storage import modes
from hoard_server.storage.layout import DataDirLayout, scratch_path
from hoard_server.storage.repository import Repository, StorageSettings

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# how leftovers were named before: "<name>.creating-<hex>" is also a valid repository name
_LEGACY_SCRATCH = re.compile(r".+\.(creating|erasing)-[0-9a-z]+")


def check_repository_name(name: str) -> str:
    """The one place a repository name is validated."""
    if not name:
        raise InvalidArgument(
            "no repository named: every request must name its repository",
            reason="INVALID_REPOSITORY_NAME",
            repository="",
        )
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"repository name {name[:140]!r} is not valid: use 1-128 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit",
            reason="INVALID_REPOSITORY_NAME",
            repository=name[:140],
        )
    return name


class RepositoryRegistry:
    """Owns every open Repository of a data directory; thread-safe."""

    def __init__(self, data_dir: str, settings: StorageSettings | None = None) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.settings = settings or StorageSettings()
        self._layout = DataDirLayout(self.data_dir)
        self._root = self._layout.repositories_dir
        modes.makedirs(self._root, exist_ok=True)
        # Guards _open and _erasing and makes create/get/erase's checks and renames atomic.
        # Never held while waiting for a repository's operations (which may be slow).
        self._lock = threading.RLock()
        self._open: dict[str, Repository] = {}
        self._erasing: set[str] = set()  # names whose repository is being closed for erasure
        self._opened: list[Callable[[Repository], None]] = []  # told of every open repository
        self.pool = ThreadPoolExecutor(
            max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="codec"
        )
        for entry in os.listdir(self._root):
            if DataDirLayout.is_scratch(entry):
                log.info("removing leftover %s", entry)
                shutil.rmtree(os.path.join(self._root, entry), ignore_errors=True)
            elif _LEGACY_SCRATCH.fullmatch(entry):
                log.warning(
                    "keeping %s: an older hoard named its leftovers like this, but it is also "
                    "a valid repository name; if it is a leftover, remove it by hand",
                    os.path.join(self._root, entry),
                )

    def on_open(self, callback: Callable[[Repository], None]) -> None:
        """Call ``callback`` with every repository open now and every one opened later
        (under the registry lock: it must be quick), e.g. to wire a hook into it."""
        with self._lock:
            self._opened.append(callback)
            for repo in self._open.values():
                callback(repo)

    def _opening(self, repo: Repository) -> Repository:
        for callback in self._opened:
            callback(repo)
        return repo

    def _path(self, name: str) -> str:
        return self._layout.repository(check_repository_name(name)).root

    def names(self) -> list[str]:
        return sorted(
            e for e in os.listdir(self._root) if _NAME.fullmatch(e) and os.path.isdir(self._path(e))
        )

    def exists(self, name: str) -> bool:
        return os.path.isdir(self._path(name))

    def get(self, name: str) -> Repository:
        """The open repository, opening it on first use; RepositoryNotFound if absent."""
        repo = self._open.get(name)
        if repo is not None:
            return repo
        path = self._path(name)
        with self._lock:
            repo = self._open.get(name)
            if repo is None:
                if name in self._erasing or not os.path.isdir(path):
                    raise RepositoryNotFound(name)
                repo = self._opening(Repository(name, path, self.settings, self.pool))
                self._open[name] = repo
            return repo

    def create(self, name: str) -> tuple[Repository, bool]:
        """Create (or return) a repository; the flag says whether it was new."""
        path = self._path(name)
        with self._lock:
            if name in self._erasing:
                raise FailedPrecondition(
                    f"repository {name!r} is being erased; create it again once that is done"
                )
            if os.path.isdir(path):
                return self.get(name), False
            repo = self._opening(
                Repository.create(
                    name, path, self.settings, self.pool, self._layout.scratch("creating")
                )
            )
            self._open[name] = repo
            log.info("created repository %s (uuid %s)", name, repo.uuid)
            return repo, True

    def erase(self, name: str) -> None:
        """Delete a repository and everything in it, once operations in flight finish.

        New operations on it fail with NOT_FOUND from the start; the wait for running ones
        happens outside the registry lock, so other repositories stay usable meanwhile.
        (Operations hold a repository only for the daemon's own work, never while waiting on
        a client, so the wait ends.)
        """
        path = self._path(name)
        with self._lock:
            if name in self._erasing or not os.path.isdir(path):
                raise RepositoryNotFound(name)
            self._erasing.add(name)
            repo = self._open.pop(name, None)
        try:
            if repo is not None:
                repo.close()
            with self._lock:
                doomed = self._layout.scratch("erasing")
                os.rename(path, doomed)
        finally:
            with self._lock:
                self._erasing.discard(name)
        shutil.rmtree(doomed, ignore_errors=True)
        log.info("erased repository %s", name)

    def close(self, timeout: float | None = None) -> None:
        """Close every repository, waiting at most ``timeout`` seconds for each one's
        operations in progress (default: the repository's own bound)."""
        with self._lock:
            repos, self._open = list(self._open.values()), {}
        for repo in repos:
            repo.close() if timeout is None else repo.close(timeout)
        self.pool.shutdown(wait=True)


__all__ = ["RepositoryRegistry", "check_repository_name", "scratch_path"]
