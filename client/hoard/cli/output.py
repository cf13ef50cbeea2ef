"""What every command group prints with: sizes, dates, argument types and progress bars."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from hoard.objects import ProgressCallback

PROGRESS_THRESHOLD = 4 << 20  # transfers above this get a progress bar (on a terminal)


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1]: {text}")
    return value


def when(timestamp: float | None) -> str:
    """A local date and how long ago, for seconds since the epoch; "never" for None or 0."""
    if not timestamp:
        return "never"
    moment = datetime.datetime.fromtimestamp(timestamp).astimezone()
    age = time.time() - timestamp
    if age < 0:
        ago = "in the future"
    elif age < 120:
        ago = f"{age:.0f} s ago"
    elif age < 7200:
        ago = f"{age / 60:.0f} min ago"
    elif age < 2 * 86400:
        ago = f"{age / 3600:.0f} h ago"
    else:
        ago = f"{age / 86400:.0f} days ago"
    return f"{moment:%Y-%m-%d %H:%M:%S %Z} ({ago})"


def human(n: float) -> str:
    """A byte count for people: "512 B", "1.5 MiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def stream_size(handle: BinaryIO) -> int | None:
    try:
        st = os.fstat(handle.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return st.st_size if st.st_size > 0 else None


@contextlib.contextmanager
def transfer_bar(total: int | None, label: str) -> Iterator[ProgressCallback | None]:
    """A progress callback drawing a tqdm bar on stderr, for transfers over 4 MiB on a
    terminal; None (no bar) otherwise or when tqdm is not installed."""
    if not sys.stderr.isatty():
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield None
        return
    bar: Any = None

    def update(done: int, size: int | None) -> None:
        nonlocal bar
        size = size if size is not None else total
        if bar is None:
            if size is None or size <= PROGRESS_THRESHOLD:
                return
            bar = tqdm(
                total=size, desc=label, unit="B", unit_scale=True, unit_divisor=1024, leave=False
            )
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


class Progress:
    """Progress of a long operation on stderr: a tqdm bar on a terminal, else one line per
    report (at most one per ``min_interval`` seconds, and always the final one)."""

    def __init__(self, unit: str, *, min_interval: float = 0.0) -> None:
        self._unit = unit
        self._min_interval = min_interval
        self._bar: Any = None
        self._tqdm: Any = None
        self._last_line = 0.0
        self._stage = ""
        if sys.stderr.isatty():
            with contextlib.suppress(ImportError):
                from tqdm import tqdm

                self._tqdm = tqdm

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def update(
        self, stage: str, done: int, total: int, postfix: str, line: str, *, final: bool = False
    ) -> None:
        if self._tqdm is None:
            now = time.monotonic()
            if final or stage != self._stage or now - self._last_line >= self._min_interval:
                print(line, file=sys.stderr, flush=True)
                self._last_line = now
            self._stage = stage
            return
        if self._bar is None:
            self._bar = self._tqdm(
                total=total or None, unit=self._unit, leave=False, file=sys.stderr
            )
        bar = self._bar
        if (total or None) != bar.total:
            bar.total = total or None
        bar.n = done
        bar.set_description(stage, refresh=False)
        bar.set_postfix_str(postfix, refresh=False)
        bar.refresh()

    def write(self, text: str) -> None:
        """A line on stdout that does not break the bar."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)
