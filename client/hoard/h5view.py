"""An h5py-like view of a file in a repository: ``File``, ``Group``, ``Dataset``, ``Attributes``.

    f = client.datasets("default").open("run/x.h5")
    f["data"][100:200, ::2]          # a numpy array, read by the daemon
    f["data"].shape, f.attrs["TVB_Data_version"], "data" in f, list(f.keys())

Nothing is opened on the client: every access is a call (reads of large selections are
streamed). A dataset's ``shape``/``dtype``/``chunks`` are fetched once and kept; call
:meth:`Dataset.refresh` to see rows appended since (as an h5py SWMR reader does). Attribute
names are the raw ones in the file (TVB's keys keep their "TVB_" prefix here).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import numpy as np

from hoard.datasets import FOLLOW_RESUME_SECONDS
from hoard.errors import DatasetNotFoundError, NotADatasetError

if TYPE_CHECKING:
    from hoard.appender import Appender
    from hoard.arrays import Key
    from hoard.datasets import Datasets, DatasetShape, NodeDescription

__all__ = ["Attributes", "Dataset", "File", "Group"]


def _join(parent: str, name: str) -> str:
    """The absolute node path of ``name`` under ``parent`` ("/a" + "b/c" is "/a/b/c")."""
    if name.startswith("/"):
        return "/" + name.strip("/")
    base = parent.rstrip("/")
    return f"{base}/{name.strip('/')}" if name.strip("/") else (parent or "/")


class Attributes(MutableMapping[str, Any]):
    """The attributes of one node, by their raw names: get, set, ``del``, iterate."""

    def __init__(self, datasets: Datasets, path: str, node: str) -> None:
        self._datasets = datasets
        self._path = path
        self._node = node  # absolute, "/" for the root

    def _dataset(self) -> str:
        return self._node.lstrip("/")

    def _all(self) -> dict[str, Any]:
        description = self._datasets.describe(self._path, self._dataset())
        node = description.node(self._node)
        if node is None:
            raise DatasetNotFoundError(f"no node {self._node} in {self._path}")
        return node.attributes

    def __getitem__(self, key: str) -> Any:
        return self._all()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._datasets.set_metadata(self._path, {key: value}, self._dataset())

    def __delitem__(self, key: str) -> None:
        self._datasets.remove_metadata(self._path, key, self._dataset(), check_existence=True)

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"<Attributes of {self._node} in {self._path}>"


class Dataset:
    """One dataset: index it like a numpy array to read; ``append``/``appender`` to grow it."""

    def __init__(self, datasets: Datasets, path: str, node: str) -> None:
        self.datasets = datasets
        self.file_path = path
        self.name = node
        self._shape: DatasetShape | None = None

    @property
    def _dataset(self) -> str:
        return self.name.lstrip("/")

    def refresh(self) -> None:
        """Fetch the shape again (after appends by anyone)."""
        self._shape = self.datasets.get_data_shape(self.file_path, self._dataset)

    @property
    def info(self) -> DatasetShape:
        if self._shape is None:
            self.refresh()
        assert self._shape is not None
        return self._shape

    @property
    def shape(self) -> tuple[int, ...]:
        return self.info.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self.info.dtype) if self.info.dtype != "str" else np.dtype(object)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return self.info.size

    @property
    def chunks(self) -> tuple[int, ...] | None:
        return self.info.chunks

    @property
    def maxshape(self) -> tuple[int | None, ...]:
        return self.info.maxshape

    @property
    def compression(self) -> str | None:
        return self.info.compression or None

    @property
    def attrs(self) -> Attributes:
        return Attributes(self.datasets, self.file_path, self.name)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("a scalar dataset has no len()")
        return self.shape[0]

    def __getitem__(self, key: Key) -> Any:
        if key is Ellipsis or (isinstance(key, tuple) and not key):
            key = None
        data = self.datasets.get_data(self.file_path, self._dataset, key, shape=self._shape)
        return data[()] if data.ndim == 0 else data  # a numpy scalar, as h5py gives

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self[()]
        return np.asarray(data, dtype=dtype)

    def __setitem__(self, key: Key, value: Any) -> None:
        if not (key is Ellipsis or key == slice(None) or (isinstance(key, tuple) and not key)):
            raise NotImplementedError("only ds[...] = array (store_data) is supported")
        self._shape = self.datasets.store_data(self.file_path, self._dataset, value)

    def append(self, data: Any, *, grow_dimension: int = -1) -> None:
        """Append one block, durable when it returns (``append_data``)."""
        ack = self.datasets.append_data(
            self.file_path, self._dataset, data, grow_dimension=grow_dimension
        )
        self._shape = None if self._shape is None else self._grown(ack.shape)

    def _grown(self, shape: tuple[int, ...]) -> DatasetShape:
        import dataclasses

        assert self._shape is not None
        return dataclasses.replace(self._shape, shape=shape)

    def appender(self, grow_dimension: int = -1, **options: Any) -> Appender:
        """A batching appender on this dataset (see :class:`~hoard.appender.Appender`)."""
        return self.datasets.appender(
            self.file_path, self._dataset, grow_dimension=grow_dimension, **options
        )

    def follow(
        self,
        from_row: int = 0,
        grow_dimension: int = -1,
        *,
        resume_timeout: float | None = FOLLOW_RESUME_SECONDS,
    ) -> Iterator[np.ndarray]:
        """Blocks of rows along ``grow_dimension`` (TVB's default: the last) as they land,
        across daemon restarts (see :meth:`~hoard.datasets.Datasets.follow`)."""
        return self.datasets.follow(
            self.file_path,
            self._dataset,
            from_row,
            grow_dimension=grow_dimension,
            resume_timeout=resume_timeout,
        )

    def __repr__(self) -> str:
        shape = self._shape.shape if self._shape is not None else "?"
        return f'<hoard Dataset "{self.name}" in {self.file_path}: shape {shape}>'


class Group:
    """A group (the file itself is the root group): index it by name or relative path."""

    def __init__(self, datasets: Datasets, path: str, node: str = "/") -> None:
        self.datasets = datasets
        self.file_path = path
        self.name = node

    @property
    def attrs(self) -> Attributes:
        return Attributes(self.datasets, self.file_path, self.name)

    def _nodes(self) -> list[NodeDescription]:
        return self.datasets.describe(self.file_path).nodes

    def _children(self) -> list[NodeDescription]:
        prefix = self.name.rstrip("/") + "/"
        return [
            n
            for n in self._nodes()
            if n.node.startswith(prefix) and n.node != prefix and "/" not in n.node[len(prefix) :]
        ]

    def keys(self) -> list[str]:
        """Names of the members, in name order."""
        return sorted(n.node.rsplit("/", 1)[-1] for n in self._children())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._children())

    def items(self) -> list[tuple[str, Dataset | Group]]:
        return [(name, self[name]) for name in self.keys()]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except DatasetNotFoundError:
            return False
        return True

    def __getitem__(self, name: str) -> Dataset | Group:
        # One GetDataShape call: a dataset answers its shape, a group NOT_A_DATASET.
        target = _join(self.name, name)
        if target == "/":
            return Group(self.datasets, self.file_path, "/")
        try:
            shape = self.datasets.get_data_shape(self.file_path, target.lstrip("/"))
        except NotADatasetError:
            return Group(self.datasets, self.file_path, target)
        view = Dataset(self.datasets, self.file_path, target)
        view._shape = shape
        return view

    def __delitem__(self, name: str) -> None:
        self.datasets.remove_data(self.file_path, _join(self.name, name).lstrip("/"))

    def create_dataset(self, name: str, data: Any) -> Dataset:
        """Store ``data`` as dataset ``name`` (replacing one that exists)."""
        target = _join(self.name, name)
        view = Dataset(self.datasets, self.file_path, target)
        view._shape = self.datasets.store_data(self.file_path, target.lstrip("/"), data)
        return view

    def __repr__(self) -> str:
        return f'<hoard Group "{self.name}" in {self.file_path}>'


class File(Group):
    """A file of a repository, as its root group. ``close()`` releases the daemon's handle;
    as a context manager it does so on exit."""

    def __init__(self, datasets: Datasets, path: str) -> None:
        super().__init__(datasets, path, "/")

    @property
    def filename(self) -> str:
        return self.file_path

    def appender(self, dataset: str, grow_dimension: int = -1, **options: Any) -> Appender:
        return self.datasets.appender(
            self.file_path, dataset, grow_dimension=grow_dimension, **options
        )

    def close(self) -> None:
        self.datasets.close_file(self.file_path)

    def __enter__(self) -> File:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<hoard File {self.file_path} in {self.datasets.repository}>"
