"""Verification of a repository's dataset files: does each one still read as HDF5?

Each file is opened read-only through the repository's ``OpenFiles`` (the daemon's own handle
when the file is open, so a file being written is checked as the daemon sees it) and its tree
is walked: every group, every dataset's metadata (shape, type, layout, attributes) and every
dataset's data, read in blocks of at most ``block_bytes`` so that damaged raw data is found
too while memory stays bounded. Only hard links are followed: a soft link may dangle by
design, and an external link points outside the file (and maybe outside the repository).

The door is entered per node and per block, not for the whole file, so a writer of the file
waits at most one block's read. A node that disappears meanwhile was deleted, not damaged.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from hoard_server.errors import HoardError
from hoard_server.reports import Problem
from hoard_server.storage.hdf5.files import OpenFiles
from hoard_server.storage.hdf5.inventory import dataset_files

BLOCK_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class FileChecked:
    """The outcome for one file: its size, and what is wrong with it ("" if nothing)."""

    path: str
    size: int
    problem: str


class _Damage(Exception):
    """What failed, with the node it failed in."""


class DatasetFileCheck:
    """Check the dataset files of one repository (``files``), one file at a time."""

    def __init__(self, files: OpenFiles, block_bytes: int = BLOCK_BYTES) -> None:
        self._files = files
        self._block_bytes = max(1, block_bytes)

    def run(self, sample: float = 0.0) -> Iterator[FileChecked]:
        """Check every dataset file (or a random ``sample`` fraction of them)."""
        rng = random.Random()
        for entry in dataset_files(self._files.root):
            if sample and rng.random() >= sample:
                continue
            yield FileChecked(entry.path, entry.size, self.check(entry.path))

    def problems(self, sample: float = 0.0) -> Iterator[Problem]:
        for checked in self.run(sample):
            if checked.problem:
                yield Problem("", 0, checked.problem, path=checked.path)

    def check(self, path: str) -> str:
        """What is wrong with file ``path`` ("" if it reads whole)."""
        try:
            groups = ["/"]
            while groups:
                groups.extend(self._check_group(path, groups.pop()))
        except _Damage as exc:
            return str(exc)
        return ""

    def _check_group(self, path: str, name: str) -> list[str]:
        """Check group ``name``'s attributes and datasets; the subgroups still to check."""
        subgroups: list[str] = []
        datasets: list[str] = []
        with self._node(path, name) as group:
            if group is None:
                return []
            try:
                _read_attributes(group)
                for child in list(group):
                    link = group.get(child, getlink=True)
                    if not isinstance(link, h5py.HardLink):
                        continue  # soft links may dangle; external links leave the file
                    kind = group.get(child, getclass=True)
                    full = name.rstrip("/") + "/" + child
                    if kind is h5py.Group:
                        subgroups.append(full)
                    elif kind is h5py.Dataset:
                        datasets.append(full)
            except Exception as exc:
                raise _Damage(f"group {name}: {_describe(exc)}") from exc
        for dataset in datasets:
            self._check_dataset(path, dataset)
        return subgroups

    def _check_dataset(self, path: str, name: str) -> None:
        with self._node(path, name) as ds:
            if ds is None:
                return
            try:
                _read_attributes(ds)
                shape, dtype = ds.shape, ds.dtype
                ds.chunks, ds.compression, ds.fillvalue  # noqa: B018 (the layout messages)
            except Exception as exc:
                raise _Damage(f"dataset {name}: metadata: {_describe(exc)}") from exc
        if shape is None:
            return  # an empty (null dataspace) dataset has no data
        for block in blocks(shape, max(1, dtype.itemsize), self._block_bytes):
            with self._node(path, name) as ds:
                if ds is None:
                    return
                try:
                    ds[block]
                except Exception as exc:
                    raise _Damage(
                        f"dataset {name}: reading {_show(block)} failed: {_describe(exc)}"
                    ) from exc

    @contextmanager
    def _node(self, path: str, name: str) -> Iterator[Any]:
        """Node ``name`` of file ``path`` through the reading door; None if the file or the
        node is gone (deleted meanwhile); _Damage if it cannot be read."""
        with ExitStack() as stack:
            try:
                f = stack.enter_context(self._files.reading(path))
            except FileNotFoundError:
                f = None
            except HoardError as exc:
                raise _Damage(f"cannot be checked: {exc}") from exc
            except Exception as exc:
                raise _Damage(f"cannot be opened as HDF5: {_describe(exc)}") from exc
            try:
                node = None if f is None or (name != "/" and name not in f) else f[name]
            except Exception as exc:
                raise _Damage(f"node {name}: {_describe(exc)}") from exc
            yield node


def blocks(shape: tuple[int, ...], itemsize: int, budget: int) -> Iterator[tuple]:
    """Selections covering an array of ``shape``, each of at most ``budget`` bytes when the
    array allows (a single item larger than the budget is one block): whole rows along the
    first axis, and within a row too large, blocks of its own rows, recursively."""
    if not shape:
        yield ()
        return
    row = itemsize * int(np.prod(shape[1:], dtype=np.int64))
    if row <= budget or len(shape) == 1:
        step = max(1, budget // max(1, row))
        for start in range(0, shape[0], step):
            yield (slice(start, min(start + step, shape[0])),)
        return
    for i in range(shape[0]):
        for rest in blocks(shape[1:], itemsize, budget):
            yield (i, *rest)


def _read_attributes(node: h5py.HLObject) -> None:
    for key in node.attrs:
        node.attrs[key]


def _show(block: tuple) -> str:
    parts = [f"{s.start}:{s.stop}" if isinstance(s, slice) else str(s) for s in block]
    return f"[{', '.join(parts)}]" if parts else "its value"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
