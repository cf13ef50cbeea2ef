"""hoard's Python SDK: a client for the hoard storage daemon.

    import hoard

    with hoard.connect("127.0.0.1:50051") as client:
        repo = client.repository("default")
        key = repo.put_object(b"hello")
        assert repo.get_object_content(key) == b"hello"

``Repository`` offers AiiDA's repository-backend method set (``put_object_from_filelike``,
``has_objects``, ``open``, ``iter_object_streams``, ``delete_objects``, ...) one to one.

The layers, from the wire up: ``transport`` (channel, retries, error translation),
``requests``/``replies`` (pure message building and parsing), ``objects`` and ``admin``
(typed APIs), ``io`` (the seekable reader), ``aiida`` (the AiiDA face), ``cli``.

Datasets (HDF5 files): ``client.datasets("default")`` gives :class:`Datasets` (``arrays``,
``datasets``, ``appender``, ``h5view``); ``hoard.tvb`` is TVB's HDF5StorageManager and
FilesHelper over it.

Metadata cache (qass's BufferMetadataCache): ``client.metadata("default")`` gives
:class:`MetadataCache` (client-side or server-side directory sync, queries built with
``hoard.metadata.query``'s ``select(M).filter(M.channel == 1)``); ``hoard.qass`` is qass's
``BufferMetadataCache`` over it.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from hoard.aiida import Repository
from hoard.client import Client, connect
from hoard.datasets import Datasets
from hoard.errors import (
    AccessDeniedError,
    AuthenticationError,
    ConnectionSettingsError,
    DataCorruptionError,
    DatasetFileNotFoundError,
    DatasetNotFoundError,
    DeadlineExceededError,
    FailedPreconditionError,
    HoardError,
    InvalidArgumentError,
    InvalidQueryError,
    NotFoundError,
    ObjectNotFoundError,
    OutOfRangeError,
    OverloadedError,
    PermissionDeniedError,
    QuotaExceededError,
    RepositoryNotFoundError,
    ResourceExhaustedError,
    StorageFullError,
    TLSError,
    TypeMismatchError,
    UnavailableError,
    UnknownFieldError,
)
from hoard.metadata.client import MetadataCache
from hoard.reports import ObjectStat, RepositoryInfo

try:
    __version__ = _metadata.version("hoard")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "AuthenticationError",
    "Client",
    "ConnectionSettingsError",
    "DataCorruptionError",
    "DatasetFileNotFoundError",
    "DatasetNotFoundError",
    "Datasets",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "HoardError",
    "InvalidArgumentError",
    "InvalidQueryError",
    "MetadataCache",
    "NotFoundError",
    "ObjectNotFoundError",
    "ObjectStat",
    "OutOfRangeError",
    "OverloadedError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "Repository",
    "RepositoryInfo",
    "RepositoryNotFoundError",
    "ResourceExhaustedError",
    "StorageFullError",
    "TLSError",
    "TypeMismatchError",
    "UnavailableError",
    "UnknownFieldError",
    "__version__",
    "connect",
]
