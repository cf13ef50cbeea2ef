"""OpenFiles: the HDF5 files of one repository the daemon has open, and who may touch them.

Every access to a dataset file goes through one of four doors, each a context manager:

- ``reading(path)``: an open ``h5py.File`` to read from (the writer's own handle when the
  file is being written: one process cannot open an HDF5 file twice with different intents,
  and reading through the writer's handle sees every acknowledged row at once);
- ``writing(path, create=..., swmr=...)``: the same, with the file's lock held, so two
  writers to one file are serialised. On leaving, the file is flushed (under the lock) and
  fsynced (after releasing it, so readers and other writers do not wait on the disk):
  when ``writing`` returns, what was written is durable. ``swmr=True`` (appends to existing
  datasets) keeps the handle in HDF5's SWMR write mode, whose ordered metadata writes keep
  the file valid on disk at every instant; ``swmr=False`` (a structural change: creating
  datasets, attributes, deleting, which HDF5 allows only outside SWMR) is made on a copy
  for an existing file up to ``structural_copy_bytes`` (see below), else in place;
- ``consistent(path)``: writes paused, the file flushed and fsynced; the bytes on disk are a
  valid HDF5 file (a copy may still carry the superblock's "open for writing" flags: clear
  them on the copy);
- ``exclusive(path)``: no handle open at all and no new one opened until it ends (rename,
  delete, import over, copy onto).

A file left "open for writing" by a killed daemon is repaired (its superblock flags cleared,
``superblock.repair``) when it is first opened again: the daemon owns the data directory, so
no other writer can exist.

Structural changes and crashes. Outside SWMR mode HDF5 rewrites metadata in no safe order,
and a kill in the middle can damage the file. Measured with the changes in place
(``tests/test_datasets_structural_crash.py``: a writer alternating one-row appends with
attribute writes and dataset creation, replacement and deletion, SIGKILLed at a random
moment, the file repaired and reopened): 1 trial of 650 damaged it, the file opening but
its acknowledged rows unreadable ("len not positive after adjustment for EOA"). Rare, but a
loss of acknowledged data; with the copy below, 0 of 254. So a structural change to an
existing file of at most ``structural_copy_bytes``
(``[datasets]``, default 64 MiB) is made on a copy: the handle closed (the file clean),
the file copied under a scratch name at the top of the datasets folder, the change made
there, the copy closed, fsynced and renamed over the original (the folder fsynced), all
under the file's lock. The guarantee for such a file: after a kill at any moment it holds
either the state before the change or the state after it, each with every row acknowledged
before; a change that fails midway leaves it untouched; the scratch copy a kill leaves is
removed when the repository is next opened. The cost: one copy of the file per structural
change (TVB makes a handful per file; appends make none). Residual risk: a file larger
than ``structural_copy_bytes`` still gets its structural changes in place, where a kill at
the wrong moment can leave it needing ``h5repack``/recovery; a brand-new file is created in
place (nothing acknowledged in it yet). Appends, the long-running case, run in SWMR mode
(valid on disk at every instant), except on a file whose superblock is too old for it
(made by HDF5 < 1.10): that one is appended to without, flushed and fsynced all the same.

Idle handles: the ``HandleLimit`` shared by every repository closes the least recently used
idle handle beyond ``max_open``, and ``close_idle`` (called by the datasets service's one
timer, ``[datasets] handle_idle_seconds``) those nobody used for a while, so a quiet file is
clean on disk while the daemon runs. A handle in use is never closed; the next user reopens.

Watching: ``watch(path)`` gives followers a ``FileWatch`` that is notified whenever a
writer leaves ``writing`` on that file, the file is closed for an exclusive change, or the
repository closes. ``on_change``, if set (the metadata cache's indexer), is told the
repository-relative path after the same events and after ``exclusive_under`` (a folder
renamed or removed); it must return at once (it runs on the writer's thread).

Paths are repository-relative and checked by ``sandbox.resolve``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import h5py

from hoard_server.errors import DataLoss, InvalidArgument, NotFound
from hoard_server.storage import layout, sandbox
from hoard_server.storage.hdf5 import superblock
from hoard_server.storage.hdf5.damage import damaged

log = logging.getLogger(__name__)

_LEFT_OPEN = "already open for write"  # HDF5's words for a file with status flags set


class FileWatch:
    """Change notifications of one file for its followers (``OpenFiles.watch``)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.generation = 0  # bumped at every change
        self.closed = False  # the repository is closing: followers end
        self.holders = 0

    def notify(self, closed: bool = False) -> None:
        with self.cond:
            self.generation += 1
            self.closed = self.closed or closed
            self.cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Wait until the generation moves past ``seen`` (or ``timeout``); the generation."""
        with self.cond:
            self.cond.wait_for(lambda: self.generation != seen or self.closed, timeout)
            return self.generation


@dataclass
class _Entry:
    lock: threading.RLock = field(default_factory=threading.RLock)
    handle: h5py.File | None = None
    swmr: bool = False  # the handle is in SWMR write mode
    no_swmr: bool = False  # HDF5 refused SWMR for this handle (a file made by an old library)
    users: int = 0  # threads inside a door for this path (entries with none are dropped)


class HandleLimit:
    """The HDF5 handles open across every OpenFiles that shares it: at most ``max_open``
    (the least recently used idle one is closed first), and ``close_idle`` closes those
    nobody used for a while. Thread-safe."""

    def __init__(self, max_open: int) -> None:
        self.max_open = max_open
        self._lock = threading.Lock()
        # (id of the OpenFiles, path) -> (its OpenFiles, when last used), least recent first
        self._order: OrderedDict[tuple[int, str], tuple[OpenFiles, float]] = OrderedDict()

    def used(self, files: OpenFiles, full: str) -> None:
        with self._lock:
            self._order[(id(files), full)] = (files, time.monotonic())
            self._order.move_to_end((id(files), full))
            over = len(self._order) - self.max_open
            victims = list(self._order.items())[: max(0, over)]
        for (_, path), (owner, _) in victims:
            owner._close_if_idle(path)

    def released(self, files: OpenFiles, full: str) -> None:
        """The last user of a handle left it: its idle time starts now."""
        with self._lock:
            key = (id(files), full)
            if key in self._order:
                self._order[key] = (files, time.monotonic())
                self._order.move_to_end(key)

    def closed(self, files: OpenFiles, full: str) -> None:
        with self._lock:
            self._order.pop((id(files), full), None)

    def close_idle(self, seconds: float) -> int:
        """Close every handle no one has used for ``seconds``: its file is then clean on
        disk (no "open for writing" flags: plain h5py opens it). A handle in use is never
        closed; whoever needs it next reopens it. How many were closed."""
        deadline = time.monotonic() - seconds
        with self._lock:
            idle = [(k, owner) for k, (owner, last) in self._order.items() if last <= deadline]
        closed = 0
        for (_, path), owner in idle:
            closed += owner._close_if_idle(path)
        return closed


class OpenFiles:
    """Open HDF5 handles of one repository's dataset files; every method is thread-safe."""

    def __init__(
        self,
        root: str,
        repository: str | None = None,
        limit: HandleLimit | None = None,
        structural_copy_bytes: int = 0,
    ) -> None:
        self.root = root
        self.repository = repository
        self.limit = limit  # set by the datasets service (the daemon-wide open-handle bound)
        # structural changes to files up to this size are made on a copy (0: in place); set
        # by the datasets service from [datasets] structural_copy_bytes
        self.structural_copy_bytes = structural_copy_bytes
        self._lock = threading.Lock()  # guards _entries and _watches; never held during I/O
        self._entries: dict[str, _Entry] = {}
        self._watches: dict[str, FileWatch] = {}
        self._closed = False
        self.on_change: Callable[[str], None] | None = None  # see the module's docstring

    def _changed(self, full: str) -> None:
        hook = self.on_change
        if hook is not None:
            hook(sandbox.relative(self.root, full))

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
                idle = entry.users == 0
                if idle and entry.handle is None:
                    self._entries.pop(full, None)
            if idle and self.limit is not None:
                self.limit.released(self, full)

    def _close_handle(self, entry: _Entry, full: str) -> None:
        if entry.handle is not None:
            try:
                entry.handle.close()
            finally:
                entry.handle = None
                entry.swmr = entry.no_swmr = False
                if self.limit is not None:
                    self.limit.closed(self, full)

    def _close_if_idle(self, full: str) -> bool:
        """Close the handle of ``full`` if no one is using it (the handle limit's eviction,
        or its idle timer); whether it did."""
        with self._lock:
            entry = self._entries.get(full)
            if entry is None or entry.users or not entry.lock.acquire(blocking=False):
                return False
            try:
                was_open = entry.handle is not None
                self._close_handle(entry, full)
                self._entries.pop(full, None)
            finally:
                entry.lock.release()
        return was_open

    def _h5open(self, full: str, mode: str) -> h5py.File:
        """Open ``full``; a file a killed daemon left "open for writing" is repaired first.
        A missing file is FILE_NOT_FOUND, one that is not HDF5 NOT_HDF5, an unreadable
        HDF5 file FILE_DAMAGED."""
        libver = None if mode == "r" else "latest"
        if mode != "a" and not os.path.isfile(full):
            raise self._missing(full)
        try:
            return h5py.File(full, mode, libver=libver)
        except OSError as exc:
            if _LEFT_OPEN in str(exc) and superblock.repair(full):
                log.warning("%s was left open for writing (a killed daemon?): repaired", full)
                return h5py.File(full, mode, libver=libver)
            raise self._unreadable(full, exc) from None

    def _missing(self, full: str) -> NotFound:
        path = sandbox.relative(self.root, full)
        what = "is a folder, not a file" if os.path.isdir(full) else "does not exist"
        return NotFound(
            f"dataset file {path!r} {what} in repository {self.repository!r}",
            reason="FILE_NOT_FOUND",
            repository=self.repository,
            path=path,
        )

    def _unreadable(self, full: str, exc: OSError) -> InvalidArgument | DataLoss:
        path = sandbox.relative(self.root, full)
        try:
            hdf5 = h5py.is_hdf5(full)
        except OSError:
            hdf5 = False
        if not hdf5:
            return InvalidArgument(
                f"{path!r} is not an HDF5 file",
                reason="NOT_HDF5",
                repository=self.repository,
                path=path,
            )
        return DataLoss(
            f"HDF5 file {path!r} cannot be opened ({exc}); it is damaged",
            reason="FILE_DAMAGED",
            repository=self.repository,
            path=path,
        )

    def _open(
        self,
        entry: _Entry,
        full: str,
        write: bool,
        create: bool = False,
        swmr: bool = False,
        on_create: Callable[[h5py.File], None] | None = None,
    ) -> h5py.File:
        """The entry's handle, (re)opened for the intent: any handle for reading; for
        writing one in r+ mode, in SWMR write mode exactly when ``swmr``."""
        handle = entry.handle
        if handle is not None and not handle.id.valid:
            entry.handle = handle = None
            entry.swmr = entry.no_swmr = False
        if handle is not None:
            if not write:
                self._used(full)
                return handle
            if handle.mode == "r+" and (swmr or not entry.swmr):
                if swmr and not entry.swmr:
                    self._start_swmr(entry, full)  # entering SWMR is a switch; leaving it a reopen
                self._used(full)
                return handle
            self._close_handle(entry, full)
        if write:
            new = not os.path.exists(full)
            if create and new:
                os.makedirs(os.path.dirname(full), exist_ok=True)
            handle = self._h5open(full, "a" if create else "r+")
            entry.handle = handle
            if new and create:
                if on_create is not None:
                    on_create(handle)
                handle.flush()
                _fsync_dir(os.path.dirname(full))
            if swmr:
                self._start_swmr(entry, full)
        else:
            entry.handle = self._h5open(full, "r")
        self._used(full)
        return entry.handle

    @staticmethod
    def _start_swmr(entry: _Entry, full: str) -> None:
        """SWMR write mode for the entry's handle. A file whose superblock predates it
        (made by HDF5 < 1.10 or with an old ``libver``) cannot have it: such a file is
        written without, still flushed and fsynced before each acknowledgement."""
        if entry.no_swmr or entry.handle is None:
            return
        try:
            entry.handle.swmr_mode = True
            entry.swmr = True
        except (RuntimeError, ValueError, OSError) as exc:
            entry.no_swmr = True
            log.info("%s is appended to without SWMR mode: %s", full, exc)

    def _used(self, full: str) -> None:
        if self.limit is not None:
            self.limit.used(self, full)

    @contextmanager
    def _damage_is_data_loss(self, full: str) -> Iterator[None]:
        """HDF5's complaint about a damaged structure met while using ``full`` becomes
        DataLoss FILE_DAMAGED (the file opened, but part of it does not hold together),
        never an internal error and never bytes that are not there."""
        try:
            yield
        except (RuntimeError, OSError, KeyError, ValueError) as exc:
            if not damaged(exc):
                raise
            path = sandbox.relative(self.root, full)
            log.error("HDF5 file %s in repository %s is damaged: %s", path, self.repository, exc)
            raise DataLoss(
                f"HDF5 file {path!r} is damaged: {exc}; restore it from a backup (`hoard verify` "
                "names every damaged file)",
                reason="FILE_DAMAGED",
                repository=self.repository,
                path=path,
            ) from exc

    @contextmanager
    def reading(self, path: str) -> Iterator[h5py.File]:
        full = self.resolve(path)
        with self._entry(full) as entry, entry.lock, self._damage_is_data_loss(full):
            yield self._open(entry, full, write=False, create=False)

    @contextmanager
    def writing(
        self,
        path: str,
        *,
        create: bool = False,
        swmr: bool = False,
        on_create: Callable[[h5py.File], None] | None = None,
    ) -> Iterator[h5py.File]:
        """The file open for writing, durable on return (see the module's docstring).

        ``on_create`` is called with a file this call creates, before anything else."""
        full = self.resolve(path)
        with self._entry(full) as entry:
            with entry.lock, self._damage_is_data_loss(full):
                if not swmr and self._rewrites(full):
                    with self._rewriting(entry, full) as handle:
                        yield handle
                    copied = True
                else:
                    handle = self._open(entry, full, True, create, swmr, on_create)
                    yield handle
                    handle.flush()
                    copied = False
            if not copied:
                # Durability outside the lock: fsync covers every write made before it
                # began, so the caller's rows are on disk when it returns, and no one
                # waited for it.
                _fsync(full)
        watch = self._watches.get(full)
        if watch is not None:
            watch.notify()
        self._changed(full)

    def _rewrites(self, full: str) -> bool:
        """Whether a structural change to ``full`` is made on a copy."""
        try:
            size = os.path.getsize(full)
        except OSError:
            return False  # a new file: nothing acknowledged in it to lose
        return 0 < size <= self.structural_copy_bytes

    @contextmanager
    def _rewriting(self, entry: _Entry, full: str) -> Iterator[h5py.File]:
        """A structural change made on a copy: the handle is closed (the file clean on
        disk), the file copied under a scratch name, the copy changed, closed, fsynced and
        renamed over the original. A kill leaves the original or the changed file, whole;
        a change that fails midway leaves the original untouched. Entry lock held."""
        self._close_handle(entry, full)
        scratch = layout.dataset_scratch(self.root, "rewrite")
        try:
            shutil.copyfile(full, scratch)
            superblock.repair(scratch)  # a file a killed daemon left open, never reopened
            try:
                copy = h5py.File(scratch, "r+", libver="latest")
            except OSError as exc:
                raise self._unreadable(full, exc) from None
            try:
                yield copy
            finally:
                copy.close()
            _fsync(scratch)
            os.replace(scratch, full)
            _fsync_dir(os.path.dirname(full))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(scratch)

    @contextmanager
    def consistent(self, path: str) -> Iterator[str]:
        full = self.resolve(path)
        with self._entry(full) as entry, entry.lock:
            if entry.handle is not None:
                entry.handle.flush()
                _fsync(full)
            yield full

    @contextmanager
    def exclusive(self, path: str) -> Iterator[str]:
        full = self.resolve(path)
        with self._entry(full) as entry, entry.lock:
            self._close_handle(entry, full)
            try:
                yield full
            finally:
                watch = self._watches.get(full)
                if watch is not None:
                    watch.notify()
                self._changed(full)

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
        for full in fulls:  # a folder's new or removed files are not among the targets
            self._changed(full)

    @contextmanager
    def watch(self, path: str) -> Iterator[FileWatch]:
        """Notifications of changes to one file, for as long as the block lasts."""
        full = self.resolve(path)
        with self._lock:
            w = self._watches.setdefault(full, FileWatch())
            w.holders += 1
            if self._closed:
                w.closed = True
        try:
            yield w
        finally:
            with self._lock:
                w.holders -= 1
                if w.holders == 0:
                    self._watches.pop(full, None)

    def close(self, path: str) -> None:
        """Flush and release the handle on one file (TVB close_file)."""
        with self.exclusive(path):
            pass

    def open_handles(self) -> int:
        """How many of the repository's files have an HDF5 handle open now (for metrics)."""
        with self._lock:
            return sum(entry.handle is not None for entry in self._entries.values())

    def close_all(self) -> None:
        """Close every handle and end every watch (daemon shutdown, repository erase)."""
        with self._lock:
            self._closed = True
            entries = list(self._entries.items())
            watches = list(self._watches.values())
        for w in watches:
            w.notify(closed=True)
        for full, entry in entries:
            with entry.lock:
                self._close_handle(entry, full)


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


def _fsync(full: str) -> None:
    try:
        fd = os.open(full, os.O_RDONLY)
    except FileNotFoundError:
        return  # deleted meanwhile: nothing left to make durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
