"""TVB's own ``HDF5StorageManager`` (tvb-storage) on local files: the anchor.

Imported only when tvb-storage is installed (``pip install -e '.[dev]'``). Everything here
calls TVB's public methods, the way TVB's simulator monitors and readers do.
"""

from __future__ import annotations

import logging

import numpy as np


def manager(path: str) -> object:
    """A tvb-storage ``HDF5StorageManager`` for ``path`` (its import logs noise: quieted)."""
    logging.getLogger("tvb").setLevel(logging.ERROR)
    from tvb.storage.h5.file.hdf5_storage_manager import HDF5StorageManager

    return HDF5StorageManager(path)


def append_samples(path: str, samples: np.ndarray, dataset: str = "data") -> int:
    """TVB's pattern: one ``append_data(sample, close_file=False)`` per time step along axis 0,
    then ``close_file()`` (which flushes TVB's buffer). Returns the rows written."""
    m = manager(path)
    for i in range(len(samples)):
        m.append_data(samples[i : i + 1], dataset, grow_dimension=0, close_file=False)  # type: ignore[attr-defined]
    m.close_file()  # type: ignore[attr-defined]
    return len(samples)


def read(path: str, selection: tuple[slice | int, ...], dataset: str = "data") -> np.ndarray:
    """``get_data(dataset, data_slice)``: TVB opens, reads and closes the file per call."""
    m = manager(path)
    return np.asarray(m.get_data(dataset, selection))  # type: ignore[attr-defined]
