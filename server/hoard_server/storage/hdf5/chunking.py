"""Chunk shapes of appendable datasets: time-major along the grow dimension.

A chunk spans the full extent of every other dimension (so a row appended is written into
one chunk, and reading a run of rows touches few chunks) and a power-of-two number of rows
making about ``target`` bytes (between ``MIN_BYTES`` and ``MAX_BYTES``). When one row alone
is larger than ``MAX_BYTES``, the other dimensions are cut too, largest first.
"""

from __future__ import annotations

import math

MIN_BYTES = 64 << 10
MAX_BYTES = 1 << 20
TARGET_BYTES = 256 << 10


def append_chunks(
    row_shape: tuple[int, ...], grow: int, itemsize: int, target: int = TARGET_BYTES
) -> tuple[int, ...]:
    """The chunk shape for a dataset growing along axis ``grow`` whose other dimensions are
    ``row_shape`` (``row_shape[grow]`` is ignored). ``itemsize``: bytes per element (a
    guess for variable-length strings)."""
    target = min(max(target, MIN_BYTES), MAX_BYTES)
    dims = [max(1, d) for d in row_shape]
    dims[grow] = 1
    # cut the largest other dimension in halves until one row fits in the largest chunk
    while math.prod(dims) * itemsize > MAX_BYTES:
        axis = max((i for i in range(len(dims)) if i != grow), key=lambda i: dims[i])
        if dims[axis] == 1:
            break
        dims[axis] = (dims[axis] + 1) // 2
    row_bytes = math.prod(dims) * itemsize
    rows = 1
    while rows * 2 * row_bytes <= target:
        rows *= 2
    dims[grow] = rows
    return tuple(dims)
