"""h5py on a local file, in the benchmark's process: the ceiling hoard's bulk paths are held to."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import h5py
import numpy as np


class LocalH5py:
    """One chunked, unlimited dataset in a local file, written and read as hoard's clients do."""

    name = "local h5py"

    def __init__(self, path: str, dataset: str = "data") -> None:
        self.path = path
        self.dataset = dataset
        self._file: h5py.File | None = None

    def bulk_write(self, blocks: Iterable[np.ndarray], chunk_rows: int | None) -> int:
        """Append every block (resize + write), then flush and fsync; returns rows written."""
        rows = 0
        with h5py.File(self.path, "w", libver="latest") as f:
            d = None
            for block in blocks:
                if d is None:
                    d = f.create_dataset(
                        self.dataset,
                        shape=(0, *block.shape[1:]),
                        maxshape=(None, *block.shape[1:]),
                        chunks=(chunk_rows, *block.shape[1:]) if chunk_rows else True,
                        dtype=block.dtype,
                    )
                d.resize(rows + len(block), axis=0)
                d[rows : rows + len(block)] = block
                rows += len(block)
            f.flush()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return rows

    def open(self) -> None:
        self._file = h5py.File(self.path, "r")

    def read(self, selection: tuple[slice | int, ...]) -> np.ndarray:
        assert self._file is not None, "open() first"
        return np.asarray(self._file[self.dataset][selection])

    def pieces(self, rows: int) -> Iterator[np.ndarray]:
        """The whole dataset in slices of ``rows`` rows."""
        total = len(self._file[self.dataset])
        for start in range(0, total, rows):
            yield self.read((slice(start, min(start + rows, total)), slice(None)))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
