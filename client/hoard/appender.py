"""The batching appender: many small appends to one dataset on one ``Append`` stream.

    with client.datasets("default").appender("run/x.h5", "data", grow_dimension=0) as app:
        for row in rows:
            app.append_row(row)
        print(app.sent, app.acknowledged)

Blocks given to :meth:`Appender.append` are batched (up to ``max_rows`` rows or ``max_bytes``
bytes, or whatever arrived within ``max_delay`` seconds of the first) and sent on a
bidirectional stream that gRPC feeds from its own thread; a background thread reads the acks.
``acknowledged`` counts the rows the daemon has made durable, ``sent`` those handed to the
stream. A failure of the stream is raised by the next call on the appender.

Backpressure: the rows the appender holds (queued, or sent and not yet acknowledged) are
bounded by ``max_pending_bytes``; ``append`` waits for room, so a producer faster than the
daemon (or one appending while the daemon is down) runs at the daemon's pace instead of
growing the client's memory. A block larger than the bound is taken alone, once nothing
else is held.

Resuming: when the connection is lost (UNAVAILABLE), the appender asks the daemon for the
dataset's length, drops the rows that did land, and sends the rest on a new stream with
``expected_length`` on every batch, so no row is written twice or lost.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from hoard.arrays import to_array
from hoard.errors import (
    DatasetFileNotFoundError,
    DatasetNotFoundError,
    DeadlineExceededError,
    HoardError,
    UnavailableError,
)
from hoard.v1 import datasets_pb2 as pb

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hoard.datasets import Datasets
    from hoard.transport import BidiCall

__all__ = ["Appender", "AppenderFullError"]

MAX_PENDING_BYTES = 64 << 20


class AppenderFullError(HoardError, TimeoutError):
    """``append`` waited its ``timeout`` for room under ``max_pending_bytes`` in vain: the
    daemon has not acknowledged rows fast enough (or is down and being waited for)."""


@dataclass
class _Batch:
    sequence: int
    data: np.ndarray
    start: int  # rows of this appender before the batch
    rows: int


class Appender:
    """Appends to ``dataset`` of file ``path`` along ``grow_dimension`` (see the module
    docstring). Use it as a context manager, or call :meth:`close`.

    A batch leaves at ``max_rows`` rows, ``max_bytes`` bytes or ``max_delay`` seconds after
    its first row, whichever comes first. With nothing to send and nothing unacknowledged
    for ``idle_close`` seconds the stream is let go (the next append opens another). A lost
    connection is resumed for up to ``resume_timeout`` seconds. At most
    ``max_pending_bytes`` of rows are held (queued or unacknowledged): :meth:`append` waits
    for room."""

    def __init__(
        self,
        datasets: Datasets,
        path: str,
        dataset: str,
        *,
        grow_dimension: int = -1,
        where: str = "/",
        max_rows: int = 10_000,
        max_bytes: int = 1 << 20,
        max_delay: float = 0.005,
        resume_timeout: float = 30.0,
        idle_close: float = 2.0,
        max_pending_bytes: int = MAX_PENDING_BYTES,
    ) -> None:
        if max_pending_bytes <= 0:
            raise ValueError(f"max_pending_bytes must be positive, not {max_pending_bytes}")
        self.datasets = datasets
        self.path = path
        self.dataset = dataset
        self.where = where
        self.grow_dimension = grow_dimension
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.max_delay = max_delay
        self.idle_close = idle_close
        self.max_pending_bytes = max_pending_bytes
        self._policy = datasets.transport.policy
        self._resume_timeout = resume_timeout if self._policy.max_attempts > 1 else 0.0
        self._cond = threading.Condition()
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._pending_since = 0.0
        self._unacked: collections.deque[_Batch] = collections.deque()
        self._unacked_bytes = 0
        self._waiting_for_room = 0  # producers blocked in append: what is queued is due
        self._sequence = 0
        self._appended = 0  # rows given to append()
        self._sent = 0
        self._acknowledged = 0
        self._axis: int | None = None
        self._ndim: int | None = None
        self._base: int | None = None  # the dataset's length before our first row
        self._flushing = False
        self._closing = False
        self._closed = False
        self._generation = 0
        self._error: BaseException | None = None
        self._reader: threading.Thread | None = None
        self._streaming = False
        self.shape: tuple[int, ...] | None = None  # the dataset's, after the last ack

    # -- public ------------------------------------------------------------------------------

    @property
    def acknowledged(self) -> int:
        """Rows the daemon has acknowledged as durable."""
        return self._acknowledged

    @property
    def sent(self) -> int:
        """Rows handed to the stream (acknowledged or in flight)."""
        return self._sent

    @property
    def appended(self) -> int:
        """Rows given to :meth:`append` so far."""
        return self._appended

    @property
    def pending_bytes(self) -> int:
        """Bytes of rows held: queued, or sent and not yet acknowledged (at most
        ``max_pending_bytes``, or one larger block alone)."""
        return self._pending_bytes + self._unacked_bytes

    def append(self, data: Any, *, timeout: float | None = None) -> None:
        """Queue a block of rows (same number of dimensions as the dataset) to append along
        the grow dimension. Returns once the block is queued: at once while the appender
        holds less than ``max_pending_bytes``, else when acks have made room; after
        ``timeout`` seconds without room (None: no limit) raises :class:`AppenderFullError`.
        Raises the stream's error, if it failed."""
        block = np.asarray(data)
        if block.ndim == 0:
            raise ValueError("append takes a block of rows; use append_row for one row")
        with self._cond:
            self._raise_if_failed()
            if self._closed or self._closing:
                raise HoardError("this appender is closed")
            if self._ndim is None:
                self._learn_dataset(block.ndim)
            if block.ndim != self._ndim:
                hint = " (one row? use append_row)" if block.ndim + 1 == self._ndim else ""
                raise ValueError(
                    f"a block of {block.ndim} dimensions cannot grow a {self._ndim}-d dataset{hint}"
                )
            assert self._axis is not None
            rows = block.shape[self._axis]
            if rows == 0:
                return
            self._wait_for_room(block.nbytes, timeout)
            if not self._streaming:
                self._open_stream(resumed=False)
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append(block)
            self._pending_rows += rows
            self._pending_bytes += block.nbytes
            self._appended += rows
            self._cond.notify_all()

    def append_row(self, row: Any, *, timeout: float | None = None) -> None:
        """Queue one row (one dimension fewer than the dataset); see :meth:`append`."""
        row = np.asarray(row)
        axis = self._axis
        if axis is None:
            axis = self.grow_dimension
            if axis < 0:
                axis += row.ndim + 1
        self.append(np.expand_dims(row, axis), timeout=timeout)

    def flush(self) -> None:
        """Send what is queued and wait until every row appended so far is acknowledged."""
        with self._cond:
            self._flushing = True
            self._cond.notify_all()
            try:
                while self._error is None and self._acknowledged < self._appended:
                    self._cond.wait()
            finally:
                self._flushing = False
            self._raise_if_failed()

    def close(self) -> None:
        """Flush, end the stream and wait for its thread. Raises the stream's error, if any."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
                reader = self._reader
            if reader is not None:
                reader.join()
            self._closed = True
        with self._cond:
            self._raise_if_failed()

    def __enter__(self) -> Appender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        # the body's exception wins; still make what was appended durable if we can
        with contextlib.suppress(HoardError):
            self.close()

    def __repr__(self) -> str:
        return (
            f"<hoard.Appender {self.path}:{self.where.rstrip('/')}/{self.dataset} "
            f"sent={self._sent} acknowledged={self._acknowledged}>"
        )

    # -- the stream ----------------------------------------------------------------------------

    def _wait_for_room(self, nbytes: int, timeout: float | None) -> None:
        # Lock held. Room: the block fits under the bound, or nothing is held (a block
        # larger than the bound goes alone). Acks, a resumed stream dropping what landed,
        # and failures notify.
        deadline = None if timeout is None else time.monotonic() + timeout
        self._waiting_for_room += 1
        try:
            while True:
                self._raise_if_failed()
                if self._closed or self._closing:
                    raise HoardError("this appender is closed")
                held = self.pending_bytes
                if held == 0 or held + nbytes <= self.max_pending_bytes:
                    return
                self._cond.notify_all()  # the sender: what is queued is due now
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise AppenderFullError(
                        f"no room for {nbytes} bytes in the appender to {self.path} within "
                        f"{timeout:g}s: {held} bytes are held (max_pending_bytes="
                        f"{self.max_pending_bytes}), {self._sent - self._acknowledged} rows "
                        "await the daemon's ack"
                    )
                self._cond.wait(left)
        finally:
            self._waiting_for_room -= 1

    def _learn_dataset(self, ndim: int) -> None:
        # At the first append (lock held): the dataset's dimensions (the block's for a new
        # one), the grow axis, and the length we start from (for resuming).
        shape = self._dataset_shape()
        ndim = len(shape) if shape is not None else ndim
        axis = self.grow_dimension + ndim if self.grow_dimension < 0 else self.grow_dimension
        if not 0 <= axis < ndim:
            raise ValueError(
                f"grow_dimension {self.grow_dimension} does not exist in {ndim} dimensions"
            )
        self._ndim, self._axis = ndim, axis
        self._base = shape[axis] if shape is not None else 0

    def _dataset_shape(self) -> tuple[int, ...] | None:
        try:
            return self.datasets.get_data_shape(self.path, self.dataset, where=self.where).shape
        except (DatasetNotFoundError, DatasetFileNotFoundError):
            return None

    def _current_length(self) -> int:
        assert self._axis is not None
        shape = self._dataset_shape()
        return shape[self._axis] if shape is not None and len(shape) > self._axis else 0

    def _open_stream(self, *, resumed: bool) -> None:
        self._streaming = True
        self._generation += 1
        generation = self._generation
        resend = list(self._unacked)
        call = self.datasets.append_stream(self._requests(generation, resend, resumed))
        self._reader = threading.Thread(
            target=self._read_acks, args=(call, generation), name="hoard-appender", daemon=True
        )
        self._reader.start()

    def _message(self, batch: _Batch, resumed: bool) -> pb.AppendRequest:
        request = pb.AppendRequest(
            node=self.datasets.node(self.path, self.dataset, self.where),
            data=to_array(batch.data),
            grow_dimension=self.grow_dimension,
            sequence=batch.sequence,
        )
        if resumed and self._base is not None:
            request.expected_length = self._base + batch.start
        return request

    def _requests(
        self, generation: int, resend: list[_Batch], resumed: bool
    ) -> Iterator[pb.AppendRequest]:
        # Runs in gRPC's thread. Ends (half-closing the stream) when the appender closes or
        # this stream has been replaced.
        for old in resend:
            yield self._message(old, resumed)
        while True:
            with self._cond:
                batch = self._next_batch(generation)
            if batch is None:
                return
            yield self._message(batch, resumed)

    def _next_batch(self, generation: int) -> _Batch | None:
        while True:
            if generation != self._generation or self._error is not None:
                return None
            if self._pending:
                waited = time.monotonic() - self._pending_since
                due = (
                    self._flushing
                    or self._closing
                    or self._waiting_for_room > 0
                    or self._pending_rows >= self.max_rows
                    or self._pending_bytes >= self.max_bytes
                    or waited >= self.max_delay
                )
                if due:
                    return self._take_batch()
                self._cond.wait(self.max_delay - waited)
            elif self._closing:
                return None
            elif self._unacked:
                self._cond.wait()  # acks to come
            else:
                # Nothing to send, nothing owed: after idle_close seconds let the stream go
                # (its append slot, the daemon's idle watchdog); the next append reopens one.
                timed_out = not self._cond.wait(self.idle_close)
                if timed_out and not self._pending and not self._unacked:
                    if generation == self._generation:
                        self._streaming = False
                    return None

    def _take_batch(self) -> _Batch:
        assert self._axis is not None
        # The queued blocks up to max_rows / max_bytes (at least one block): a writer that
        # outruns the stream must not make one message of everything queued, which gRPC
        # refuses above its message size limit. What is left stays due. For the same reason
        # a block larger than max_bytes by itself goes in slices of rows.
        first = self._pending[0]
        first_rows = first.shape[self._axis]
        if first.nbytes > self.max_bytes and first_rows > 1:
            fit = max(1, self.max_bytes // max(1, first.nbytes // first_rows))
            if fit < first_rows:
                self._pending[:1] = np.split(first, [fit], axis=self._axis)
        take = rows = nbytes = 0
        for block in self._pending:
            more = block.shape[self._axis]
            if take and (rows + more > self.max_rows or nbytes + block.nbytes > self.max_bytes):
                break
            take += 1
            rows += more
            nbytes += block.nbytes
        blocks = self._pending[:take]
        data = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=self._axis)
        self._sequence += 1
        batch = _Batch(self._sequence, data, self._sent, rows)
        self._unacked.append(batch)
        self._unacked_bytes += batch.data.nbytes
        self._sent += batch.rows
        self._pending = self._pending[take:]
        self._pending_rows -= rows
        self._pending_bytes -= nbytes
        return batch

    def _read_acks(self, call: BidiCall, generation: int) -> None:
        try:
            for ack in call:
                with self._cond:
                    while self._unacked and self._unacked[0].sequence <= ack.sequence:
                        done = self._unacked.popleft()
                        self._acknowledged += done.rows
                        self._unacked_bytes -= done.data.nbytes
                    self.shape = tuple(int(n) for n in ack.shape)
                    self._cond.notify_all()
            with self._cond:
                if self._unacked and self._error is None and generation == self._generation:
                    self._error = HoardError(
                        f"the append stream to {self.path} ended with "
                        f"{self._sent - self._acknowledged} rows unacknowledged"
                    )
                    self._cond.notify_all()
        except UnavailableError as exc:
            self._resume(exc, generation)
        except HoardError as exc:
            if exc.code is grpc.StatusCode.CANCELLED and not self._closed:
                self._resume(exc, generation)  # the daemon's idle watchdog, or its shutdown
            else:
                self._fail(exc)
        except BaseException as exc:  # kept for the caller's next call
            self._fail(exc)

    def _resume(self, cause: HoardError, generation: int) -> None:
        """Reconnect after a lost connection, resending only what did not land. Tries for
        up to ``resume_timeout`` seconds (a daemon restarting takes a few)."""
        deadline = time.monotonic() + self._resume_timeout
        attempt = 0
        while time.monotonic() < deadline:
            time.sleep(self._policy.backoff(attempt))
            attempt += 1
            try:
                length = self._current_length()
            except (UnavailableError, DeadlineExceededError):  # still away: the deadline of a
                continue  # call waiting for a daemon it had reached, or a failed connection
            except BaseException as exc:
                self._fail(exc)
                return
            with self._cond:
                if generation != self._generation:
                    return
                assert self._base is not None
                self._drop_landed(length - self._base)
                self._cond.notify_all()
                self._open_stream(resumed=True)
            return
        self._fail(cause)

    def _drop_landed(self, landed: int) -> None:
        # Rows up to ``landed`` are in the file: batches land whole, so a batch is either
        # dropped or resent entirely (slicing covers a daemon that applied part of one).
        assert self._axis is not None
        while self._unacked and self._unacked[0].start < landed:
            batch = self._unacked[0]
            done = min(landed - batch.start, batch.rows)
            self._acknowledged += done
            if done == batch.rows:
                self._unacked.popleft()
                self._unacked_bytes -= batch.data.nbytes
            else:
                rest = np.take(batch.data, range(done, batch.rows), axis=self._axis)
                left = batch.rows - done
                self._unacked[0] = _Batch(batch.sequence, rest, batch.start + done, left)
                self._unacked_bytes -= batch.data.nbytes - rest.nbytes
                break

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            if self._error is None:
                self._error = exc
            self._cond.notify_all()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
