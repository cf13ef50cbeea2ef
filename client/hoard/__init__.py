"""hoard's Python SDK: a client for the hoard storage daemon.

    import hoard

    with hoard.connect("127.0.0.1:50051") as client:
        repo = client.repository("default")
        key = repo.put_object(b"hello")
        assert repo.get_object_content(key) == b"hello"

``Repository`` offers AiiDA's repository-backend method set (``put_object_from_filelike``,
``has_objects``, ``open``, ``iter_object_streams``, ``delete_objects``, ...) one to one.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from hoard.client import Client, RepositoryInfo, connect
from hoard.errors import (
    AuthenticationError,
    DataCorruptionError,
    DeadlineExceededError,
    FailedPreconditionError,
    HoardError,
    InvalidArgumentError,
    NotFoundError,
    ObjectNotFoundError,
    OutOfRangeError,
    OverloadedError,
    PermissionDeniedError,
    RepositoryNotFoundError,
    ResourceExhaustedError,
    StorageFullError,
    UnavailableError,
)
from hoard.repository import ObjectStat, Repository

try:
    __version__ = _metadata.version("hoard")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "Client",
    "DataCorruptionError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "HoardError",
    "InvalidArgumentError",
    "NotFoundError",
    "ObjectNotFoundError",
    "ObjectStat",
    "OutOfRangeError",
    "OverloadedError",
    "PermissionDeniedError",
    "Repository",
    "RepositoryInfo",
    "RepositoryNotFoundError",
    "ResourceExhaustedError",
    "StorageFullError",
    "UnavailableError",
    "__version__",
    "connect",
]
