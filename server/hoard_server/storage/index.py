"""The object index: key -> location, in LMDB, plus the per-pack and per-repository counters.

Databases in one LMDB environment (all updated in the same transactions, so counters never
drift from the entries they count):

- ``objects``: 32-byte digest -> ``Location`` (pack id, record offset, body size, raw size,
  encoding);
- ``packs``: pack id (big-endian u32, so cursor order is id order) -> ``PackState``
  (committed end, dead bytes, single-object flag);
- ``meta``: repository identity and totals;
- ``dicts``: zstd dictionary id -> dictionary bytes.

Every write transaction is committed with an fsync (LMDB ``sync=True``): an entry that
exists after ``commit`` survives a crash.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import lmdb

from hoard_server.errors import DataLoss, StorageFull
from hoard_server.storage import modes
from hoard_server.storage.pack import _ENCODINGS, HEADER_SIZE, Encoding, RecordHeader, fsync_dir

LOCATION = struct.Struct("<IQQQB")
_PACK_STATE = struct.Struct("<QQB")
_PACK_ID = struct.Struct(">I")
_TOTALS = struct.Struct("<QQQ")  # object count, raw bytes, stored bytes


class Location(NamedTuple):  # a tuple: made for every object a read touches
    pack_id: int
    offset: int  # of the record header within the pack
    body_size: int
    raw_size: int
    encoding: Encoding

    @property
    def body_offset(self) -> int:
        return self.offset + HEADER_SIZE

    @property
    def stored_size(self) -> int:
        return HEADER_SIZE + self.body_size

    def check_header(self, digest: bytes, header: bytes | memoryview) -> None:
        """DataLoss unless ``header`` (the record header read at this location) describes
        the object ``digest`` as this entry does: the pack is trusted only where both agree."""
        h = RecordHeader.decode(header)
        if (h.digest, h.raw_size, h.body_size, h.encoding) != (
            digest,
            self.raw_size,
            self.body_size,
            self.encoding,
        ):
            raise DataLoss("pack record header does not match the index entry")

    def encode(self) -> bytes:
        return LOCATION.pack(
            self.pack_id, self.offset, self.body_size, self.raw_size, self.encoding
        )

    @classmethod
    def decode(cls, buf: bytes) -> Location:
        p, o, b, r, e = LOCATION.unpack(buf)
        return cls(p, o, b, r, _ENCODINGS[e])


@dataclass(slots=True)
class PackState:
    end: int  # committed size of the pack file; bytes past it are not ours
    dead_bytes: int = 0
    single: bool = False  # holds one large object, written whole from staging

    def encode(self) -> bytes:
        return _PACK_STATE.pack(self.end, self.dead_bytes, self.single)

    @classmethod
    def decode(cls, buf: bytes) -> PackState:
        e, d, s = _PACK_STATE.unpack(buf)
        return cls(e, d, bool(s))


@dataclass(slots=True)
class Totals:
    objects: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0


_FULL_MARGIN = 64 << 20  # an index commit failing with less free space than this: a full disk


def index_write_error(exc: lmdb.Error, path: str) -> Exception:
    """What a failed LMDB write means for the user.

    On a full disk LMDB's commit fails with ENOSPC, or with EIO when its page write came
    up short, and keeps failing so while the disk stays full; both are a full disk to the
    user (RESOURCE_EXHAUSTED), judged by the free space left. Anything else stays as it is.
    """
    if isinstance(exc, lmdb.MapFullError):
        return StorageFull(f"the object index at {path} reached its map size; raise index_map_size")
    try:
        st = os.statvfs(path)
        full = st.f_bavail * st.f_frsize < _FULL_MARGIN
    except OSError:
        full = False
    if isinstance(exc, lmdb.DiskError) or full:
        return StorageFull(
            f"no space left on the storage device while committing the object index "
            f"(LMDB: {exc}); free space or delete objects and run maintenance"
        )
    return exc


class WriteTransaction:
    """An LMDB write transaction whose commit reports a full disk as StorageFull.

    Everything else is the lmdb transaction's own API. As a context manager it commits on
    a normal exit (unless already committed or aborted) and aborts on an exception.
    """

    __slots__ = ("_done", "_path", "_txn")

    def __init__(self, txn: lmdb.Transaction, path: str) -> None:
        self._txn = txn
        self._path = path
        self._done = False

    def __getattr__(self, name: str):
        return getattr(self._txn, name)

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
    """Finish or undo an index swap that a crash interrupted."""
    compact, old = path + ".compact", path + ".old"
    if not os.path.exists(path) and os.path.exists(compact) and os.path.exists(old):
        os.rename(compact, path)  # the copy was complete: the first rename had happened
    shutil.rmtree(compact, ignore_errors=True)
    if os.path.exists(path):
        shutil.rmtree(old, ignore_errors=True)
    elif os.path.exists(old):
        os.rename(old, path)


class ObjectIndex:
    """Typed access to a repository's LMDB environment."""

    def __init__(self, path: str, map_size: int = 1 << 40) -> None:
        self.path = path
        self.map_size = map_size
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
            raise StorageFull(f"cannot open the object index at {self.path}: {exc}") from exc
        self.objects_db = self._objects = self.env.open_db(b"objects")
        self._packs = self.env.open_db(b"packs")
        self._meta = self.env.open_db(b"meta")
        self._dicts = self.env.open_db(b"dicts")

    def usage(self) -> tuple[int, int]:
        """(bytes of the index file, bytes its trees use): LMDB reuses free pages but never
        gives them back, so a large difference is worth a compaction."""
        psize = self.env.stat()["psize"]
        used = 4  # meta pages and the main tree, roughly
        with self.env.begin() as txn:
            for db in (self._objects, self._packs, self._meta, self._dicts):
                st = txn.stat(db)
                used += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
        return (self.env.info()["last_pgno"] + 1) * psize, used * psize

    def replace_with_compacted_copy(self) -> None:
        """Swap the index file for a compacted copy. The caller guarantees that nothing
        else uses the index meanwhile (Repository holds every operation back)."""
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

    def close(self) -> None:
        self.env.close()

    # -- transactions ----------------------------------------------------------------
    def read(self) -> lmdb.Transaction:
        return self.env.begin(buffers=False)

    def write(self) -> WriteTransaction:
        try:
            return WriteTransaction(self.env.begin(write=True), self.path)
        except lmdb.Error as exc:
            raise index_write_error(exc, self.path) from exc

    # -- objects ---------------------------------------------------------------------
    def get(self, txn: lmdb.Transaction, digest: bytes) -> Location | None:
        buf = txn.get(digest, db=self._objects)
        return None if buf is None else Location.decode(buf)

    def get_many(self, digests: list[bytes]) -> list[Location | None]:
        with self.read() as txn:
            get = txn.get
            db = self._objects
            out = []
            for d in digests:
                buf = get(d, db=db)
                out.append(None if buf is None else Location.decode(buf))
            return out

    def has_many(self, digests: list[bytes]) -> list[bool]:
        with self.read() as txn:
            cur = txn.cursor(db=self._objects)
            return [cur.set_key(d) for d in digests]

    def put(self, txn: lmdb.Transaction, digest: bytes, loc: Location) -> None:
        txn.put(digest, loc.encode(), db=self._objects)

    def delete(self, txn: lmdb.Transaction, digest: bytes) -> None:
        txn.delete(digest, db=self._objects)

    def _entries(self, after: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """(digest, encoded location) in key order, strictly after ``after``; read 10k at a
        time, each batch in a fresh read transaction, so none stays open for long (an old
        snapshot would keep LMDB from reusing pages)."""
        last = after
        while True:
            batch: list[tuple[bytes, bytes]] = []
            with self.read() as txn:
                cur = txn.cursor(db=self._objects)
                found = cur.set_range(last) if last is not None else cur.first()
                if found and last is not None and cur.key() == last:
                    found = cur.next()
                while found and len(batch) < 10_000:
                    batch.append((cur.key(), cur.value()))
                    found = cur.next()
            yield from batch
            if len(batch) < 10_000:
                return
            last = batch[-1][0]

    def iter_digests(self, after: bytes | None = None) -> Iterator[bytes]:
        for digest, _ in self._entries(after):
            yield digest

    def iter_entries(self) -> Iterator[tuple[bytes, bytes]]:
        """(digest, encoded Location) for every object, in key order, batched as above."""
        return self._entries(None)

    def iter_locations(self) -> Iterator[tuple[bytes, Location]]:
        for digest, value in self._entries(None):
            yield digest, Location.decode(value)

    # -- packs -----------------------------------------------------------------------
    def packs(self, txn: lmdb.Transaction | None = None) -> dict[int, PackState]:
        if txn is None:
            with self.read() as t:
                return self.packs(t)
        return {_PACK_ID.unpack(k)[0]: PackState.decode(v) for k, v in txn.cursor(db=self._packs)}

    def get_pack(self, txn: lmdb.Transaction, pack_id: int) -> PackState | None:
        buf = txn.get(_PACK_ID.pack(pack_id), db=self._packs)
        return None if buf is None else PackState.decode(buf)

    def put_pack(self, txn: lmdb.Transaction, pack_id: int, state: PackState) -> None:
        txn.put(_PACK_ID.pack(pack_id), state.encode(), db=self._packs)

    def delete_pack(self, txn: lmdb.Transaction, pack_id: int) -> None:
        txn.delete(_PACK_ID.pack(pack_id), db=self._packs)

    # -- totals and identity ---------------------------------------------------------
    def totals(self, txn: lmdb.Transaction | None = None) -> Totals:
        if txn is None:
            with self.read() as t:
                return self.totals(t)
        buf = txn.get(b"totals", db=self._meta)
        return Totals() if buf is None else Totals(*_TOTALS.unpack(buf))

    def put_totals(self, txn: lmdb.Transaction, t: Totals) -> None:
        txn.put(b"totals", _TOTALS.pack(t.objects, t.raw_bytes, t.stored_bytes), db=self._meta)

    def get_meta(self, name: str, txn: lmdb.Transaction | None = None) -> bytes | None:
        if txn is None:
            with self.read() as t:
                return t.get(name.encode(), db=self._meta)
        return txn.get(name.encode(), db=self._meta)

    def put_meta(self, txn: lmdb.Transaction, name: str, value: bytes) -> None:
        txn.put(name.encode(), value, db=self._meta)

    # -- dictionaries ----------------------------------------------------------------
    def dictionaries(self) -> dict[int, bytes]:
        with self.read() as txn:
            return {int.from_bytes(k, "big"): v for k, v in txn.cursor(db=self._dicts)}

    def put_dictionary(self, dict_id: int, data: bytes) -> None:
        with self.write() as txn:
            txn.put(dict_id.to_bytes(4, "big"), data, db=self._dicts)

    def disk_bytes(self) -> int:
        info = self.env.info()
        stat = self.env.stat()
        return (info["last_pgno"] + 1) * stat["psize"]
