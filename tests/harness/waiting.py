"""Wait for a condition, never for a length of time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline (an assertion: the test fails)."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    what: str = "",
    interval: float = 0.02,
) -> T:
    """Call ``predicate`` until it returns a truthy value and return that value.

    ``timeout`` bounds the wait: past it, WaitTimeout says ``what`` was awaited. The
    interval only spaces the checks; correctness never depends on it.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"waited {timeout:g}s for {what or predicate!r}")
        time.sleep(interval)
