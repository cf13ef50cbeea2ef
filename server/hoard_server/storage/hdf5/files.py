"""OpenFiles: the HDF5 files of one repository the daemon has open, and who may touch them.

Every access to a dataset file goes through one of four doors, each a context manager:

- ``reading(path)``: an open ``h5py.File`` to read from (the writer's own handle when the
  file is being written: one process cannot open an HDF5 file twice with different intents);
- ``writing(path, create=...)``: the same, with the file's write lock held, so two writers
  to one file are serialised;
- ``consistent(path)``: writes paused, the file flushed and fsynced; the bytes on disk are a
  valid HDF5 file (a copy may still carry the superblock's "open for writing" flags: clear
  them on the copy);
- ``exclusive(path)``: no handle open at all and no new one opened until it ends (rename,
  delete, import over, copy onto).

Paths are repository-relative and checked by ``sandbox.resolve``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import h5py

from hoard_server.storage import sandbox


@dataclass
class _Entry:
    lock: threading.RLock = field(default_factory=threading.RLock)
    handle: h5py.File | None = None
    users: int = 0  # threads inside a door for this path (entries with none are dropped)


class OpenFiles:
    """Open HDF5 handles of one repository's dataset files; every method is thread-safe."""

    def __init__(self, root: str, repository: str | None = None) -> None:
        self.root = root
        self.repository = repository
        self._lock = threading.Lock()  # guards _entries only; never held during I/O
        self._entries: dict[str, _Entry] = {}

    def resolve(self, path: str, *, allow_top: bool = False) -> str:
        """The absolute path of a repository-relative path (InvalidArgument if it escapes)."""
        return sandbox.resolve(self.root, path, allow_top=allow_top, repository=self.repository)

    @contextmanager
    def _entry(self, full: str) -> Iterator[_Entry]:
        with self._lock:
            entry = self._entries.setdefault(full, _Entry())
            entry.users += 1
        try:
            yield entry
        finally:
            with self._lock:
                entry.users -= 1
                if entry.users == 0 and entry.handle is None:
                    self._entries.pop(full, None)

    def _open(self, entry: _Entry, full: str, write: bool, create: bool) -> h5py.File:
        handle = entry.handle
        if handle is not None and (not write or handle.mode == "r+"):
            return handle
        if handle is not None:
            handle.close()
            entry.handle = None
        if write:
            if create:
                os.makedirs(os.path.dirname(full), exist_ok=True)
            mode = "a" if create else "r+"
            entry.handle = h5py.File(full, mode, libver="latest")
        else:
            entry.handle = h5py.File(full, "r")
        return entry.handle

    @contextmanager
    def reading(self, path: str) -> Iterator[h5py.File]:
        full = self.resolve(path)
        with self._entry(full) as entry, entry.lock:
            yield self._open(entry, full, write=False, create=False)

    @contextmanager
    def writing(self, path: str, *, create: bool = False) -> Iterator[h5py.File]:
        full = self.resolve(path)
        with self._entry(full) as entry, entry.lock:
            yield self._open(entry, full, write=True, create=create)

    @contextmanager
    def consistent(self, path: str) -> Iterator[str]:
        full = self.resolve(path)
        with self._entry(full) as entry, entry.lock:
            if entry.handle is not None:
                entry.handle.flush()
                fd = os.open(full, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            yield full

    @contextmanager
    def exclusive(self, path: str) -> Iterator[str]:
        full = self.resolve(path)
        with self._entry(full) as entry, entry.lock:
            if entry.handle is not None:
                entry.handle.close()
                entry.handle = None
            yield full

    @contextmanager
    def exclusive_under(self, *paths: str) -> Iterator[list[str]]:
        """``exclusive`` for every file at or below each of ``paths`` (files or folders),
        all at once: for a folder renamed or removed, or a file renamed onto another. Yields
        the absolute paths.

        The doors are taken in path order (as any caller holding several must), so two
        such callers cannot deadlock. Covers the files that exist or are open when it
        starts; symbolic links are not followed."""
        fulls = [self.resolve(p) for p in paths]
        with self._lock:
            known = list(self._entries)
        targets: set[str] = set()
        for full in fulls:
            targets.update(k for k in known if k == full or k.startswith(full + os.sep))
            targets.update(_files_at_or_below(full))
        with ExitStack() as stack:
            for target in sorted(targets):
                stack.enter_context(self.exclusive(sandbox.relative(self.root, target)))
            yield fulls

    def close(self, path: str) -> None:
        """Flush and release the handle on one file (TVB close_file)."""
        with self.exclusive(path):
            pass

    def close_all(self) -> None:
        """Close every handle (daemon shutdown, repository erase)."""
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            with entry.lock:
                if entry.handle is not None:
                    entry.handle.close()
                    entry.handle = None


def _files_at_or_below(full: str) -> Iterator[str]:
    """``full`` if it is a file, else every file below it (links neither followed nor given)."""
    if os.path.isfile(full) and not os.path.islink(full):
        yield full
        return
    for top, dirs, names in os.walk(full):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(top, d))]
        for name in names:
            path = os.path.join(top, name)
            if not os.path.islink(path):
                yield path
