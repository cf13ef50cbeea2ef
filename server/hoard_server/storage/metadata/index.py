"""The metadata index: one record per (machine_id, path), typed secondary indexes per field.

One LMDB environment, seven databases:

- ``docs``: doc key (machine_id and path, encoded) -> doc id (8 bytes): one record per file;
- ``records``: doc id -> where the file is and its signature (``encoding.pack_record``);
- ``bodies``: doc id -> the record's fields;
- ``fields``: field name, 0x00, the value's index form, doc id -> b"": every field of
  every record, the built-in ones (path, filename, ...) too;
- ``values``: doc id -> the index forms of all the record's fields, packed (``_Shapes``):
  the same entries by record, one per record, so a query checks a candidate's condition or
  sort key without decoding it;
- ``schema``: field name -> how many values of each type it holds, and how many shortened;
- ``meta``: the next doc id, the format version and the shapes of records (their field
  names, in order: a record's packed forms name its shape by number).

Every change to a record (added, replaced, removed) changes its index entries and the
schema counts in the same transaction, so the databases agree whenever a transaction has
committed, crash or not (``check`` proves it). Writes come in batches, thousands of
records per transaction, each committed with an fsync (``lmdb_env``).
"""

from __future__ import annotations

import itertools
import operator
import os
import struct
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import lmdb

from hoard.metadata.records import (
    FieldType,
    FileRecord,
    FileSignature,
    Value,
    check_field_name,
)
from hoard_server.errors import DataLoss, InvalidArgument
from hoard_server.storage.lmdb_env import LmdbEnvironment, Txn
from hoard_server.storage.metadata import encoding as enc

FORMAT_VERSION = 2  # 2: record bodies pickled (plain values only), forms packed per record
DEFAULT_MAP_SIZE = 8 << 30
DB_NAMES = ("docs", "records", "bodies", "fields", "values", "schema", "meta")
_ID = struct.Struct(">Q")
_DOC_ID = operator.itemgetter(slice(-8, None))  # an index key's doc id
_COUNTS = struct.Struct("<7Q")
TYPES = tuple(FieldType)  # the schema's counters, in this order, then "shortened"
_TYPE_SLOT = {t: i for i, t in enumerate(TYPES)}
_TAG_SLOT = {int(t): i for i, t in enumerate(TYPES)}
MAX_MACHINE_ID = 100


def doc_key(machine_id: str, path: str) -> bytes:
    """The docs key of a file: its machine's encoding, then its path's (shortened with a
    hash when long: the stored record has the whole path)."""
    return enc.index_value(enc.encode_str(machine_id) + enc.encode_str(path))[0]


def _present(packed: bytes | None, doc_id: bytes) -> bytes:
    """A record a doc key or index entry names; its absence is damage, not a miss."""
    if packed is None:
        raise DataLoss(f"the metadata index names record {_ID.unpack(doc_id)[0]}, "
                       f"which is missing", reason="METADATA_INDEX_DAMAGED")
    return packed


def check_machine_id(machine_id: str) -> None:
    """InvalidArgument for a machine_id the index cannot hold (too long)."""
    if len(machine_id.encode("utf-8")) > MAX_MACHINE_ID:
        raise InvalidArgument(f"machine_id is longer than {MAX_MACHINE_ID} bytes",
                              reason="INVALID_MACHINE_ID", machine_id=machine_id[:100])


def check_location(machine_id: str, path: str) -> None:
    check_machine_id(machine_id)
    if not path or "\x00" in path:
        raise InvalidArgument(f"bad path {path!r}", reason="INVALID_PATH", path=path)


@dataclass
class FieldInfo:
    """One field of the schema: how many records hold a value of each type."""

    name: str
    counts: dict[FieldType, int]
    shortened: int = 0  # values kept in the index as a prefix and a hash

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def types(self) -> list[FieldType]:
        return [t for t, n in self.counts.items() if n]


@dataclass
class WriteCounts:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    paths: list[str] = field(default_factory=list)


_PY_TAG = {type(None): FieldType.NULL, bool: FieldType.BOOL, int: FieldType.INT,
           float: FieldType.FLOAT, str: FieldType.STR, datetime: FieldType.DATETIME}


def _entry_of(key: bytes) -> tuple[bytes, int, bool]:
    """(field name, type tag, shortened) of an index key without its doc id."""
    i = key.index(0)
    return key[:i], key[i + 1], len(key) - i - 1 > enc.LONGEST


class _SchemaDelta:
    """Changes to the schema counts within one transaction, applied at its end. New
    records count by shape (their names and their values' Python types: records of one
    extractor share a few), replaced and removed entries by key."""

    def __init__(self) -> None:
        self.by_shape: Counter[tuple[tuple[str, ...], tuple[type, ...]]] = Counter()
        self.by_key: Counter[tuple[bytes, int, bool]] = Counter()

    def add_fields(self, fields: dict[str, Value], names: tuple[str, ...] | None = None
                   ) -> None:
        self.by_shape[(names or tuple(fields), tuple(map(type, fields.values())))] += 1

    def add_key(self, key: bytes, sign: int) -> None:
        self.by_key[_entry_of(key)] += sign

    def totals(self) -> dict[bytes, list[int]]:
        """{field name: the seven counters' changes}."""
        out: dict[bytes, list[int]] = {}
        by_type: Counter[tuple[str, type]] = Counter()
        for (names, kinds), n in self.by_shape.items():
            for pair in zip(names, kinds, strict=True):
                by_type[pair] += n
        items = [((name.encode("utf-8"), int(_PY_TAG[kind]), False), n)
                 for (name, kind), n in by_type.items()]
        for (name, tag, shortened), n in [*items, *self.by_key.items()]:
            d = out.get(name)
            if d is None:
                d = out[name] = [0] * 7
            d[_TAG_SLOT[tag]] += n
            if shortened:
                d[6] += n
        return {k: v for k, v in out.items() if any(v)}

    def apply(self, txn: Txn, db: lmdb._Database) -> None:
        for name, delta in self.totals().items():
            raw = txn.get(name, db=db)
            counts = list(_COUNTS.unpack(raw)) if raw is not None else [0] * 7
            counts = [a + b for a, b in zip(counts, delta, strict=True)]
            if any(c < 0 for c in counts):
                raise AssertionError(f"schema count below zero for {name!r}")
            if any(counts[:6]):
                txn.put(name, _COUNTS.pack(*counts), db=db)
            else:
                txn.delete(name, db=db)


class _Names(dict[str, bytes]):
    """Field name -> its index prefix (the name and a 0x00), checked once."""

    def __missing__(self, name: str) -> bytes:
        check_field_name(name)
        nb = self[name] = name.encode("utf-8") + b"\x00"
        return nb


class _Forms(dict[tuple[type, Value], bytes]):
    """(type, value) -> the value's index form, computed once (up to ``CACHED`` short
    values, a few MB per index: the frequent ones come early); ``shortened`` is set when a
    value had to be shortened since it was last cleared (shortened forms are never cached,
    so it always is)."""

    CACHED = 20_000
    SHORT = 64  # bytes of a form worth caching
    shortened = False

    def __missing__(self, key: tuple[type, Value]) -> bytes:
        kind, value = key
        if kind is int and isinstance(value, int) and -enc.SIGN <= value <= enc.UINT64_MAX:
            form = enc.T_INT + (value + enc.SIGN).to_bytes(9, "big")
            if len(self) < self.CACHED:
                self[key] = form
            return form
        try:
            form, shortened = enc.index_value(enc.encode(value))
        except (ValueError, TypeError) as exc:
            raise InvalidArgument(f"a field value cannot be indexed: {exc}",
                                  reason="INVALID_VALUE") from exc
        if shortened:
            self.shortened = True
        elif len(form) <= self.SHORT and len(self) < self.CACHED:
            self[key] = form
        return form


class _EntryEncoder:
    """A record's index keys (without the doc id)."""

    def __init__(self) -> None:
        self.names = _Names()
        self.forms = _Forms()

    def entries(self, fields: dict[str, Value]) -> tuple[list[bytes], list[bytes]]:
        """(field prefixes, value forms), in the order of ``fields``."""
        names, forms = self.names, self.forms
        # ints (most fields) are encoded inline: cheaper than a cache miss for the unique ones
        low, high, tag = -enc.SIGN, enc.UINT64_MAX, enc.T_INT
        return [names[n] for n in fields], [
            tag + (v + enc.SIGN).to_bytes(9, "big") if type(v) is int and low <= v <= high
            else forms[(type(v), v)] for v in fields.values()]

    def keys(self, fields: dict[str, Value]) -> list[bytes]:
        return list(map(bytes.__add__, *self.entries(fields)))


class Prepared(NamedTuple):
    """A record encoded for the index, all but what only a write transaction knows (its
    doc id, its shape's number): made by ``prepare``, in this process or a worker's, and
    cheap to send between them (bytes, and tuples shared between records of one shape)."""

    machine_id: str
    path: str
    key: bytes  # its docs key
    location: bytes
    body: bytes
    names: tuple[str, ...]  # its fields' names, in order (its shape)
    kinds: tuple[type, ...]  # its values' types, for the schema counts
    prefixes: list[bytes]  # each field's name prefix
    forms: list[bytes]  # each value's index form
    packed: bytes  # the forms' offsets and the forms, as the values db holds them
    shortened: bool  # some value had to be shortened
    error: bool  # the record says its file failed to parse


class Preparer:
    """Makes ``Prepared`` records, its caches kept from one batch to the next (shapes are
    the same tuple objects each time: a batch pickles each once)."""

    def __init__(self) -> None:
        self.encoder = _EntryEncoder()
        self._shapes: dict[tuple[tuple[str, ...], tuple[type, ...]],
                           tuple[tuple[str, ...], tuple[type, ...], list[bytes]]] = {}
        self._packers: dict[int, struct.Struct] = {}

    def prepare(self, record: FileRecord) -> Prepared:
        location, body = enc.pack_record(record)
        all_fields = record.all_fields()
        forms = self.encoder.forms
        forms.shortened = False
        prefixes, values = self.encoder.entries(all_fields)
        shape_key = (tuple(all_fields), tuple(map(type, all_fields.values())))
        shape = self._shapes.get(shape_key)
        if shape is None:
            if len(self._shapes) > 10_000:
                self._shapes.clear()
            shape = self._shapes[shape_key] = (*shape_key, prefixes)
        packer = self._packers.get(len(values))
        if packer is None:
            packer = self._packers[len(values)] = struct.Struct(f"<{len(values) + 1}I")
        packed = (packer.pack(*itertools.accumulate(map(len, values), initial=0))
                  + b"".join(values))
        return Prepared(record.machine_id, record.path, doc_key(record.machine_id, record.path),
                        location, body, shape[0], shape[1], shape[2], values, packed,
                        forms.shortened, record.error is not None)


_SHAPE = struct.Struct(">I")
_SPAN = struct.Struct("<II")


class _Shapes:
    """Records' shapes (their field names, in order), numbered, and the packed forms of a
    record: its shape's number, the offsets of its forms, the forms one after another.
    One put per record instead of one per field; a probe reads one offset pair.

    A shape is stored in ``meta`` (b"shape" + number -> the names joined by 0x00) in the
    transaction of the first record that has it; this process learns the numbers only
    once that transaction has committed (``commit``), so an aborted one leaves nothing."""

    def __init__(self, meta: lmdb._Database) -> None:
        self.meta = meta
        self.numbers: dict[tuple[str, ...], bytes] = {}  # committed shapes
        self.pending: dict[tuple[str, ...], bytes] = {}  # in the open write transaction
        self.prefixes: dict[bytes, dict[bytes, int]] = {}  # number -> {name prefix: position}
        self.packers: dict[int, struct.Struct] = {}

    def number(self, txn: Txn, names: tuple[str, ...]) -> bytes:
        return self.numbers.get(names) or self.pending.get(names) or self._new(txn, names)

    def pack(self, txn: Txn, names: tuple[str, ...], forms: list[bytes]) -> bytes:
        number = self.numbers.get(names) or self.pending.get(names) or self._new(txn, names)
        packer = self.packers.get(len(forms))
        if packer is None:
            packer = self.packers[len(forms)] = struct.Struct(f"<{len(forms) + 1}I")
        return (number + packer.pack(*itertools.accumulate(map(len, forms), initial=0))
                + b"".join(forms))

    def _new(self, txn: Txn, names: tuple[str, ...]) -> bytes:
        raw = txn.get(b"next_shape", db=self.meta)
        n = _ID.unpack(raw)[0] if raw is not None else 0
        number = _SHAPE.pack(n)
        txn.put(b"shape" + number, "\x00".join(names).encode("utf-8"), db=self.meta)
        txn.put(b"next_shape", _ID.pack(n + 1), db=self.meta)
        self.pending[names] = number
        return number

    def commit(self) -> None:
        self.numbers.update(self.pending)
        self.pending.clear()

    def abort(self) -> None:
        self.pending.clear()

    def positions(self, txn: Txn, number: bytes) -> dict[bytes, int]:
        found = self.prefixes.get(number)
        if found is None:
            raw = txn.get(b"shape" + number, db=self.meta)
            if raw is None:
                raise DataLoss(f"a record names shape {_SHAPE.unpack(number)[0]}, which is "
                               f"missing", reason="METADATA_INDEX_DAMAGED")
            found = {name + b"\x00": i for i, name in enumerate(raw.split(b"\x00"))}
            self.prefixes[number] = found
        return found

    def form(self, txn: Txn, packed: bytes, prefix: bytes) -> bytes | None:
        """The form of one field (``prefix``: its name and 0x00), None when absent."""
        positions = self.positions(txn, packed[:4])
        i = positions.get(prefix)
        if i is None:
            return None
        start, end = _SPAN.unpack_from(packed, 4 + 4 * i)
        base = 8 + 4 * len(positions)
        return packed[base + start : base + end]

    def unpack(self, txn: Txn, packed: bytes) -> dict[bytes, bytes]:
        """{name prefix: form} of a record's packed forms."""
        positions = self.positions(txn, packed[:4])
        n = len(positions)
        offsets = struct.unpack_from(f"<{n + 1}I", packed, 4)
        base = 4 + 4 * (n + 1)
        return {prefix: packed[base + offsets[i] : base + offsets[i + 1]]
                for prefix, i in positions.items()}


class MetadataIndex:
    """The index of one metadata cache (see the module's docstring)."""

    def __init__(self, path: str, map_size: int = DEFAULT_MAP_SIZE) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.lmdb = LmdbEnvironment(path, map_size, DB_NAMES)
        self._docs = self.lmdb.dbs["docs"]
        self._records = self.lmdb.dbs["records"]
        self._bodies = self.lmdb.dbs["bodies"]
        self._fields = self.lmdb.dbs["fields"]
        self._values = self.lmdb.dbs["values"]
        self._schema = self.lmdb.dbs["schema"]
        self._meta = self.lmdb.dbs["meta"]
        self._encoder = _EntryEncoder()  # its caches outlive a batch; used under the write lock
        self._preparer = Preparer()  # the same, for records written here
        self._prepare_lock = threading.Lock()
        self._shapes = _Shapes(self._meta)
        with self.lmdb.write() as txn:
            version = txn.get(b"format", db=self._meta)
            if version is None:
                txn.put(b"format", _ID.pack(FORMAT_VERSION), db=self._meta)
            elif _ID.unpack(version)[0] != FORMAT_VERSION:
                raise InvalidArgument(
                    f"the metadata index at {path} has format {_ID.unpack(version)[0]}, "
                    f"this hoard reads {FORMAT_VERSION}", reason="INDEX_FORMAT")

    def close(self) -> None:
        self.lmdb.close()

    def __enter__(self) -> MetadataIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ------------------------------------------------------------------------
    def upsert_many(self, records: Iterable[FileRecord]) -> WriteCounts:
        """Add or replace records in one transaction; a replaced record's index entries
        are replaced with it. A record equal to the stored one changes nothing; of several
        for one file, the last counts."""
        # one record per file: of several in the batch, the last wins (a new record's
        # entries are put at the end, so it must not be replaced within the batch)
        latest = {(r.machine_id, r.path): r for r in records}
        for machine_id, path in latest:
            check_location(machine_id, path)
        return self.upsert_prepared(self.prepare(latest.values()))

    def prepare(self, records: Iterable[FileRecord]) -> list[Prepared]:
        """Records encoded for ``upsert_prepared``, with this index's caches."""
        with self._prepare_lock:
            return [self._preparer.prepare(r) for r in records]

    def upsert_prepared(self, records: Iterable[Prepared]) -> WriteCounts:
        """``upsert_many`` for records ``Preparer.prepare`` made (here or in a worker)."""
        latest = {(r.machine_id, r.path): r for r in records}
        for machine_id, path in latest:
            check_location(machine_id, path)
        try:
            counts = self._upsert(latest.values())
        except BaseException:
            self._shapes.abort()  # shapes the transaction stored are gone with it
            raise
        self._shapes.commit()
        return counts

    def _upsert(self, records: Iterable[Prepared]) -> WriteCounts:
        counts = WriteCounts()
        delta = _SchemaDelta()
        puts: list[bytes] = []  # new records' index keys, put in key order at the end
        forward: list[tuple[bytes, bytes]] = []  # and their packed forms by doc id, appended
        shapes = self._shapes
        add, repeat = bytes.__add__, itertools.repeat
        with self.lmdb.write() as txn:
            encoder = self._encoder
            docs, recs, bodies, fields, values = (
                self._docs, self._records, self._bodies, self._fields, self._values)
            next_raw = txn.get(b"next_doc", db=self._meta)
            next_id = _ID.unpack(next_raw)[0] if next_raw is not None else 1
            by_shape = delta.by_shape
            for p in records:
                key, location, body = p.key, p.location, p.body
                old_id = txn.get(key, db=docs)
                if old_id is None:
                    doc_id = _ID.pack(next_id)
                    next_id += 1
                    txn.put(key, doc_id, db=docs)
                    txn.put(doc_id, location, db=recs)
                    txn.put(doc_id, body, db=bodies)
                    counts.added += 1
                    new_keys = list(map(add, p.prefixes, p.forms))
                    puts.extend(map(add, new_keys, repeat(doc_id)))
                    forward.append((doc_id, shapes.number(txn, p.names) + p.packed))
                    by_shape[(p.names, p.kinds)] += 1
                    if p.shortened:  # rare: count the shortened ones too
                        for k in new_keys:
                            name, tag, shortened = _entry_of(k)
                            if shortened:
                                delta.by_key[(name, tag, True)] += 1
                                delta.by_key[(name, tag, False)] -= 1
                    continue
                doc_id = old_id
                old_location = _present(txn.get(doc_id, db=recs), doc_id)
                old_body = _present(txn.get(doc_id, db=bodies), doc_id)
                if old_location == location and old_body == body:
                    counts.unchanged += 1
                    continue
                old = enc.unpack_record(old_location, old_body)
                old_map = dict(zip(*encoder.entries(old.all_fields()), strict=True))
                new_map = dict(zip(p.prefixes, p.forms, strict=True))
                counts.updated += 1
                txn.put(doc_id, location, db=recs)
                txn.put(doc_id, body, db=bodies)
                for nb, fm in old_map.items():
                    if new_map.get(nb) != fm:
                        txn.delete(nb + fm + doc_id, db=fields)
                        delta.add_key(nb + fm, -1)
                for nb, fm in new_map.items():
                    if old_map.get(nb) != fm:
                        txn.put(nb + fm + doc_id, b"", db=fields)
                        delta.add_key(nb + fm, +1)
                txn.put(doc_id, shapes.number(txn, p.names) + p.packed, db=values)
            puts.sort()
            txn.cursor(db=fields).putmulti(zip(puts, itertools.repeat(b"")))
            # new doc ids are above every stored one and come in order: at the end
            txn.cursor(db=values).putmulti(forward, append=True)
            txn.put(b"next_doc", _ID.pack(next_id), db=self._meta)
            delta.apply(txn, self._schema)
        return counts

    def remove_many(self, locations: Iterable[tuple[str, str]]) -> WriteCounts:
        """Remove the records of (machine_id, path) pairs in one transaction; a pair with no
        record is left out of the count. Nothing is read from the files."""
        counts = WriteCounts()
        encoder = _EntryEncoder()
        delta = _SchemaDelta()
        with self.lmdb.write() as txn:
            for machine_id, path in locations:
                key = doc_key(machine_id, path)
                doc_id = txn.get(key, db=self._docs)
                if doc_id is None:
                    continue
                record = enc.unpack_record(_present(txn.get(doc_id, db=self._records), doc_id),
                                           _present(txn.get(doc_id, db=self._bodies), doc_id))
                if (record.machine_id, record.path) != (machine_id, path):
                    continue  # a shortened key's hash collided: not this file
                nbs, fms = encoder.entries(record.all_fields())
                for nb, fm in zip(nbs, fms, strict=True):
                    txn.delete(nb + fm + doc_id, db=self._fields)
                    delta.add_key(nb + fm, -1)
                txn.delete(doc_id, db=self._values)
                txn.delete(doc_id, db=self._records)
                txn.delete(doc_id, db=self._bodies)
                txn.delete(key, db=self._docs)
                counts.removed += 1
                counts.paths.append(path)
            delta.apply(txn, self._schema)
        return counts

    # -- reads -------------------------------------------------------------------------
    @contextmanager
    def snapshot(self) -> Iterator[IndexSnapshot]:
        """A consistent view for one query (one read transaction)."""
        with self.lmdb.read() as txn:
            yield IndexSnapshot(self, txn)

    def get(self, path: str, machine_id: str = "") -> FileRecord | None:
        with self.snapshot() as snap:
            return snap.get(path, machine_id)

    def count(self) -> int:
        with self.lmdb.read() as txn:
            return int(txn.stat(self._records)["entries"])

    def schema(self) -> list[FieldInfo]:
        with self.snapshot() as snap:
            return snap.schema()

    def signatures(self, machine_id: str = "", under: str | None = None
                   ) -> Iterator[tuple[str, FileSignature, bool]]:
        """(path, signature, failed to parse) of the records of ``machine_id``, all or those
        whose path starts with ``under``, in batches of read transactions."""
        prefix = enc.encode_str(machine_id)
        if under is not None:
            prefix += enc.encode_str(under)[:-1]  # escaped, without the terminator
        last: bytes | None = None
        while True:
            batch: list[tuple[str, FileSignature, bool]] = []
            with self.lmdb.read() as txn:
                cur = txn.cursor(db=self._docs)
                found = cur.set_range(last if last is not None else prefix)
                if found and last is not None and cur.key() == last:
                    found = cur.next()
                while found and len(batch) < 10_000:
                    key = cur.key()
                    if not key.startswith(prefix):
                        found = False
                        break
                    packed = _present(txn.get(cur.value(), db=self._records), cur.value())
                    sig, failed = enc.unpack_signature(packed)
                    machine, path = enc.unpack_location(packed)
                    if machine == machine_id and (under is None or path.startswith(under)):
                        batch.append((path, sig, failed))
                    last = key
                    found = cur.next()
            yield from batch
            if not found:
                return

    def signature_bytes(self, machine_id: str = "", under: str | None = None
                        ) -> Iterator[tuple[str, bytes]]:
        """(path, ``encoding.signature_bytes`` of its stored signature) of the records of
        ``machine_id``, all or those whose path starts with ``under``: ``signatures`` for
        a re-sync, one tight loop per batch of read transactions."""
        prefix = enc.encode_str(machine_id)
        if under is not None:
            prefix += enc.encode_str(under)[:-1]  # escaped, without the terminator
        machine = machine_id.encode("utf-8")
        head, size = enc.LOCATION_HEAD, enc.SIGNATURE_BYTES
        last: bytes | None = None
        while True:
            batch: list[tuple[str, bytes]] = []
            with self.lmdb.read() as txn:
                get, recs = txn.get, self._records
                cur = txn.cursor(db=self._docs)
                if not cur.set_range(last if last is not None else prefix):
                    return
                done = True
                for key, doc_id in cur.iternext():
                    if key == last:
                        continue
                    if not key.startswith(prefix):
                        break
                    if len(batch) >= 10_000:
                        done = False
                        break
                    data = get(doc_id, db=recs) or _present(None, doc_id)
                    last = key
                    lm = data[head - 2] | (data[head - 1] << 8)
                    if data[head : head + lm] != machine:
                        continue  # a shortened key's prefix: another machine
                    path = data[head + lm :].decode("utf-8")
                    if under is None or path.startswith(under):
                        batch.append((path, data[:size]))
            yield from batch
            if done:
                return

    def check(self) -> list[str]:
        """Problems found by comparing the databases with each other: a record without its
        index entries, an entry without its record, a doc key for a missing record, schema
        counts that disagree. Empty when the index is consistent."""
        problems: list[str] = []
        encoder = _EntryEncoder()
        expected_entries: set[bytes] = set()
        expected_values: dict[bytes, dict[bytes, bytes]] = {}
        expected_schema = _SchemaDelta()
        with self.lmdb.read() as txn:
            doc_ids = set()
            for key, doc_id in txn.cursor(db=self._docs):
                location = txn.get(doc_id, db=self._records)
                body = txn.get(doc_id, db=self._bodies)
                if location is None or body is None:
                    problems.append(f"doc key {key!r} names a missing record")
                    continue
                record = enc.unpack_record(location, body)
                if doc_key(record.machine_id, record.path) != key:
                    problems.append(f"record {record.path!r} is under another file's key")
                doc_ids.add(doc_id)
                nbs, fms = encoder.entries(record.all_fields())
                expected_values[doc_id] = dict(zip(nbs, fms, strict=True))
                for nb, fm in zip(nbs, fms, strict=True):
                    expected_entries.add(nb + fm + doc_id)
                    expected_schema.add_key(nb + fm, +1)
            for db in (self._records, self._bodies):
                for doc_id, _ in txn.cursor(db=db):
                    if doc_id not in doc_ids:
                        problems.append(f"record {_ID.unpack(doc_id)[0]} has no doc key")
            found_entries = {k for k, _ in txn.cursor(db=self._fields)}
            for k in sorted(expected_entries - found_entries)[:20]:
                problems.append(f"missing index entry {k!r}")
            for k in sorted(found_entries - expected_entries)[:20]:
                problems.append(f"index entry without its record {k!r}")
            found_values = {doc_id: self._shapes.unpack(txn, packed)
                            for doc_id, packed in txn.cursor(db=self._values)}
            if found_values != expected_values:
                problems.append("values by doc id disagree with the records")
            stored = {k: list(_COUNTS.unpack(v)) for k, v in txn.cursor(db=self._schema)}
            if stored != expected_schema.totals():
                problems.append("schema counts disagree with the records")
        return problems


class IndexSnapshot:
    """The primitives a query runs on, within one read transaction. Doc ids are 8-byte
    strings; ``scan_ids`` and ``groups`` take the bytes of ``encoding`` (tag first)."""

    def __init__(self, index: MetadataIndex, txn: lmdb.Transaction[bytes]) -> None:
        self.index = index
        self.txn = txn
        self._records = index._records
        self._bodies = index._bodies
        self._fields = index._fields
        self._values = index._values

    def total(self) -> int:
        return int(self.txn.stat(self._records)["entries"])

    def schema(self) -> list[FieldInfo]:
        out = []
        for name, raw in self.txn.cursor(db=self.index._schema):
            counts = _COUNTS.unpack(raw)
            out.append(FieldInfo(
                name.decode("utf-8"),
                {t: counts[i] for i, t in enumerate(TYPES)},
                counts[6],
            ))
        return out

    def field(self, name: str) -> FieldInfo | None:
        """The schema's counts of field ``name``; None when no record has it, and for a
        name no record can have (empty, with a NUL, or longer than a key may be)."""
        try:
            check_field_name(name)
        except ValueError:
            return None
        raw = self.txn.get(name.encode("utf-8"), db=self.index._schema)
        if raw is None:
            return None
        counts = _COUNTS.unpack(raw)
        return FieldInfo(name, {t: counts[i] for i, t in enumerate(TYPES)}, counts[6])

    def get(self, path: str, machine_id: str = "") -> FileRecord | None:
        doc_id = self.txn.get(doc_key(machine_id, path), db=self.index._docs)
        if doc_id is None:
            return None
        record = self.record(doc_id)
        return record if (record.machine_id, record.path) == (machine_id, path) else None

    def packed_location(self, doc_id: bytes) -> bytes:
        return _present(self.txn.get(doc_id, db=self._records), doc_id)

    def record(self, doc_id: bytes) -> FileRecord:
        return enc.unpack_record(self.packed_location(doc_id),
                                 _present(self.txn.get(doc_id, db=self._bodies), doc_id))

    def location(self, doc_id: bytes) -> tuple[str, str]:
        return enc.unpack_location(self.packed_location(doc_id))

    def form(self, doc_id: bytes, name_prefix: bytes) -> bytes | None:
        """The index form of a record's field (``name_prefix``: the name and 0x00), or
        None when the record has no such field."""
        packed = self.txn.get(doc_id, db=self._values)
        if packed is None:
            return None
        return self.index._shapes.form(self.txn, packed, name_prefix)

    def paths(self, doc_ids: Iterable[bytes]) -> list[tuple[str, str]]:
        """(machine_id, path) of each doc id, in one tight loop (query results)."""
        get, db, head = self.txn.get, self._records, enc.LOCATION_HEAD
        out = []
        for doc_id in doc_ids:
            data = get(doc_id, db=db) or _present(None, doc_id)
            lm = data[head - 2] | (data[head - 1] << 8)
            out.append((data[head : head + lm].decode(), data[head + lm :].decode()))
        return out

    def all_locations(self) -> Iterator[tuple[bytes, bytes]]:
        """(doc id, packed location) of every record, in doc id order."""
        yield from self.txn.cursor(db=self._records)

    def scan_ids(self, name: str, low: bytes, high: bytes | None, cap: int | None = None
                 ) -> list[bytes]:
        """Doc ids whose ``name`` value's index form lies in [low, high) (high None: to
        the end of the field), at most ``cap`` of them. The walk runs in C iterators (no
        Python code per entry)."""
        nb = name.encode("utf-8") + b"\x00"
        stop = nb + high if high is not None else enc.successor(nb)
        cur = self.txn.cursor(db=self._fields)
        if not cur.set_range(nb + low):
            return []
        keys: Iterator[bytes] = cur.iternext(keys=True, values=False)
        if stop is not None:
            keys = itertools.takewhile(stop.__gt__, keys)
        if cap is not None:
            keys = itertools.islice(keys, cap)
        return list(map(_DOC_ID, keys))

    def groups(self, name: str, descending: bool = False, start: bytes | None = None
               ) -> Iterator[tuple[bytes, list[bytes]]]:
        """(value form, doc ids) of ``name`` in value order (or reversed), one group per
        distinct value form. ``start``: begin at this value form (inclusive)."""
        nb = name.encode("utf-8") + b"\x00"
        n = len(nb)
        cur = self.txn.cursor(db=self._fields)
        if not descending:
            found = cur.set_range(nb + (start or b""))
            it = cur.iternext(keys=True, values=False) if found else iter(())
        else:
            upper = enc.successor(nb + start) if start is not None else enc.successor(nb)
            found = cur.set_range(upper) if upper is not None else False
            found = cur.prev() if found else cur.last()
            it = cur.iterprev(keys=True, values=False) if found else iter(())
        current: bytes | None = None
        ids: list[bytes] = []
        for key in it:
            if not key.startswith(nb):
                break
            form = key[n:-8]
            if form != current:
                if ids:
                    assert current is not None
                    yield current, ids
                current, ids = form, []
            ids.append(key[-8:])
        if ids:
            assert current is not None
            yield current, ids
