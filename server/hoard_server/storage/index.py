"""The object index: key -> location, in LMDB, plus the per-pack and per-repository counters.

Databases in one LMDB environment (all updated in the same transactions, so counters never
drift from the entries they count):

- ``objects``: 32-byte digest -> ``Location`` (pack id, record offset, body size, raw size,
  encoding);
- ``packs``: pack id (big-endian u32, so cursor order is id order) -> ``PackState``
  (committed end, dead bytes, single-object flag);
- ``meta``: repository identity and totals;
- ``dicts``: zstd dictionary id -> dictionary bytes.

The environment itself (durable commits, a full disk reported as StorageFull, batched
walks, the swap for a compacted copy) is ``lmdb_env.LmdbEnvironment``; this module only says
what the databases hold.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from hoard_server.errors import DataLoss
from hoard_server.storage.lmdb_env import (
    LmdbEnvironment,
    Txn,
    WriteTransaction,
    index_write_error,
    recover_swap,
)
from hoard_server.storage.pack import _ENCODINGS, HEADER_SIZE, Encoding, RecordHeader

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
    def decode(cls, buf: bytes | bytearray) -> Location:
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


class ObjectIndex(LmdbEnvironment):
    """Typed access to a repository's index: objects, packs, totals, identity, dictionaries."""

    def __init__(self, path: str, map_size: int = 1 << 40) -> None:
        super().__init__(path, map_size, ("objects", "packs", "meta", "dicts"))

    def _open(self) -> None:
        super()._open()  # also after a swap for a compacted copy: the handles are new
        self.objects_db = self._objects = self.dbs["objects"]
        self._packs = self.dbs["packs"]
        self._meta = self.dbs["meta"]
        self._dicts = self.dbs["dicts"]

    # -- objects ---------------------------------------------------------------------
    def get(self, txn: Txn, digest: bytes) -> Location | None:
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

    def put(self, txn: Txn, digest: bytes, loc: Location) -> None:
        txn.put(digest, loc.encode(), db=self._objects)

    def delete(self, txn: Txn, digest: bytes) -> None:
        txn.delete(digest, db=self._objects)

    def _entries(self, after: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        return self.walk(self._objects, after)

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
    def packs(self, txn: Txn | None = None) -> dict[int, PackState]:
        if txn is None:
            with self.read() as t:
                return self.packs(t)
        return {_PACK_ID.unpack(k)[0]: PackState.decode(v) for k, v in txn.cursor(db=self._packs)}

    def get_pack(self, txn: Txn, pack_id: int) -> PackState | None:
        buf = txn.get(_PACK_ID.pack(pack_id), db=self._packs)
        return None if buf is None else PackState.decode(buf)

    def put_pack(self, txn: Txn, pack_id: int, state: PackState) -> None:
        txn.put(_PACK_ID.pack(pack_id), state.encode(), db=self._packs)

    def delete_pack(self, txn: Txn, pack_id: int) -> None:
        txn.delete(_PACK_ID.pack(pack_id), db=self._packs)

    # -- totals and identity ---------------------------------------------------------
    def totals(self, txn: Txn | None = None) -> Totals:
        if txn is None:
            with self.read() as t:
                return self.totals(t)
        buf = txn.get(b"totals", db=self._meta)
        return Totals() if buf is None else Totals(*_TOTALS.unpack(buf))

    def put_totals(self, txn: Txn, t: Totals) -> None:
        txn.put(b"totals", _TOTALS.pack(t.objects, t.raw_bytes, t.stored_bytes), db=self._meta)

    def get_meta(self, name: str, txn: Txn | None = None) -> bytes | None:
        if txn is None:
            with self.read() as t:
                return t.get(name.encode(), db=self._meta)
        return txn.get(name.encode(), db=self._meta)

    def put_meta(self, txn: Txn, name: str, value: bytes) -> None:
        txn.put(name.encode(), value, db=self._meta)

    # -- dictionaries ----------------------------------------------------------------
    def dictionaries(self) -> dict[int, bytes]:
        with self.read() as txn:
            return {int.from_bytes(k, "big"): v for k, v in txn.cursor(db=self._dicts)}

    def put_dictionary(self, dict_id: int, data: bytes) -> None:
        with self.write() as txn:
            txn.put(dict_id.to_bytes(4, "big"), data, db=self._dicts)


__all__ = [
    "LOCATION",
    "Location",
    "ObjectIndex",
    "PackState",
    "Totals",
    "Txn",
    "WriteTransaction",
    "index_write_error",
    "recover_swap",
]
