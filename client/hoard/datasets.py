"""The datasets API: the HDF5 files of one repository over a :class:`Transport`.

One method per RPC of the ``Datasets`` and ``DatasetFiles`` services, Python values in and
out: numpy arrays, numpy-style selections (``(slice(0, 10), 3)``), dicts of metadata, typed
replies. Failures arrive already translated by the transport into :mod:`hoard.errors`
classes (a missing dataset is a :class:`~hoard.errors.DatasetNotFoundError`, also a
``KeyError``).

    ds = client.datasets("default")
    ds.store_data("p/x.h5", "data", numpy.zeros((10, 4)))
    ds.get_data("p/x.h5", "data", (slice(2, 5), 0))

Large selections are read with the streaming ``ReadData`` (when the shape says the reply
would be big, or when the daemon refuses one reply as too large), so the daemon's reply
limit never shows. :meth:`Datasets.open` gives the h5py-like view, :meth:`Datasets.appender`
the batching appender.
"""

from __future__ import annotations

import builtins
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from hoard import errors
from hoard.arrays import (
    Key,
    from_array,
    from_value,
    selection_from_key,
    selection_shape,
    to_array,
    to_value,
)
from hoard.errors import ReplyTooLargeError
from hoard.shared_memory import Unclaimable, claim
from hoard.transport import Transport, is_local_target
from hoard.v1 import datasets_pb2 as pb

if TYPE_CHECKING:
    from hoard.appender import Appender
    from hoard.h5view import File

__all__ = [
    "CHUNK_BYTES",
    "FOLLOW_RESUME_SECONDS",
    "STREAMED_READ_BYTES",
    "AppendAck",
    "DatasetShape",
    "Datasets",
    "DiskUsage",
    "FileDescription",
    "FileEntry",
    "NodeDescription",
    "RemovedFiles",
    "Snapshot",
]

CHUNK_BYTES = 1 << 20  # file transfers (import, export, zip) move in chunks of this size
STREAMED_READ_BYTES = 16 << 20  # selections estimated above this are read streamed at once
SHARED_BLOCK_BYTES = 16 << 20  # read_data's blocks through shared memory
FOLLOW_RESUME_SECONDS = 30.0  # how long a follower waits for a daemon that went away


# -- typed replies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetShape:
    """A dataset's extent and layout. ``maxshape`` has None for an unlimited axis;
    ``chunks`` is None for a contiguous dataset."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any] | str
    maxshape: tuple[int | None, ...] = ()
    chunks: tuple[int, ...] | None = None
    compression: str = ""

    @classmethod
    def from_message(cls, message: pb.DatasetShape) -> DatasetShape:
        return cls(
            shape=tuple(int(n) for n in message.shape),
            dtype=_dtype(message.dtype),
            maxshape=tuple(int(n) or None for n in message.maxshape),
            chunks=tuple(int(n) for n in message.chunks) or None,
            compression=message.compression,
        )

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class AppendAck:
    """Every batch up to ``sequence`` is durable; ``shape`` is the dataset's after them."""

    sequence: int
    dataset: str
    shape: tuple[int, ...]

    @classmethod
    def from_message(cls, message: pb.AppendAck) -> AppendAck:
        return cls(message.sequence, message.dataset, tuple(int(n) for n in message.shape))


@dataclass(frozen=True)
class NodeDescription:
    """A group or dataset of a file: ``node`` is its absolute path ("/" for the root)."""

    node: str
    kind: str  # "group" or "dataset"
    shape: DatasetShape | None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def is_dataset(self) -> bool:
        return self.kind == "dataset"


@dataclass(frozen=True)
class FileDescription:
    """A file's tree, parents before children."""

    path: str
    size: int
    nodes: list[NodeDescription]

    def node(self, name: str) -> NodeDescription | None:
        """The node at absolute path ``name`` ("/a/b"), None if there is none."""
        name = "/" + name.strip("/")
        return next((n for n in self.nodes if n.node == name), None)


@dataclass(frozen=True)
class FileEntry:
    """A file or folder of the repository; ``modified`` in seconds since the epoch."""

    path: str
    is_folder: bool
    size: int
    modified: float

    @classmethod
    def from_message(cls, message: pb.FileEntry) -> FileEntry:
        return cls(message.path, message.is_folder, message.size, message.modified)


@dataclass(frozen=True)
class RemovedFiles:
    removed: list[str]
    missing: list[str]


@dataclass(frozen=True)
class DiskUsage:
    bytes: int
    files: int
    kib: int


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of a file in the objects store: read it with the objects API."""

    key: str
    size: int


def _dtype(text: str) -> np.dtype[Any] | str:
    if not text or text == "str":
        return text
    try:
        return np.dtype(text)
    except TypeError:
        return text


def _node_description(message: pb.NodeDescription) -> NodeDescription:
    shape = DatasetShape.from_message(message.shape) if message.kind == "dataset" else None
    attributes = {k: from_value(v) for k, v in sorted(message.attributes.items())}
    return NodeDescription(message.node, message.kind, shape, attributes)


# -- the client ------------------------------------------------------------------------------


class Datasets:
    """The HDF5 files of repository ``repository``. ``where`` is the group a dataset lives
    in ("/" by default), joined with ``dataset`` as a path by the daemon."""

    def __init__(
        self,
        transport: Transport,
        repository: str = "default",
        *,
        shared_memory: bool | None = None,
    ) -> None:
        """``shared_memory``: ask the daemon to hand large reads over through /dev/shm
        (None: when the target is a unix socket or loopback). Reads fall back to the stream
        by themselves when the daemon declines or the segment cannot be opened here."""
        self.transport = transport
        self.repository = repository
        if shared_memory is None:
            shared_memory = is_local_target(getattr(transport, "target", "") or "")
        self.shared_memory = shared_memory

    def __repr__(self) -> str:
        return f"<hoard.Datasets repository={self.repository!r}>"

    def node(self, path: str, dataset: str = "", where: str = "/") -> pb.NodeRef:
        return pb.NodeRef(repository=self.repository, path=path, where=where, dataset=dataset)

    # -- views -------------------------------------------------------------------------------

    def open(self, path: str) -> File:
        """The h5py-like view of file ``path`` (no call is made)."""
        from hoard.h5view import File

        return File(self, path)

    def appender(
        self,
        path: str,
        dataset: str,
        *,
        grow_dimension: int = -1,
        where: str = "/",
        **options: Any,
    ) -> Appender:
        """A batching appender on one ``Append`` stream; use it as a context manager.
        ``options`` tune it (``max_rows``, ``max_bytes``, ``max_delay``, ``idle_close``,
        ``resume_timeout``, ``max_pending_bytes``): see :class:`~hoard.appender.Appender`."""
        from hoard.appender import Appender

        return Appender(self, path, dataset, grow_dimension=grow_dimension, where=where, **options)

    # -- Datasets: writing ---------------------------------------------------------------------

    def store_data(self, path: str, dataset: str, data: Any, *, where: str = "/") -> DatasetShape:
        """Create dataset ``dataset`` from ``data``, replacing one that exists (a 0-d array
        makes a scalar dataset); its shape."""
        request = pb.StoreDataRequest(node=self.node(path, dataset, where), data=to_array(data))
        return DatasetShape.from_message(self.transport.unary("Datasets.StoreData", request))

    def append_data(
        self,
        path: str,
        dataset: str,
        data: Any,
        *,
        grow_dimension: int = -1,
        where: str = "/",
        close_file: bool = False,
    ) -> AppendAck:
        """Grow ``dataset`` along ``grow_dimension`` by the block ``data`` (creating it when
        it does not exist); durable when it returns. One call per block: for many small
        appends use :meth:`appender`."""
        request = pb.AppendDataRequest(
            node=self.node(path, dataset, where),
            data=to_array(data),
            grow_dimension=grow_dimension,
            close_file=close_file,
        )
        return AppendAck.from_message(self.transport.unary("Datasets.AppendData", request))

    def append_stream(self, requests: Iterable[pb.AppendRequest]) -> Any:
        """The raw ``Append`` stream (a :class:`~hoard.transport.BidiCall` of acks); the
        :class:`~hoard.appender.Appender` is the usual way in."""
        return self.transport.bidi("Datasets.Append", requests)

    # -- Datasets: reading ---------------------------------------------------------------------

    def get_data(
        self,
        path: str,
        dataset: str,
        selection: Key = None,
        *,
        where: str = "/",
        shape: DatasetShape | None = None,
    ) -> np.ndarray:
        """``dataset[selection]`` as a numpy array (the whole dataset when None).

        Given the dataset's ``shape`` (as the view has it), a selection estimated above
        16 MiB is streamed at once; otherwise one ``GetData`` is tried and a refusal as too
        large switches to the streamed ``ReadData``.
        """
        if shape is not None and _estimated_bytes(shape, selection) > STREAMED_READ_BYTES:
            return self._read_whole(path, dataset, selection, where)
        request = pb.GetDataRequest(
            node=self.node(path, dataset, where), selection=selection_from_key(selection)
        )
        try:
            return from_array(self.transport.unary("Datasets.GetData", request))
        except ReplyTooLargeError:
            return self._read_whole(path, dataset, selection, where)

    def read_data(
        self, path: str, dataset: str, selection: Key = None, *, where: str = "/"
    ) -> Iterator[tuple[int, np.ndarray, tuple[int, ...]]]:
        """``(offset, block, full shape)`` per block of ``dataset[selection]`` along its first
        axis, streamed (``ReadData``); on the daemon's host, blocks of 16 MiB come through
        shared memory (mapped, not copied)."""
        yield from self._decoded(path, dataset, selection, where, SHARED_BLOCK_BYTES, copy=True)

    def _request(self, path: str, dataset: str, selection: Key, where: str) -> pb.GetDataRequest:
        return pb.GetDataRequest(
            node=self.node(path, dataset, where), selection=selection_from_key(selection)
        )

    def _decoded(
        self,
        path: str,
        dataset: str,
        selection: Key,
        where: str,
        block_bytes: int,
        *,
        copy: bool,
    ) -> Iterator[tuple[int, np.ndarray, tuple[int, ...]]]:
        """``ReadData``'s blocks as arrays (streamed ones read-only views unless ``copy``),
        asking for shared memory (blocks of about ``block_bytes``, 0: one) when this client
        does. A first segment this process cannot map is left to the daemon (it unlinks it)
        and the selection streamed; this client then stops asking."""
        request = self._request(path, dataset, selection, where)
        if self.shared_memory:
            request.shared_memory = True
            request.shared_memory_block_bytes = block_bytes
        stream = self.transport.server_stream("Datasets.ReadData", request)
        first = True
        try:
            for block in stream:
                shape = tuple(int(n) for n in block.shape)
                if block.HasField("shared_memory"):
                    try:
                        array = claim(block.shared_memory)
                    except Unclaimable:
                        if not first:
                            raise
                        self.shared_memory = False
                        stream.close()
                        request.shared_memory = False
                        stream = self.transport.server_stream("Datasets.ReadData", request)
                        yield from (
                            (b.offset, from_array(b.data, copy=copy), tuple(map(int, b.shape)))
                            for b in stream
                        )
                        return
                else:
                    array = from_array(block.data, copy=copy)
                first = False
                yield block.offset, array, shape
        finally:
            stream.close()

    def _read_whole(self, path: str, dataset: str, selection: Key, where: str) -> np.ndarray:
        out: np.ndarray | None = None
        texts: list[np.ndarray] = []
        for offset, part, shape in self._decoded(path, dataset, selection, where, 0, copy=False):
            if out is None and (len(shape) == 0 or part.shape == shape):
                return part if part.flags.writeable else part.copy()  # the whole selection
            if part.dtype.kind == "U":  # text: widths vary by block, join at the end
                texts.append(part)
                continue
            if out is None:
                out = np.empty(shape, dtype=part.dtype)
            out[offset : offset + len(part)] = part
        if texts:
            return np.concatenate(texts)
        if out is None:  # an empty selection: nothing streamed, ask once for its dtype/shape
            request = self._request(path, dataset, selection, where)
            return from_array(self.transport.unary("Datasets.GetData", request))
        return out

    def follow(
        self,
        path: str,
        dataset: str,
        from_row: int = 0,
        *,
        where: str = "/",
        grow_dimension: int | None = None,
        resume_timeout: float | None = FOLLOW_RESUME_SECONDS,
    ) -> Iterator[np.ndarray]:
        """Blocks of rows as they land: every row from ``from_row`` first, then new ones as
        they are acknowledged, until the caller stops iterating (which cancels the stream).

        The daemon going away (UNAVAILABLE: it stops, reason SHUTTING_DOWN, or the
        connection is lost) does not end it: it reaches the daemon again with backoff and
        follows on from the first row not yet yielded, so each row is yielded once, in
        order. After ``resume_timeout`` seconds without a daemon (None: no limit) it raises
        the last error; a client made with no retries raises at once."""
        row = from_row
        while True:
            request = pb.FollowRequest(
                node=self.node(path, dataset, where), from_row=row, grow_dimension=grow_dimension
            )
            try:
                for block in self.transport.server_stream("Datasets.Follow", request):
                    data = from_array(block.data)
                    axis = (-1 if grow_dimension is None else grow_dimension) % data.ndim
                    row = block.offset + data.shape[axis]
                    yield data
                return
            except errors.UnavailableError as lost:
                self._reach_again(lost, path, dataset, where, resume_timeout)

    def _reach_again(
        self,
        lost: errors.UnavailableError,
        path: str,
        dataset: str,
        where: str,
        timeout: float | None,
    ) -> None:
        """Wait, with the policy's backoff, until the daemon answers for the dataset again
        (its shape: a dataset gone meanwhile raises its error). Raises the last UNAVAILABLE
        after ``timeout`` seconds (None: never)."""
        policy = self.transport.policy
        if policy.max_attempts <= 1:
            raise lost
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            pause = policy.backoff(attempt)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise lost
                pause = min(pause, left)
            time.sleep(pause)
            attempt += 1
            # a transport that reached the daemon waits for it within a call's deadline:
            # keep the probe within what is left of ours
            probe = self.transport.timeout
            if deadline is not None:
                probe = max(0.05, deadline - time.monotonic())
            try:
                self.transport.unary(
                    "Datasets.GetDataShape", self.node(path, dataset, where), timeout=probe
                )
                return
            except errors.UnavailableError as again:
                lost = again
            except errors.DeadlineExceededError:
                pass  # waited for the daemon until our own deadline: the check above raises

    def get_data_shape(self, path: str, dataset: str, *, where: str = "/") -> DatasetShape:
        reply = self.transport.unary("Datasets.GetDataShape", self.node(path, dataset, where))
        return DatasetShape.from_message(reply)

    def describe(self, path: str, dataset: str = "", *, where: str = "/") -> FileDescription:
        """The file's tree: groups and datasets, with shapes and attributes."""
        reply = self.transport.unary("Datasets.Describe", self.node(path, dataset, where))
        return FileDescription(reply.path, reply.size, [_node_description(n) for n in reply.nodes])

    def is_valid_file(self, path: str) -> bool:
        """Whether ``path`` exists and is HDF5 (False, never an error, for a missing file)."""
        return bool(self.transport.unary("Datasets.IsValidFile", self.node(path)).valid)

    def close_file(self, path: str) -> None:
        """Flush and release the daemon's handle on ``path``."""
        self.transport.unary("Datasets.CloseFile", self.node(path))

    def remove_data(self, path: str, dataset: str, *, where: str = "/") -> None:
        self.transport.unary("Datasets.RemoveData", self.node(path, dataset, where))

    # -- Datasets: metadata --------------------------------------------------------------------

    def set_metadata(
        self,
        path: str,
        metadata: Mapping[str, Any],
        dataset: str = "",
        *,
        where: str = "/",
        tvb_specific_metadata: bool = False,
    ) -> None:
        """Set attributes of the root (``dataset`` ""), a group or a dataset. With
        ``tvb_specific_metadata`` every key is stored with TVB's "TVB_" prefix."""
        request = pb.SetMetadataRequest(
            node=self.node(path, dataset, where),
            metadata={k: to_value(v) for k, v in metadata.items()},
            tvb_specific_metadata=tvb_specific_metadata,
        )
        self.transport.unary("Datasets.SetMetadata", request)

    def get_metadata(self, path: str, dataset: str = "", *, where: str = "/") -> dict[str, Any]:
        """Every attribute of the node, keys without TVB's "TVB_" prefix (as TVB returns them)."""
        reply = self.transport.unary("Datasets.GetMetadata", self.node(path, dataset, where))
        return {k: from_value(v) for k, v in reply.metadata.items()}

    def remove_metadata(
        self,
        path: str,
        key: str,
        dataset: str = "",
        *,
        where: str = "/",
        tvb_specific_metadata: bool = False,
        check_existence: bool = False,
    ) -> bool:
        """Remove one attribute; whether it existed. With ``check_existence`` a missing key
        is a :class:`~hoard.errors.MetadataNotFoundError`."""
        request = pb.RemoveMetadataRequest(
            node=self.node(path, dataset, where),
            key=key,
            tvb_specific_metadata=tvb_specific_metadata,
            check_existence=check_existence,
        )
        return bool(self.transport.unary("Datasets.RemoveMetadata", request).removed)

    # -- DatasetFiles --------------------------------------------------------------------------

    def _file(self, path: str) -> pb.FileRequest:
        return pb.FileRequest(repository=self.repository, path=path)

    def list_files(
        self, folder: str = "", *, recursive: bool = False, h5_only: bool = False
    ) -> Iterator[FileEntry]:
        """Files and folders under ``folder`` ("" is the top), in path order."""
        request = pb.ListFilesRequest(
            repository=self.repository, folder=folder, recursive=recursive, h5_only=h5_only
        )
        for entry in self.transport.server_stream("DatasetFiles.ListFiles", request):
            yield FileEntry.from_message(entry)

    def delete_file(self, path: str) -> None:
        self.transport.unary("DatasetFiles.DeleteFile", self._file(path))

    def rename_file(self, source: str, destination: str, *, overwrite: bool = False) -> FileEntry:
        return self._rename("DatasetFiles.RenameFile", source, destination, overwrite)

    def copy_file(self, source: str, destination: str, *, overwrite: bool = False) -> FileEntry:
        return self._rename("DatasetFiles.CopyFile", source, destination, overwrite)

    def rename_folder(self, source: str, destination: str, *, overwrite: bool = False) -> FileEntry:
        return self._rename("DatasetFiles.RenameFolder", source, destination, overwrite)

    def _rename(self, method: str, source: str, destination: str, overwrite: bool) -> FileEntry:
        request = pb.RenameRequest(
            repository=self.repository,
            source=source,
            destination=destination,
            overwrite=overwrite,
        )
        return FileEntry.from_message(self.transport.unary(method, request))

    def remove_files(self, paths: Iterable[str], *, ignore_errors: bool = False) -> RemovedFiles:
        """Remove every path that exists; unless ``ignore_errors``, a NotFoundError names the
        missing ones (after the others were removed)."""
        request = pb.RemoveFilesRequest(
            repository=self.repository, paths=list(paths), ignore_errors=ignore_errors
        )
        reply = self.transport.unary("DatasetFiles.RemoveFiles", request)
        return RemovedFiles(list(reply.removed), list(reply.missing))

    def create_folder(self, path: str) -> FileEntry:
        request = pb.FolderRequest(repository=self.repository, path=path)
        return FileEntry.from_message(self.transport.unary("DatasetFiles.CreateFolder", request))

    def remove_folder(self, path: str, *, ignore_errors: bool = False) -> RemovedFiles:
        request = pb.FolderRequest(
            repository=self.repository, path=path, ignore_errors=ignore_errors
        )
        reply = self.transport.unary("DatasetFiles.RemoveFolder", request)
        return RemovedFiles(list(reply.removed), list(reply.missing))

    def disk_usage(self, path: str = "", *, h5_only: bool = False) -> DiskUsage:
        """Bytes and files under a folder (or of one file), optionally .h5 files only."""
        request = pb.DiskUsageRequest(repository=self.repository, path=path, h5_only=h5_only)
        reply = self.transport.unary("DatasetFiles.DiskUsage", request)
        return DiskUsage(reply.bytes, reply.files, reply.kib)

    def write_xml_metadata(self, path: str, metadata: Mapping[str, Any]) -> FileEntry:
        """Write ``metadata`` as TVB's XML metadata file at ``path`` (values as text)."""
        request = pb.XmlMetadata(
            repository=self.repository,
            path=path,
            metadata={str(k): str(v) for k, v in metadata.items()},
        )
        return FileEntry.from_message(
            self.transport.unary("DatasetFiles.WriteXmlMetadata", request)
        )

    def read_xml_metadata(self, path: str) -> dict[str, str]:
        reply = self.transport.unary("DatasetFiles.ReadXmlMetadata", self._file(path))
        return dict(reply.metadata)

    def snapshot(self, path: str) -> str:
        """Store a consistent copy of ``path`` in the objects store; its key (read it with
        ``client.repository(...).get_object_content(key)``)."""
        return str(self.transport.unary("DatasetFiles.SnapshotFile", self._file(path)).key)

    # -- DatasetFiles: bytes in and out ----------------------------------------------------------

    def export_chunks(self, path: str) -> Iterator[bytes]:
        """A consistent copy of file ``path``, as chunks of about 1 MiB."""
        for chunk in self.transport.server_stream("DatasetFiles.ExportFile", self._file(path)):
            if chunk.data:
                yield chunk.data

    def export(self, path: str, local_file: str | os.PathLike[str] | IO[bytes]) -> int:
        """Download a consistent copy of ``path`` into ``local_file`` (a path, written whole
        or not at all, or a binary handle); the bytes written."""
        return _save(self.export_chunks(path), local_file)

    def zip_chunks(
        self, folder: str, *, exclude: Iterable[str] = (), need_parent_folder: bool = False
    ) -> Iterator[bytes]:
        request = pb.ZipFolderRequest(
            repository=self.repository,
            folder=folder,
            exclude=list(exclude),
            need_parent_folder=need_parent_folder,
        )
        for chunk in self.transport.server_stream("DatasetFiles.ZipFolder", request):
            if chunk.data:
                yield chunk.data

    def zip_folder(
        self,
        folder: str,
        local_file: str | os.PathLike[str] | IO[bytes],
        *,
        exclude: Iterable[str] = (),
        need_parent_folder: bool = False,
    ) -> int:
        """A zip of ``folder`` (leaving out names in ``exclude``) into ``local_file``; bytes."""
        chunks = self.zip_chunks(folder, exclude=exclude, need_parent_folder=need_parent_folder)
        return _save(chunks, local_file)

    def import_file(
        self,
        local_file: str | os.PathLike[str] | IO[bytes],
        path: str,
        *,
        overwrite: bool = False,
    ) -> FileEntry:
        """Upload an HDF5 file to ``path`` in 1 MiB chunks; it appears whole or not at all.
        Non-HDF5 content is a :class:`~hoard.errors.NotHDF5Error`, an existing ``path``
        without ``overwrite`` a :class:`~hoard.errors.FileAlreadyExistsError`."""
        header = pb.ImportHeader(repository=self.repository, path=path, overwrite=overwrite)

        def requests(handle: IO[bytes]) -> Iterator[pb.ImportRequest]:
            yield pb.ImportRequest(header=header)
            while chunk := handle.read(CHUNK_BYTES):
                yield pb.ImportRequest(chunk=chunk)

        if isinstance(local_file, (str, os.PathLike)):
            with builtins.open(local_file, "rb") as handle:
                reply = self.transport.upload("DatasetFiles.ImportFile", lambda: requests(handle))
        else:
            reply = self.transport.upload("DatasetFiles.ImportFile", lambda: requests(local_file))
        return FileEntry.from_message(reply)


def _estimated_bytes(shape: DatasetShape, selection: Key) -> int:
    itemsize = shape.dtype.itemsize if isinstance(shape.dtype, np.dtype) else 64
    try:
        return math.prod(selection_shape(shape.shape, selection)) * itemsize
    except (IndexError, TypeError, ValueError):
        return 0  # let the daemon say what is wrong with it


def _save(chunks: Iterator[bytes], local_file: str | os.PathLike[str] | IO[bytes]) -> int:
    """Write ``chunks`` to a handle, or to a path through a temporary file renamed at the end
    (a failed transfer leaves no partial file)."""
    written = 0
    if not isinstance(local_file, (str, os.PathLike)):
        for chunk in chunks:
            local_file.write(chunk)
            written += len(chunk)
        return written
    target = os.fspath(local_file)
    partial = f"{target}.part-{os.getpid()}"
    try:
        with builtins.open(partial, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                written += len(chunk)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return written
