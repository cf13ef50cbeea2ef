"""DatasetService: TVB's HDF5StorageManager operations on a repository's HDF5 files.

The names and meaning are TVB's (store_data, append_data, get_data, get_data_shape,
set/get/remove_metadata, remove_data, is_valid_file, close_file), with its defects fixed:
``where`` and the name are joined as paths, None and 0-d scalars round-trip, set_metadata
never creates a dataset, a missing key is METADATA_NOT_FOUND. Every file access goes
through the repository's ``OpenFiles``; appends go through the ``GroupAppender``.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, closing, nullcontext
from dataclasses import dataclass

import h5py
import numpy as np

from hoard_server.errors import (
    HoardError,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    Unavailable,
)
from hoard_server.observe import metrics
from hoard_server.services.batching import ResponseBudget
from hoard_server.services.datasets import arrays, metadata
from hoard_server.services.datasets.arrays import ArrayLike, WireArray
from hoard_server.services.datasets.readahead import Stopped, read_ahead
from hoard_server.services.datasets.selection import Item, Selection
from hoard_server.services.datasets.shared_memory import Segment, SharedSegments
from hoard_server.services.repositories import open_repository
from hoard_server.storage.hdf5 import nodes
from hoard_server.storage.hdf5.appends import (
    STRING_DTYPE,
    AppendBatch,
    AppendResult,
    GroupAppender,
)
from hoard_server.storage.hdf5.chunking import TARGET_BYTES
from hoard_server.storage.hdf5.files import FileWatch, HandleLimit, OpenFiles
from hoard_server.storage.registry import RepositoryRegistry

BLOCK_BYTES = 1 << 20  # Follow blocks, ReadData blocks of text
# ReadData blocks of numbers: fewer, larger messages (less work per byte), yet within the
# 4 MiB a gRPC client receives by default. Text stays at BLOCK_BYTES (its size is estimated).
READ_BLOCK_BYTES = (4 << 20) - (64 << 10)
SHARED_MIN_BYTES = 64 << 10  # smaller selections are streamed even to a client on this host
SHARED_FILL_BYTES = 64 << 20  # a shared-memory read re-enters the file's reading door this often
SHARED_PIECE_BYTES = 4 << 20  # ... and reads in pieces of this size (cache-sized buffers)
STREAM_GROUP_BYTES = 16 << 20  # an Append stream commits at most this much at once
STREAM_QUEUE = 64  # batches an Append stream reads ahead of its commits
FOLLOW_WAKE = 0.25  # seconds between a follower's checks that its client is still there


@dataclass(frozen=True)
class DatasetSettings:
    """The [datasets] settings the service uses."""

    max_reply_bytes: int = 64 << 20
    max_open_files: int = 256
    chunk_target_bytes: int = TARGET_BYTES
    handle_idle_seconds: float = 30.0  # 0: handles stay open until evicted or closed
    structural_copy_bytes: int = 64 << 20  # 0: structural changes in place
    shared_memory_reads: bool = True  # large reads by a client on this host via /dev/shm
    shared_memory_bytes: int = 2 << 30  # bound of the shared memory handed out, unclaimed


@dataclass(frozen=True)
class NodeRef:
    """A file of a repository, or a node in it (``where`` group, ``dataset`` name)."""

    repository: str
    path: str
    where: str = ""
    dataset: str = ""

    @property
    def node(self) -> str:
        return nodes.node_path(self.where, self.dataset)


@dataclass(frozen=True)
class DatasetShape:
    shape: tuple[int, ...]
    dtype: str
    maxshape: tuple[int, ...]  # 0: unlimited
    chunks: tuple[int, ...]  # empty: contiguous
    compression: str


@dataclass(frozen=True)
class AppendAck:
    sequence: int
    dataset: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class AppendPart:
    """One message of an Append stream (``repository``/``path`` empty: the stream's file)."""

    node: NodeRef
    data: ArrayLike
    grow_dimension: int | None
    sequence: int
    expected_length: int | None


@dataclass(frozen=True)
class DataBlock:
    offset: int
    data: WireArray
    shape: tuple[int, ...]


@dataclass(frozen=True)
class SharedBlock:
    """A block of a ReadData answer in a shared-memory segment (``segment.shape``: the
    block's; ``shape``: the selection's)."""

    offset: int
    segment: Segment
    shape: tuple[int, ...]


@dataclass(frozen=True)
class NodeDescription:
    node: str
    kind: str  # "group" or "dataset"
    shape: DatasetShape | None
    attributes: dict[str, metadata.Value]


@dataclass(frozen=True)
class FileDescription:
    path: str
    size: int
    nodes: list[NodeDescription]


def _cut(shape: tuple[int, ...], itemsize: int, block_bytes: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of ``shape``'s first axis holding about ``block_bytes`` each."""
    row = max(1, math.prod(shape[1:]) * itemsize)
    step = max(1, block_bytes // row)
    return [(lo, min(shape[0], lo + step)) for lo in range(0, shape[0], step)]


def _offset(ranges: list[tuple[int, int]], by: int) -> list[tuple[int, int]]:
    return [(a + by, b + by) for a, b in ranges]


def _claimed(shared: SharedSegments, name: str, is_active: Callable[[], bool]) -> bool:
    """Wait (while the client is there) until it claims segment ``name``; whether it did."""
    wait = 0.0005
    while not shared.claimed(name):
        if not is_active():
            return False
        time.sleep(wait)
        wait = min(wait * 2, 0.05)
    return True


def _size(part: AppendPart) -> int:
    return len(part.data.data) + 8 * len(part.data.strings)


class _StreamTarget:
    """The file an Append stream writes to (named by its first message) and the node its
    messages continue."""

    def __init__(self, service: DatasetService) -> None:
        self._service = service
        self.files: OpenFiles | None = None
        self.repository = self.path = ""
        self._last: NodeRef | None = None

    def ref(self, named: NodeRef) -> NodeRef:
        if self.files is None:
            self.files = self._service._files(named.repository)
            self.files.resolve(named.path)
            self.repository, self.path = named.repository, named.path
        elif named.repository not in ("", self.repository) or named.path not in ("", self.path):
            raise InvalidArgument(
                f"an Append stream writes to one file: start another stream for {named.path!r}",
                reason="INVALID_PATH",
                path=named.path,
            )
        if named.where or named.dataset or self._last is None:
            self._last = NodeRef(self.repository, self.path, named.where, named.dataset)
        return self._last  # neither named: the previous message's dataset


def _shutting_down(what: str) -> Unavailable:
    return Unavailable(
        f"the daemon is stopping: this {what} stream ends; retry against the restarted daemon",
        reason="SHUTTING_DOWN",
    )


def _stamp(f: h5py.File) -> None:
    """A new file's TVB data version (TVB writes it when it creates a file)."""
    f.attrs[metadata.DATA_VERSION_KEY] = metadata.DATA_VERSION


def shape_of(ds: h5py.Dataset) -> DatasetShape:
    string = nodes.is_text(ds.dtype)
    return DatasetShape(
        tuple(ds.shape or ()),
        arrays.STR if string else ds.dtype.str,
        tuple(0 if m is None else m for m in (ds.maxshape or ())),
        tuple(ds.chunks or ()),
        ds.compression or "",
    )


class DatasetService:
    """The datasets of every repository of one registry; thread-safe."""

    def __init__(
        self,
        registry: RepositoryRegistry,
        budget: ResponseBudget,
        settings: DatasetSettings | None = None,
    ) -> None:
        self._registry = registry
        self._budget = budget
        self.settings = settings or DatasetSettings()
        self._handles = HandleLimit(self.settings.max_open_files)
        self._appender = GroupAppender(self.settings.chunk_target_bytes)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._followers: set[FileWatch] = set()
        self.shared: SharedSegments | None = None
        if self.settings.shared_memory_reads:
            self.shared = SharedSegments(self.settings.shared_memory_bytes)
        if self.settings.handle_idle_seconds > 0:
            threading.Thread(target=self._close_idle_handles, name="hdf5-idle", daemon=True).start()

    # -- plumbing -----------------------------------------------------------------------

    @property
    def handle_limit(self) -> HandleLimit:
        """The daemon-wide bound of open HDF5 handles (shared with the metadata indexer)."""
        return self._handles

    def _files(self, repository: str) -> OpenFiles:
        files = open_repository(self._registry, repository).files
        if files.limit is None:
            files.limit = self._handles
            files.structural_copy_bytes = self.settings.structural_copy_bytes
        return files

    def _files_to_write(self, repository: str, incoming: int) -> OpenFiles:
        """The files of a repository about to take ``incoming`` more bytes;
        QUOTA_EXCEEDED when it is at its quota."""
        open_repository(self._registry, repository).usage.admit(incoming)
        return self._files(repository)

    def _close_idle_handles(self) -> None:
        """The one timer of every repository's handles: a file nobody touched for
        ``handle_idle_seconds`` is closed, so it is clean on disk while the daemon runs."""
        idle = self.settings.handle_idle_seconds
        while not self._stopping.wait(max(0.1, idle / 4)):
            self._handles.close_idle(idle)

    def stop(self) -> None:
        """End every Append stream (once what it received is acknowledged) and every
        Follow stream with SHUTTING_DOWN (daemon shutdown: they would otherwise hold it up
        for the whole grace period)."""
        self._stopping.set()
        with self._lock:
            followers = list(self._followers)
        for w in followers:
            w.notify()  # wakes it to see the daemon stopping

    def close(self) -> None:
        """Unlink the shared-memory segments nobody claimed (after the last reply)."""
        if self.shared is not None:
            self.shared.stop()

    # -- writing ------------------------------------------------------------------------

    def store_data(self, ref: NodeRef, data: ArrayLike) -> DatasetShape:
        """TVB store_data: the dataset becomes ``data`` (replacing one that exists; a 0-d
        array makes a scalar dataset). Durable when it returns."""
        value = arrays.decode(data)
        node = ref.node
        files = self._files_to_write(ref.repository, arrays.nbytes(value))
        if node == "/":
            raise InvalidArgument(
                "store_data needs a dataset name: the root group cannot hold data",
                reason="INVALID_PATH",
                path=ref.path,
                node=node,
            )
        string = value.dtype.kind == "O"
        with files.writing(ref.path, create=True, on_create=_stamp) as f:
            nodes.check_parents(f, node, ref.path, ref.repository)
            if nodes.exists(f, node):
                old = nodes.dataset(f, node, ref.path, ref.repository)
                if old.shape == value.shape and (
                    (string and nodes.is_text(old.dtype))
                    or (not string and old.dtype == value.dtype)
                ):
                    if value.ndim == 0:
                        old[()] = value[()]
                    else:
                        old[...] = value
                    return shape_of(old)
                del f[node]
            if string:
                ds = f.create_dataset(node, data=value, dtype=STRING_DTYPE)
            else:
                ds = f.create_dataset(node, data=value, dtype=value.dtype)
            return shape_of(ds)

    def append_data(
        self,
        ref: NodeRef,
        data: ArrayLike,
        grow_dimension: int | None = None,
        close_file: bool = False,
        expected_length: int | None = None,
    ) -> AppendAck:
        """TVB append_data: grow the dataset (creating it) along ``grow_dimension``
        (default the last). Durable when it returns."""
        batch = self._batch(ref, data, grow_dimension, expected_length)
        files = self._files_to_write(ref.repository, arrays.nbytes(batch.data))
        result = self._appender.append(files, ref.path, [batch], _stamp)
        if close_file:
            files.close(ref.path)
        if result.error is not None:
            raise result.error
        return AppendAck(0, batch.node, result.shapes[batch.node])

    @staticmethod
    def _batch(
        ref: NodeRef, data: ArrayLike, grow: int | None, expected_length: int | None
    ) -> AppendBatch:
        node = ref.node
        if node == "/":
            raise InvalidArgument(
                "append_data needs a dataset name: the root group cannot hold data",
                reason="INVALID_PATH",
                path=ref.path,
                node=node,
            )
        return AppendBatch(node, arrays.decode(data), -1 if grow is None else grow, expected_length)

    def append_stream(
        self,
        parts: Iterator[AppendPart],
        working: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> Iterator[AppendAck]:
        """The Append stream: batches received while the previous ones were being written
        are committed together; one ack covers them. A bad batch ends the stream with its
        error, after the ack of those before it. A message naming neither ``where`` nor
        ``dataset`` continues the previous message's dataset. When the daemon stops, what
        was received is committed and acknowledged, then the stream ends with SHUTTING_DOWN
        (the client resumes against the restarted daemon). ``working`` is entered around
        each commit (the stream is busy for its client, not idle)."""
        target = _StreamTarget(self)
        groups = read_ahead(parts, STREAM_QUEUE, STREAM_GROUP_BYTES, _size, self._stopping)
        with closing(groups):  # a stream left early stops its reading thread
            while True:
                try:
                    group = next(groups, None)
                except Stopped:
                    raise _shutting_down("Append") from None
                if group is None:
                    return
                with working():
                    result, batches, sequences, failure = self._commit_group(target, group)
                if result is not None:
                    if result.written:
                        tail = batches[result.written - 1]
                        shape = result.shapes[tail.node]
                        yield AppendAck(sequences[result.written - 1], tail.node, shape)
                    if result.error is not None:
                        raise result.error
                if failure is not None:
                    raise failure

    def _commit_group(
        self, target: _StreamTarget, group: list[AppendPart]
    ) -> tuple[AppendResult | None, list[AppendBatch], list[int], HoardError | None]:
        """Write one group of an Append stream: the result (None: nothing to write), its
        batches and sequences, and the error of the message that ended the group early."""
        batches: list[AppendBatch] = []
        sequences: list[int] = []
        failure: HoardError | None = None
        for part in group:
            try:
                ref = target.ref(part.node)
                batches.append(
                    self._batch(ref, part.data, part.grow_dimension, part.expected_length)
                )
            except HoardError as exc:
                failure = exc
                break
            sequences.append(part.sequence)
        if not batches:
            return None, batches, sequences, failure
        assert target.files is not None
        try:
            self._files_to_write(target.repository, sum(arrays.nbytes(b.data) for b in batches))
        except HoardError as exc:
            return None, [], [], exc
        result = self._appender.append(target.files, target.path, batches, _stamp)
        return result, batches, sequences, failure

    # -- reading ------------------------------------------------------------------------

    def get_data(self, ref: NodeRef, items: Sequence[Item] = ()) -> WireArray:
        """TVB get_data: the selection in one reply; REPLY_TOO_LARGE above max_reply_bytes."""
        limit = self.settings.max_reply_bytes
        files = self._files(ref.repository)
        with files.reading(ref.path) as f:
            ds = nodes.dataset(f, ref.node, ref.path, ref.repository)
            dtype = ds.dtype  # each h5py property is a library call: ask once
            text = nodes.is_text(dtype)
            sel = Selection.parse(items, tuple(ds.shape or ()))
            if sel.count * (1 if text else dtype.itemsize) > limit:
                raise self._too_large(ref, sel.count * (1 if text else dtype.itemsize))
            value = sel.read(ds, dtype)
        if text and arrays.nbytes(value) > limit:  # numbers: checked exactly above
            raise self._too_large(ref, arrays.nbytes(value))
        return arrays.encode(value)

    def _too_large(self, ref: NodeRef, size: int) -> HoardError:
        return LimitExceeded(
            f"the selection holds {size} bytes, more than one reply may carry "
            f"({self.settings.max_reply_bytes}, max_reply_bytes): read it with ReadData (the "
            "SDK's streaming read) or select less",
            reason="REPLY_TOO_LARGE",
            path=ref.path,
            node=ref.node,
            limit=self.settings.max_reply_bytes,
        )

    def read_data(
        self, ref: NodeRef, items: Sequence[Item] = ()
    ) -> Iterator[tuple[DataBlock, int]]:
        """The selection in blocks along its result's first axis, each with the response
        budget it reserved (released by the caller once sent)."""
        files = self._files(ref.repository)
        with files.reading(ref.path) as f:
            ds = nodes.dataset(f, ref.node, ref.path, ref.repository)
            sel = Selection.parse(items, tuple(ds.shape or ()))
            text = nodes.is_text(ds.dtype)
            itemsize = 64 if text else ds.dtype.itemsize
        shape = sel.shape
        block_bytes = BLOCK_BYTES if text else READ_BLOCK_BYTES
        blocks = _cut(shape, itemsize, block_bytes) or [(0, 0)] if shape else [(0, 1)]
        return self._blocks(files, ref, sel, blocks, shape)

    def read_shared(
        self,
        ref: NodeRef,
        items: Sequence[Item] = (),
        block_bytes: int = 0,
        is_active: Callable[[], bool] = lambda: True,
    ) -> Iterator[SharedBlock | tuple[DataBlock, int]] | None:
        """The selection for a client on this host, in shared-memory segments of about
        ``block_bytes`` each (0: one segment); None when it goes by the stream instead
        (shared memory off or unavailable, text, a small selection).

        At most two segments wait for their client at once: the next is written once the
        one before the last is claimed (so blocks follow their consumer, freed as it goes).
        Segments are held while the stream runs and released when it ends; the rest is
        streamed (``(DataBlock, reserved)`` as ``read_data`` gives) when a segment would take
        the unclaimed bytes past the bound or the client stops claiming."""
        shared = self.shared
        if shared is None or not shared.available:
            return None
        files = self._files(ref.repository)
        with files.reading(ref.path) as f:
            ds = nodes.dataset(f, ref.node, ref.path, ref.repository)
            sel = Selection.parse(items, tuple(ds.shape or ()))
            if nodes.is_text(ds.dtype) or not sel.shape:
                return None
            dtype = ds.dtype
        if sel.count * dtype.itemsize < SHARED_MIN_BYTES:
            return None
        shape = sel.shape
        blocks = _cut(shape, dtype.itemsize, block_bytes) if block_bytes else [(0, shape[0])]
        return self._shared_blocks(shared, files, ref, sel, dtype, blocks, is_active)

    def _shared_blocks(
        self,
        shared: SharedSegments,
        files: OpenFiles,
        ref: NodeRef,
        sel: Selection,
        dtype: np.dtype,
        blocks: list[tuple[int, int]],
        is_active: Callable[[], bool],
    ) -> Iterator[SharedBlock | tuple[DataBlock, int]]:
        shape = sel.shape
        little = dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype
        row = math.prod(shape[1:])
        rows = max(1, SHARED_PIECE_BYTES // max(1, row * dtype.itemsize))
        # two read buffers, reused in turn: each piece is read while the previous is written
        buffers = [np.empty(min(rows, shape[0]) * row, little) for _ in range(2)]

        def pieces(lo: int, hi: int) -> Iterator[np.ndarray]:
            turn = 0
            for start_fill, stop_fill in _cut(
                (hi - lo, *shape[1:]), dtype.itemsize, SHARED_FILL_BYTES
            ):
                with files.reading(ref.path) as f:
                    ds = nodes.dataset(f, ref.node, ref.path, ref.repository)
                    for start in range(lo + start_fill, lo + stop_fill, rows):
                        stop = min(lo + stop_fill, start + rows)
                        out = buffers[turn][: (stop - start) * row]
                        sel.block(start, stop).read_into(
                            ds, out.reshape((stop - start, *shape[1:]))
                        )
                        turn = 1 - turn
                        yield out

        sent: list[str] = []
        try:
            for n, (lo, hi) in enumerate(blocks):
                if len(sent) >= 2 and not _claimed(shared, sent[-2], is_active):
                    return  # the client left or stopped claiming
                segment = shared.write(
                    (hi - lo, *shape[1:]), little, functools.partial(pieces, lo, hi)
                )
                if segment is None:  # over the bound: the rest by the stream
                    rest = [
                        (a, b)
                        for start, stop in blocks[n:]
                        for a, b in _offset(
                            _cut((stop - start, *shape[1:]), dtype.itemsize, READ_BLOCK_BYTES),
                            start,
                        )
                    ]
                    yield from self._blocks(files, ref, sel, rest, shape)
                    return
                sent.append(segment.name)
                yield SharedBlock(lo, segment, shape)
            for name in sent[-2:]:  # the stream ends once its client has every segment
                if not _claimed(shared, name, is_active):
                    return
        finally:
            shared.release(sent)

    def _blocks(
        self,
        files: OpenFiles,
        ref: NodeRef,
        sel: Selection,
        blocks: list[tuple[int, int]],
        shape: tuple[int, ...],
    ) -> Iterator[tuple[DataBlock, int]]:
        for lo, hi in blocks:
            reserved = self._budget.acquire(READ_BLOCK_BYTES)
            try:
                with files.reading(ref.path) as f:
                    ds = nodes.dataset(f, ref.node, ref.path, ref.repository)
                    value = (sel.block(lo, hi) if shape else sel).read(ds)
            except BaseException:
                self._budget.release(reserved)
                raise
            yield DataBlock(lo, arrays.encode(value), shape), reserved

    def follow(
        self,
        ref: NodeRef,
        from_row: int = 0,
        grow_dimension: int | None = None,
        is_active: Callable[[], bool] = lambda: True,
    ) -> Iterator[tuple[DataBlock, int]]:
        """Rows from ``from_row`` along the grow dimension, then new ones as writers
        acknowledge them, until the client leaves, the file or dataset goes, the repository
        closes (the stream ends) or the daemon stops (SHUTTING_DOWN: follow again from the
        next row once it is back). Waiting for rows costs no polling: writers notify."""
        files = self._files(ref.repository)
        node = ref.node
        with files.reading(ref.path) as f:  # a missing file or dataset is an error at once
            ds = nodes.dataset(f, node, ref.path, ref.repository)
            ndim = ds.ndim
        grow = -1 if grow_dimension is None else grow_dimension
        if ndim == 0 or not -ndim <= grow < ndim:
            raise InvalidArgument(
                f"grow_dimension {grow} does not exist in {ndim}-d dataset {node!r}",
                reason="INVALID_SELECTION",
                path=ref.path,
                node=node,
            )
        return self._follow(files, ref, node, from_row, grow % ndim, is_active)

    def _follow(
        self,
        files: OpenFiles,
        ref: NodeRef,
        node: str,
        row: int,
        grow: int,
        is_active: Callable[[], bool],
    ) -> Iterator[tuple[DataBlock, int]]:
        with files.watch(ref.path) as watch:
            with self._lock:
                self._followers.add(watch)
            metrics.FOLLOW_STREAMS.inc()
            try:
                caught_up = None  # the generation at which a read found no new row
                while is_active():
                    if self._stopping.is_set():
                        raise _shutting_down("Follow")
                    if watch.closed:
                        return  # the repository closed (erased): the stream ends
                    seen = watch.generation  # before reading: a later append wakes us
                    if seen == caught_up:
                        # Nothing written since: no read (the file's handle may be closed
                        # for idleness meanwhile); the wake-ups only check the client.
                        watch.wait(seen, FOLLOW_WAKE)
                        continue
                    reserved = self._budget.acquire(BLOCK_BYTES)
                    try:
                        with files.reading(ref.path) as f:
                            ds = nodes.dataset(f, node, ref.path, ref.repository)
                            shape = tuple(ds.shape)
                            value = None
                            if row < shape[grow]:
                                per_row = math.prod(shape) // max(1, shape[grow])
                                itemsize = ds.dtype.itemsize if ds.dtype.kind != "O" else 64
                                n = max(1, BLOCK_BYTES // max(1, per_row * itemsize))
                                key = [slice(None)] * len(shape)
                                key[grow] = slice(row, min(shape[grow], row + n))
                                value = Selection.parse(key, shape).read(ds)
                    except NotFound:
                        self._budget.release(reserved)
                        return  # the file or the dataset is gone: the stream ends
                    except BaseException:
                        self._budget.release(reserved)
                        raise
                    if value is None:
                        self._budget.release(reserved)
                        caught_up = seen
                        watch.wait(seen, FOLLOW_WAKE)
                        continue
                    yield DataBlock(row, arrays.encode(value), shape), reserved
                    row += value.shape[grow]
            finally:
                metrics.FOLLOW_STREAMS.dec()
                with self._lock:
                    self._followers.discard(watch)

    def get_data_shape(self, ref: NodeRef) -> DatasetShape:
        with self._files(ref.repository).reading(ref.path) as f:
            return shape_of(nodes.dataset(f, ref.node, ref.path, ref.repository))

    # -- metadata -----------------------------------------------------------------------

    def set_metadata(
        self, ref: NodeRef, values: Mapping[str, metadata.Value], tvb_specific: bool = True
    ) -> None:
        """Attributes of the root, a group or a dataset. A missing node is NOT_FOUND (never
        created); the root's file is created if missing, as TVB does."""
        stored = {
            metadata.stored_key(k, tvb_specific): metadata.encode(v) for k, v in values.items()
        }
        node = ref.node
        files = self._files(ref.repository)
        with files.writing(ref.path, create=node == "/", on_create=_stamp) as f:
            target = nodes.lookup(f, node, ref.path, ref.repository)
            for name, value in stored.items():
                metadata.write(target.attrs, name, value)

    def get_metadata(self, ref: NodeRef) -> dict[str, metadata.Value]:
        with self._files(ref.repository).reading(ref.path) as f:
            target = nodes.lookup(f, ref.node, ref.path, ref.repository)
            return {metadata.shown_key(k): metadata.decode(v) for k, v in target.attrs.items()}

    def remove_metadata(
        self, ref: NodeRef, key: str, tvb_specific: bool = True, check_existence: bool = False
    ) -> bool:
        """Remove one key; whether it was there. A missing key is METADATA_NOT_FOUND when
        ``check_existence``, otherwise nothing to do."""
        name = metadata.stored_key(key, tvb_specific)
        files = self._files(ref.repository)
        with files.reading(ref.path) as f:
            target = nodes.lookup(f, ref.node, ref.path, ref.repository)
            present = name in target.attrs
        if not present:
            if check_existence:
                raise NotFound(
                    f"{ref.node!r} in {ref.path!r} has no metadata {key!r}",
                    reason="METADATA_NOT_FOUND",
                    path=ref.path,
                    node=ref.node,
                    key=key,
                )
            return False
        with files.writing(ref.path) as f:
            target = nodes.lookup(f, ref.node, ref.path, ref.repository)
            if name not in target.attrs:
                return False
            del target.attrs[name]
            return True

    # -- files and nodes ----------------------------------------------------------------

    def remove_data(self, ref: NodeRef) -> None:
        """Delete a dataset (or group) from the file."""
        node = ref.node
        files = self._files(ref.repository)
        if node == "/":
            raise InvalidArgument(
                "remove_data needs a dataset name: the root group cannot be removed (delete "
                "the file instead)",
                reason="INVALID_PATH",
                path=ref.path,
                node=node,
            )
        with files.writing(ref.path) as f:
            nodes.lookup(f, node, ref.path, ref.repository)
            del f[node]

    def is_valid_file(self, ref: NodeRef) -> bool:
        """Whether the file exists and is HDF5; never an error for a missing file."""
        files = self._files(ref.repository)
        full = files.resolve(ref.path)
        try:
            return os.path.isfile(full) and bool(h5py.is_hdf5(full))
        except (OSError, RuntimeError):
            return False

    def close_file(self, ref: NodeRef) -> None:
        self._files(ref.repository).close(ref.path)

    def describe(self, ref: NodeRef) -> FileDescription:
        """The file's tree: parents before children, in name order. Attributes keep the
        names they have in the file (``TVB_Data_version``, not GetMetadata's ``Data_version``):
        a description shows the file as h5py would."""
        files = self._files(ref.repository)
        with files.reading(ref.path) as f:
            found: list[tuple[str, h5py.Group | h5py.Dataset]] = [("/", f)]

            def visit(name: str, obj: h5py.Group | h5py.Dataset) -> None:
                found.append(("/" + name, obj))

            f.visititems(visit)
            found.sort(key=lambda item: [p for p in item[0].split("/") if p])
            described = [
                NodeDescription(
                    name,
                    "dataset" if isinstance(obj, h5py.Dataset) else "group",
                    shape_of(obj) if isinstance(obj, h5py.Dataset) else None,
                    {k: metadata.decode(v) for k, v in obj.attrs.items()},
                )
                for name, obj in found
            ]
            size = os.path.getsize(files.resolve(ref.path))
        return FileDescription(ref.path, size, described)
