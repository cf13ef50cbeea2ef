"""Reading a client's stream ahead, in groups: what arrived while the previous group was
being worked on is handed over at once (the Append stream's group commit starts here)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()
_STOPPED = object()
_POLL = 0.25  # seconds between checks of ``stop`` while waiting for the client


class Stopped(Exception):
    """``read_ahead`` was stopped: the groups received before were handed over."""


def read_ahead(
    items: Iterator[T],
    depth: int,
    max_bytes: int,
    size: Callable[[T], int],
    stop: threading.Event | None = None,
) -> Generator[list[T], None, None]:
    """``items`` in groups of what has arrived: at least one item, at most ``depth`` items
    or about ``max_bytes``. A thread reads ``items`` (at most ``depth`` ahead: back-pressure
    on the client) while the caller works on a group. If ``items`` fails (the client's
    stream broke), its exception is raised after the groups before it. When ``stop`` is set,
    what has arrived is handed over as a last group and ``Stopped`` raised (the client may
    still be sending: the reading thread ends with the stream). Closing the generator stops
    the reading thread."""
    pending: queue.Queue[object] = queue.Queue(depth)
    done = threading.Event()

    def put(item: object) -> bool:
        while not done.is_set():
            try:
                pending.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # cancelled, undecodable: the caller raises it
            put(exc)
            return
        put(_END)

    threading.Thread(target=pump, name="read-ahead", daemon=True).start()
    try:
        while True:
            group: list[T] = []
            failure: BaseException | None = None
            ended = False
            item = _next(pending, stop)
            total = 0
            while True:
                if item is _END:
                    ended = True
                    break
                if isinstance(item, BaseException):
                    failure = item
                    break
                if item is _STOPPED:
                    failure = Stopped()
                    break
                group.append(item)  # type: ignore[arg-type]
                total += size(item)  # type: ignore[arg-type]
                if len(group) >= depth or total >= max_bytes:
                    break
                try:
                    item = pending.get_nowait()
                except queue.Empty:
                    if stop is not None and stop.is_set():
                        item = _STOPPED  # what arrived is in this group: end after it
                        continue
                    break
            if group:
                yield group
            if failure is not None:
                raise failure
            if ended:
                return
    finally:
        done.set()


def _next(pending: queue.Queue[object], stop: threading.Event | None) -> object:
    """The next item the reader handed over; ``_STOPPED`` once ``stop`` is set and none is
    waiting."""
    while True:
        try:
            return pending.get(timeout=None if stop is None else _POLL)
        except queue.Empty:
            if stop is not None and stop.is_set():
                try:
                    return pending.get_nowait()
                except queue.Empty:
                    return _STOPPED
