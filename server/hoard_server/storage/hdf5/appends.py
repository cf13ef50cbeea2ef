"""Appends with a group commit per file.

Callers (a unary AppendData, or the batches a stream has received meanwhile) hand their
batches to ``GroupAppender.append``. Per file, one caller at a time is the leader: it takes
every batch waiting for that file, checks them in order, and writes them with one resize and
one write per dataset, one flush and one fsync (``OpenFiles.writing``), then wakes the
callers whose batches it wrote. Followers only wait; a leader hands over to the next waiter
when its own batches are done, so no caller leads forever. Writers to different files never
wait for each other.

Each caller's batches are checked as a prefix: the batches before the first bad one are
written, the bad one and those after it are not, and the caller gets the error. A batch
failing never changes the file.

Datasets are created (explicit time-major chunks, unlimited along the grow dimension) by a
round outside SWMR mode; every other round runs in SWMR mode.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import h5py
import numpy as np

from hoard_server.errors import FailedPrecondition, HoardError, InvalidArgument, NotFound
from hoard_server.observe import metrics
from hoard_server.storage.hdf5 import nodes
from hoard_server.storage.hdf5.chunking import TARGET_BYTES, append_chunks
from hoard_server.storage.hdf5.files import OpenFiles

STRING_DTYPE = h5py.string_dtype("utf-8")
_STRING_ITEMSIZE = 32  # a guess at a variable-length string's bytes, for chunk sizing


@dataclass(frozen=True)
class AppendBatch:
    """Rows for one dataset: ``data`` grows ``node`` along axis ``grow`` (Python-style)."""

    node: str
    data: np.ndarray  # strings as an object array of str
    grow: int = -1
    expected_length: int | None = None


@dataclass
class AppendResult:
    """What became of one caller's batches: how many were written (a prefix), the shape of
    each dataset they touched afterwards, and the error that stopped the rest, if any."""

    written: int = 0
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    error: BaseException | None = None


@dataclass
class _State:
    """A dataset as a round sees it: its shape so far and what a batch must match."""

    shape: list[int]
    dtype: np.dtype
    maxshape: tuple[int | None, ...]
    string: bool
    grow: int
    create: bool = False  # made by this round


class _NeedsCreation(Exception):
    """A round in SWMR mode met a dataset to create: redo it outside SWMR mode."""


@dataclass
class _Ticket:
    batches: list[AppendBatch]
    path: str
    event: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    result: AppendResult | None = None


@dataclass
class _Queue:
    pending: list[_Ticket] = field(default_factory=list)
    leader: bool = False


def _is_string(dtype: np.dtype) -> bool:
    return dtype.kind in "OU" or nodes.is_text(dtype)


def _count_appended(repository: str, batches: int, rows: int, data: np.ndarray) -> None:
    size = data.nbytes if data.dtype.kind != "O" else sum(len(s) for s in data.flat)
    metrics.APPEND_BATCHES.labels(repository).inc(batches)
    metrics.APPEND_ROWS.labels(repository).inc(rows)
    metrics.APPEND_BYTES.labels(repository).inc(size)


class GroupAppender:
    """The group commit of appends, for every file of every repository; thread-safe."""

    def __init__(self, chunk_target_bytes: int = TARGET_BYTES) -> None:
        self.chunk_target_bytes = chunk_target_bytes
        self._lock = threading.Lock()
        self._queues: dict[tuple[int, str], _Queue] = {}
        self.rounds = 0  # group commits so far (each one flush and one fsync)

    def waiting(self, files: OpenFiles, path: str) -> int:
        """Callers waiting for the file's current round to end (for tests and metrics)."""
        with self._lock:
            queue = self._queues.get((id(files), files.resolve(path)))
            return len(queue.pending) if queue else 0

    def append(
        self,
        files: OpenFiles,
        path: str,
        batches: list[AppendBatch],
        on_create: Callable[[h5py.File], None] | None = None,
    ) -> AppendResult:
        """Write ``batches`` (in order) to the file at ``path``, creating it and its
        datasets as needed; durable when this returns. Never raises for a bad batch: the
        result says how far it got and why it stopped."""
        key = (id(files), files.resolve(path))
        ticket = _Ticket(batches, path)
        with self._lock:
            queue = self._queues.setdefault(key, _Queue())
            queue.pending.append(ticket)
            if not queue.leader:
                queue.leader = ticket.lead = True
        while not ticket.lead:
            ticket.event.wait()
            ticket.event.clear()
            if ticket.result is not None:
                return ticket.result
        # the leader: write every batch waiting, then hand over (whatever happened)
        with self._lock:
            round_, queue.pending = queue.pending, []
            self.rounds += 1
        metrics.APPEND_COMMITS.labels(files.repository or "").inc()
        try:
            self._round(files, path, round_, on_create)
        finally:
            for t in round_:
                if t is not ticket:
                    t.event.set()
            with self._lock:
                if queue.pending:
                    nxt = queue.pending[0]
                    nxt.lead = True
                    nxt.event.set()
                else:
                    queue.leader = False
                    self._queues.pop(key, None)
        assert ticket.result is not None
        return ticket.result

    def _round(
        self,
        files: OpenFiles,
        path: str,
        tickets: list[_Ticket],
        on_create: Callable[[h5py.File], None] | None,
    ) -> None:
        try:
            try:
                with files.writing(path, swmr=True) as f:
                    self._write(f, tickets, creating=False, path=path, repo=files.repository)
            except (_NeedsCreation, NotFound) as exc:
                if isinstance(exc, NotFound) and exc.reason != "FILE_NOT_FOUND":
                    raise
                with files.writing(path, create=True, swmr=False, on_create=on_create) as f:
                    self._write(f, tickets, creating=True, path=path, repo=files.repository)
        except BaseException as exc:  # the file could not be written: every caller is told
            for t in tickets:
                if t.result is None or t.result.error is None:
                    t.result = AppendResult(error=exc)
            if not isinstance(exc, Exception):
                raise

    def _write(
        self, f: h5py.File, tickets: list[_Ticket], creating: bool, path: str, repo: str | None
    ) -> None:
        """Check every ticket's batches against the datasets (nothing written yet), then
        write what passed: one resize and one write per dataset."""
        states: dict[str, _State | None] = {}
        accepted: dict[str, list[np.ndarray]] = {}
        for t in tickets:
            result = AppendResult()
            for batch in t.batches:
                try:
                    if batch.node not in states:
                        states[batch.node] = self._state(f, batch.node, path, repo)
                    state = self._check(batch, states[batch.node], path, repo)
                except HoardError as exc:
                    result.error = exc
                    break
                if state.create and not creating:
                    raise _NeedsCreation()
                states[batch.node] = state
                accepted.setdefault(batch.node, []).append(batch.data)
                state.shape[state.grow] += batch.data.shape[state.grow]
                result.written += 1
                result.shapes[batch.node] = tuple(state.shape)
            t.result = result
        for node, parts in accepted.items():
            final = states[node]
            assert final is not None
            grow = final.grow
            data = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=grow)
            if final.create:
                self._create(f, node, final, data)
            ds = f[node]
            end = ds.shape[grow]
            added = data.shape[grow]
            if added == 0:
                continue
            new_shape = list(ds.shape)
            new_shape[grow] = end + added
            ds.resize(tuple(new_shape))
            where = [slice(None)] * ds.ndim
            where[grow] = slice(end, end + added)
            ds[tuple(where)] = data
            _count_appended(repo or "", len(parts), added, data)

    def _create(self, f: h5py.File, node: str, state: _State, data: np.ndarray) -> None:
        shape = list(data.shape)
        shape[state.grow] = 0
        maxshape: list[int | None] = list(data.shape)
        maxshape[state.grow] = None
        itemsize = _STRING_ITEMSIZE if state.string else state.dtype.itemsize
        chunks = append_chunks(tuple(data.shape), state.grow, itemsize, self.chunk_target_bytes)
        f.create_dataset(
            node,
            shape=tuple(shape),
            maxshape=tuple(maxshape),
            dtype=STRING_DTYPE if state.string else state.dtype,
            chunks=chunks,
        )

    @staticmethod
    def _state(f: h5py.File, node: str, path: str, repo: str | None) -> _State | None:
        if not nodes.exists(f, node):
            nodes.check_parents(f, node, path, repo)
            return None
        ds = nodes.dataset(f, node, path, repo)
        return _State(
            list(ds.shape),
            ds.dtype,
            ds.maxshape or (),
            nodes.is_text(ds.dtype),
            grow=0,
        )

    @staticmethod
    def _check(batch: AppendBatch, state: _State | None, path: str, repo: str | None) -> _State:
        """The dataset's state once ``batch`` is added (not yet counted), or the error."""
        data = batch.data

        def refuse(cls: type[HoardError], message: str, reason: str) -> HoardError:
            return cls(message, reason=reason, repository=repo, path=path, node=batch.node)

        ndim = data.ndim
        if ndim == 0:
            raise refuse(
                InvalidArgument,
                f"cannot append a 0-d array to {batch.node!r}: append rows (at least 1-d)",
                "SHAPE_MISMATCH",
            )
        if not -ndim <= batch.grow < ndim:
            raise refuse(
                InvalidArgument,
                f"grow_dimension {batch.grow} is out of range for {ndim}-d data",
                "SHAPE_MISMATCH",
            )
        grow = batch.grow % ndim
        if state is not None and len(state.shape) != ndim:
            raise refuse(
                InvalidArgument,
                f"cannot append {ndim}-d data to {len(state.shape)}-d dataset {batch.node!r}",
                "SHAPE_MISMATCH",
            )
        length = 0 if state is None else state.shape[grow]
        if batch.expected_length is not None and batch.expected_length != length:
            raise refuse(
                FailedPrecondition,
                f"{batch.node!r} has {length} rows along dimension {grow}, the batch expected "
                f"{batch.expected_length}: resume from the length the dataset has",
                "LENGTH_MISMATCH",
            )
        if state is None:
            if 0 in (d for i, d in enumerate(data.shape) if i != grow):
                raise refuse(
                    InvalidArgument,
                    f"cannot create {batch.node!r} from rows of shape {tuple(data.shape)}: "
                    f"every dimension but the growing one ({grow}) must be at least 1",
                    "SHAPE_MISMATCH",
                )
            shape = list(data.shape)
            shape[grow] = 0
            maxshape: list[int | None] = list(data.shape)
            maxshape[grow] = None
            return _State(shape, data.dtype, tuple(maxshape), _is_string(data.dtype), grow, True)
        others = [d for i, d in enumerate(state.shape) if i != grow]
        given = [d for i, d in enumerate(data.shape) if i != grow]
        if others != given:
            raise refuse(
                InvalidArgument,
                f"rows of shape {tuple(data.shape)} do not fit dataset {batch.node!r} of shape "
                f"{tuple(state.shape)} growing along dimension {grow}: every other dimension "
                "must match",
                "SHAPE_MISMATCH",
            )
        if not state.maxshape or state.maxshape[grow] is not None:
            raise refuse(
                InvalidArgument,
                f"dataset {batch.node!r} has a fixed size along dimension {grow} (it was "
                "stored whole, not appended to): append to a dataset made by appending",
                "SHAPE_MISMATCH",
            )
        if state.string != _is_string(data.dtype) or (
            not state.string and not np.can_cast(data.dtype, state.dtype, "safe")
        ):
            shown = "str" if state.string else state.dtype.str
            raise refuse(
                InvalidArgument,
                f"cannot append {data.dtype.str if data.dtype.kind != 'O' else 'str'} data to "
                f"dataset {batch.node!r} of dtype {shown} without losing information",
                "DTYPE_MISMATCH",
            )
        state.grow = grow
        return state
