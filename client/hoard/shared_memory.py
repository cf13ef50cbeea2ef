"""Claiming a shared-memory segment the daemon wrote a read into (same-host fast path).

The daemon names a file of ``/dev/shm`` in its reply; :func:`claim` maps it (privately:
the array is writable, and a write stays in this process), unlinks it at once (nothing is
left behind once it is mapped) and returns the array backed by the mapping: no copy. A
segment this process cannot open (another user's daemon, another host, a container with
its own /dev/shm) is :class:`Unclaimable`: the caller reads by the stream instead.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
from typing import Any

import numpy as np

__all__ = ["SHM_DIR", "Unclaimable", "claim"]

SHM_DIR = "/dev/shm"


class Unclaimable(Exception):
    """The segment cannot be mapped here."""


def claim(message: Any) -> np.ndarray:
    """The array a ``hoard.v1.SharedMemory`` message names, its segment unlinked."""
    name = message.name
    if not name or "/" in name or name.startswith("."):
        raise Unclaimable(f"not a segment name: {name!r}")
    path = os.path.join(SHM_DIR, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise Unclaimable(str(exc)) from exc
    try:
        with contextlib.suppress(OSError):  # the daemon unlinks what is left unclaimed
            os.unlink(path)
        info = os.fstat(fd)
        dtype = np.dtype(message.dtype)
        shape = tuple(int(n) for n in message.shape)
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not stat.S_ISREG(info.st_mode) or info.st_size < size or size != message.size:
            raise Unclaimable(f"segment {name} holds {info.st_size} bytes, not {size}")
        if size == 0:
            return np.empty(shape, dtype=dtype)
        # Private and writable: pages are shared with the segment until written (copy on
        # write), so mapping costs nothing up front; first reads fault them in.
        mapping = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    return np.frombuffer(mapping, dtype=dtype).reshape(shape)
