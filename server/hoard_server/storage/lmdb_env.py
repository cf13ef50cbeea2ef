"""An LMDB environment as hoard uses it, independent of what is stored in it.

- every write transaction commits with an fsync (``sync=True``), and a commit that fails
  because the disk (or the map) is full raises StorageFull, the user's word for it;
- walks over a database go in batches, each in a fresh read transaction, so no snapshot
  stays open for long (an old snapshot keeps LMDB from reusing pages);
- the file can be swapped for a compacted copy, and a swap a crash interrupted is finished
  or undone when the environment is opened again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any, Protocol

import lmdb

from hoard_server.errors import StorageFull
from hoard_server.storage import modes
from hoard_server.storage.pack import fsync_dir

_FULL_MARGIN = 64 << 20  # a commit failing with less free space than this: a full disk
WALK_BATCH = 10_000


def index_write_error(exc: lmdb.Error, path: str) -> Exception:
    """What a failed LMDB write means for the user.

    On a full disk LMDB's commit fails with ENOSPC, or with EIO when its page write came
    up short, and keeps failing so while the disk stays full; both are a full disk to the
    user (RESOURCE_EXHAUSTED), judged by the free space left. Anything else stays as it is.
    """
    if isinstance(exc, lmdb.MapFullError):
        return StorageFull(
            f"the object index at {path} reached its map size; raise index_map_size",
            path=path,
            setting="index_map_size",
        )
    try:
        st = os.statvfs(path)
        full = st.f_bavail * st.f_frsize < _FULL_MARGIN
    except OSError:
        full = False
    if isinstance(exc, lmdb.DiskError) or full:
        return StorageFull(
            f"no space left on the storage device while committing the object index "
            f"(LMDB: {exc}); free space or delete objects and run maintenance",
            path=path,
        )
    return exc


class Txn(Protocol):
    """What the index asks of a transaction: lmdb's own read transaction (begun with
    ``buffers=False``, so values are ``bytes``) or a ``WriteTransaction``."""

    def get(self, key: bytes, *, db: lmdb._Database) -> bytes | None: ...

    def put(self, key: bytes, value: bytes, *, db: lmdb._Database) -> bool: ...

    def delete(self, key: bytes, *, db: lmdb._Database) -> bool: ...

    def cursor(self, *, db: lmdb._Database) -> lmdb.Cursor[bytes]: ...


class WriteTransaction:
    """An LMDB write transaction whose commit reports a full disk as StorageFull.

    Everything else is the lmdb transaction's own API. As a context manager it commits on
    a normal exit (unless already committed or aborted) and aborts on an exception.
    """

    __slots__ = ("_done", "_path", "_txn")

    def __init__(self, txn: lmdb.Transaction[bytes], path: str) -> None:
        self._txn = txn
        self._path = path
        self._done = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)

    # The calls the index makes, spelt out (not left to __getattr__) so that this is a Txn.
    def get(self, key: bytes, *, db: lmdb._Database) -> bytes | None:
        return self._txn.get(key, db=db)

    def put(self, key: bytes, value: bytes, *, db: lmdb._Database) -> bool:
        return self._txn.put(key, value, db=db)

    def delete(self, key: bytes, *, db: lmdb._Database) -> bool:
        return self._txn.delete(key, db=db)

    def cursor(self, *, db: lmdb._Database) -> lmdb.Cursor[bytes]:
        return self._txn.cursor(db=db)

    def commit(self) -> None:
        self._done = True
        try:
            self._txn.commit()
        except lmdb.Error as exc:
            raise index_write_error(exc, self._path) from exc

    def abort(self) -> None:
        self._done = True
        self._txn.abort()

    def __enter__(self) -> WriteTransaction:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._done:
            if exc_type is None:
                self.commit()
                return
            self.abort()
        if isinstance(exc, lmdb.Error):  # e.g. the map filled up during a put
            translated = index_write_error(exc, self._path)
            if translated is not exc:
                raise translated from exc


def recover_swap(path: str) -> None:
    """Finish or undo a swap for a compacted copy that a crash interrupted."""
    compact, old = path + ".compact", path + ".old"
    if not os.path.exists(path) and os.path.exists(compact) and os.path.exists(old):
        os.rename(compact, path)  # the copy was complete: the first rename had happened
    shutil.rmtree(compact, ignore_errors=True)
    if os.path.exists(path):
        shutil.rmtree(old, ignore_errors=True)
    elif os.path.exists(old):
        os.rename(old, path)


class LmdbEnvironment:
    """One LMDB environment directory with named databases ``db_names``."""

    def __init__(self, path: str, map_size: int, db_names: tuple[str, ...]) -> None:
        self.path = path
        self.map_size = map_size
        self._db_names = db_names
        recover_swap(path)
        self._open()

    def _open(self) -> None:
        try:
            self.env = lmdb.open(
                self.path,
                map_size=self.map_size,
                max_dbs=8,
                subdir=True,
                sync=True,
                metasync=True,
                readahead=False,
                max_readers=1024,
                lock=True,
                mode=modes.dir_mode(),
            )
        except lmdb.Error as exc:
            raise StorageFull(
                f"cannot open the object index at {self.path}: {exc}",
                path=self.path,
            ) from exc
        self.dbs = {name: self.env.open_db(name.encode()) for name in self._db_names}

    def close(self) -> None:
        self.env.close()

    # -- transactions ----------------------------------------------------------------
    def read(self) -> lmdb.Transaction[bytes]:
        return self.env.begin(buffers=False)

    def write(self) -> WriteTransaction:
        try:
            return WriteTransaction(self.env.begin(write=True), self.path)
        except lmdb.Error as exc:
            raise index_write_error(exc, self.path) from exc

    def walk(
        self, db: lmdb._Database, after: bytes | None = None, batch: int = WALK_BATCH
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of ``db`` in key order, strictly after ``after``, read ``batch`` at a
        time, each batch in a read transaction of its own."""
        last = after
        while True:
            items: list[tuple[bytes, bytes]] = []
            with self.read() as txn:
                cur = txn.cursor(db=db)
                found = cur.set_range(last) if last is not None else cur.first()
                if found and last is not None and cur.key() == last:
                    found = cur.next()
                while found and len(items) < batch:
                    items.append((cur.key(), cur.value()))
                    found = cur.next()
            yield from items
            if len(items) < batch:
                return
            last = items[-1][0]

    # -- the file --------------------------------------------------------------------
    def usage(self) -> tuple[int, int]:
        """(bytes of the file, bytes its trees use): LMDB reuses free pages but never gives
        them back, so a large difference is worth a compaction."""
        psize = self.env.stat()["psize"]
        used = 4  # meta pages and the main tree, roughly
        with self.env.begin() as txn:
            for db in self.dbs.values():
                st = txn.stat(db)
                used += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
        return (self.env.info()["last_pgno"] + 1) * psize, used * psize

    def disk_bytes(self) -> int:
        return (self.env.info()["last_pgno"] + 1) * self.env.stat()["psize"]

    def copy_to_fd(self, fd: int, txn: lmdb.Transaction[bytes]) -> None:
        """Write a compacted copy of the snapshot ``txn`` sees to ``fd`` (not synced)."""
        self.env.copyfd(fd, compact=True, txn=txn)

    def replace_with_compacted_copy(self) -> None:
        """Swap the file for a compacted copy. The caller guarantees that nothing else uses
        the environment meanwhile (the store holds every operation back)."""
        tmp = self.path + ".compact"
        shutil.rmtree(tmp, ignore_errors=True)
        modes.makedirs(tmp)
        self.env.copy(tmp, compact=True)  # complete and synced before anything moves
        self.env.close()
        old = self.path + ".old"
        os.rename(self.path, old)
        os.rename(tmp, self.path)  # a crash between the renames: recover_swap finishes it
        fsync_dir(os.path.dirname(self.path))
        shutil.rmtree(old, ignore_errors=True)
        self._open()
