"""Numpy-style selections on HDF5 datasets.

A selection is a tuple of items as numpy takes them: ints (negative count from the end),
slices (any step, negative ones included: h5py allows only positive steps, so the rows are
read forwards and flipped), ``Ellipsis``, and lists of increasing indices (at most one, as
h5py allows). ``Selection.parse`` checks it against a shape once, with numpy's meaning;
an index past the end is OUT_OF_RANGE (SELECTION_OUT_OF_RANGE, naming the shape), a
malformed selection INVALID_ARGUMENT (INVALID_SELECTION).

A parsed selection can be cut into blocks along its result's first axis (``block``), which
is how ReadData streams a large one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import EllipsisType

import h5py
import numpy as np

from hoard_server.errors import InvalidArgument, OutOfRange
from hoard_server.storage.hdf5 import nodes

Item = int | slice | EllipsisType | Sequence[int]


@dataclass(frozen=True)
class _Index:
    """One dataset axis selected by a single index (dropped from the result)."""

    value: int


@dataclass(frozen=True)
class _Run:
    """Evenly spaced elements, in result order ``first + p * step`` for p < ``count``."""

    first: int
    step: int
    count: int


@dataclass(frozen=True)
class _List:
    indices: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.indices)


_Axis = _Index | _Run | _List


def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(message, reason="INVALID_SELECTION")


@dataclass(frozen=True)
class Selection:
    axes: tuple[_Axis, ...]

    @classmethod
    def parse(cls, items: Sequence[Item], shape: tuple[int, ...]) -> Selection:
        """The selection ``items`` make of an array of ``shape``, checked."""
        items = list(items)
        ellipses = sum(1 for i in items if i is Ellipsis)
        if ellipses > 1:
            raise _invalid("a selection may hold at most one ellipsis")
        given = len(items) - ellipses
        if given > len(shape):
            raise _invalid(
                f"the selection has {given} indices but the dataset has {len(shape)} "
                f"dimensions (shape {shape})"
            )
        if ellipses:
            at = next(n for n, i in enumerate(items) if i is Ellipsis)
            items[at : at + 1] = [slice(None)] * (len(shape) - given)
        items += [slice(None)] * (len(shape) - len(items))
        axes = tuple(
            _axis(item, n, dim, shape)
            for dim, (item, n) in enumerate(zip(items, shape, strict=True))
        )
        if sum(1 for a in axes if isinstance(a, _List)) > 1:
            raise _invalid("a selection may hold at most one list of indices (as h5py allows)")
        return cls(axes)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the result."""
        return tuple(a.count for a in self.axes if not isinstance(a, _Index))

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    def block(self, lo: int, hi: int) -> Selection:
        """The part of this selection at positions [lo, hi) of its result's first axis."""
        for n, a in enumerate(self.axes):
            if isinstance(a, _Run):
                cut: _Axis = _Run(a.first + lo * a.step, a.step, max(0, hi - lo))
            elif isinstance(a, _List):
                cut = _List(a.indices[lo:hi])
            else:
                continue
            return replace(self, axes=(*self.axes[:n], cut, *self.axes[n + 1 :]))
        return self

    def read_into(self, ds: h5py.Dataset, out: np.ndarray) -> None:
        """Read the selected numbers straight into ``out`` (C-contiguous, of this selection's
        shape): no intermediate array when every axis is an index or a forward run."""
        plain = self.count > 0 and all(
            isinstance(a, _Index) or (isinstance(a, _Run) and a.step > 0) for a in self.axes
        )
        if plain and out.flags.c_contiguous and out.dtype == ds.dtype:
            key = tuple(
                a.value
                if isinstance(a, _Index)
                else slice(a.first, a.first + (a.count - 1) * a.step + 1, a.step)
                for a in self.axes
                if isinstance(a, _Index | _Run)
            )
            ds.read_direct(out.reshape(self.shape), source_sel=key)
        elif self.count:
            out[...] = self.read(ds)

    def read(self, ds: h5py.Dataset, dtype: np.dtype | None = None) -> np.ndarray:
        """The selected elements (text as an object array of str); ``dtype``: the
        dataset's, when the caller has it already."""
        stored = ds.dtype if dtype is None else dtype
        source = ds.asstr() if nodes.is_text(stored) else ds
        wanted = object if source is not ds else stored  # a scalar read loses |S widths
        if not self.axes:
            return np.asarray(source[()], dtype=wanted)
        if self.count == 0:
            return np.empty(self.shape, dtype=wanted)
        key: list[int | slice | list[int]] = []
        flips: list[int] = []
        out_axis = 0
        for a in self.axes:
            if isinstance(a, _Index):
                key.append(a.value)
                continue
            if isinstance(a, _List):
                key.append(list(a.indices))
            elif a.step > 0:
                key.append(slice(a.first, a.first + (a.count - 1) * a.step + 1, a.step))
            else:
                last = a.first + (a.count - 1) * a.step
                key.append(slice(last, a.first + 1, -a.step))
                flips.append(out_axis)
            out_axis += 1
        data = np.asarray(source[tuple(key)], dtype=wanted)
        for axis in flips:
            data = np.flip(data, axis)
        return data if data.flags.c_contiguous else data.copy(order="C")


def _axis(item: Item, n: int, dim: int, shape: tuple[int, ...]) -> _Axis:
    if isinstance(item, bool | np.bool_):
        raise _invalid("a boolean is not an index")
    if isinstance(item, int | np.integer):
        i = int(item)
        if not -n <= i < n:
            raise _out_of_range(f"index {i} is out of range for dimension {dim}", shape)
        return _Index(i % n)
    if isinstance(item, slice):
        if item.step == 0:
            raise _invalid("a slice step cannot be zero")
        start, stop, step = item.indices(n)
        r = range(start, stop, step)
        return _Run(r[0] if len(r) else 0, step, len(r))
    if item is Ellipsis:
        raise _invalid("a selection may hold at most one ellipsis")
    indices = []
    for v in item:
        i = int(v)
        if not -n <= i < n:
            raise _out_of_range(f"index {i} in a list is out of range for dimension {dim}", shape)
        indices.append(i % n)
    if any(b <= a for a, b in itertools.pairwise(indices)):
        raise _invalid(f"a list of indices must be strictly increasing, not {indices[:20]}")
    return _List(tuple(indices))


def _out_of_range(message: str, shape: tuple[int, ...]) -> OutOfRange:
    return OutOfRange(
        f"{message}: the dataset's shape is {shape}",
        reason="SELECTION_OUT_OF_RANGE",
        shape=",".join(map(str, shape)),
    )
