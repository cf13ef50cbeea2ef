"""The SDK's exceptions, and the one place that maps gRPC status codes to them.

Every exception derives from :class:`HoardError` and from the built-in exception a Python
program (or AiiDA) already catches for that condition: a missing object is a
``FileNotFoundError``, a bad argument a ``ValueError``, a full disk an ``OSError`` with
``errno.ENOSPC``. The server's message is kept as the text, the status code as ``.code``.
"""

from __future__ import annotations

import contextlib
import errno
import re
from collections.abc import Iterator

import grpc

__all__ = [
    "AuthenticationError",
    "DataCorruptionError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "HoardError",
    "InvalidArgumentError",
    "NotFoundError",
    "ObjectNotFoundError",
    "OutOfRangeError",
    "OverloadedError",
    "PermissionDeniedError",
    "RepositoryNotFoundError",
    "ResourceExhaustedError",
    "StorageFullError",
    "UnavailableError",
    "error_for_status",
    "from_rpc_error",
    "translate_rpc_errors",
]

_KEY_PATTERN = re.compile(r"\b[0-9a-f]{64}\b")


class HoardError(Exception):
    """Base of every error the SDK raises; ``code`` is the gRPC status, if one caused it."""

    def __init__(self, message: str = "", *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


class NotFoundError(HoardError, FileNotFoundError):
    """Something the request names does not exist (NOT_FOUND)."""


class ObjectNotFoundError(NotFoundError):
    """One or more objects are missing; ``keys`` lists the keys named in the message."""

    def __init__(
        self,
        message: str = "",
        *,
        code: grpc.StatusCode | None = grpc.StatusCode.NOT_FOUND,
        keys: list[str] | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.keys = list(keys) if keys is not None else _KEY_PATTERN.findall(message)


class RepositoryNotFoundError(NotFoundError):
    """The repository does not exist: create it first (``Repository.initialise()``)."""


class InvalidArgumentError(HoardError, ValueError):
    """The request is malformed: a bad key, a bad name, a hash that does not match."""


class OutOfRangeError(HoardError, ValueError):
    """A read starts past the end of an object."""


class FailedPreconditionError(HoardError, RuntimeError):
    """The request is well formed but the daemon is not in a state to honour it."""


class ResourceExhaustedError(HoardError, RuntimeError):
    """A limit was reached (RESOURCE_EXHAUSTED) that is not a full disk: a message larger
    than the daemon accepts, say. The message names the limit."""


class OverloadedError(ResourceExhaustedError):
    """The daemon is at one of its limits for concurrent streams or response memory. The SDK
    has already retried the call as the daemon asked; try again later, or ask the admin to
    raise the limit the message names."""


class StorageFullError(HoardError, OSError):
    """The daemon's disk or index is full; nothing was stored. ``errno`` is ``ENOSPC``."""

    def __init__(self, message: str = "", *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message, code=code)
        self.errno = errno.ENOSPC
        self.strerror = message


class DataCorruptionError(HoardError, OSError):
    """Stored bytes are damaged or missing; the object cannot be served correctly."""


class PermissionDeniedError(HoardError, PermissionError):
    """The caller is known but may not do this (PERMISSION_DENIED)."""


class AuthenticationError(HoardError, PermissionError):
    """The caller presented no valid credentials (UNAUTHENTICATED)."""


class UnavailableError(HoardError, ConnectionError):
    """The daemon cannot be reached, or went away (UNAVAILABLE)."""


class DeadlineExceededError(HoardError, TimeoutError):
    """The call did not finish within its deadline (DEADLINE_EXCEEDED)."""


_BY_CODE: dict[grpc.StatusCode, type[HoardError]] = {
    grpc.StatusCode.NOT_FOUND: ObjectNotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.DATA_LOSS: DataCorruptionError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


_BY_REASON: dict[str, type[HoardError]] = {
    "STORAGE_FULL": StorageFullError,
    "OVERLOADED": OverloadedError,
}


def error_for_status(code: grpc.StatusCode | None, message: str, reason: str = "") -> HoardError:
    """The exception for a status code, the daemon's ``hoard-reason`` trailer (if any) and
    its message (kept verbatim).

    RESOURCE_EXHAUSTED is a :class:`StorageFullError` only when the daemon says the disk is
    full, an :class:`OverloadedError` when it says it is busy, else a
    :class:`ResourceExhaustedError`. NOT_FOUND is a :class:`RepositoryNotFoundError` when
    the message is about the repository (the daemon's repository messages start with
    ``"repository "``), else an :class:`ObjectNotFoundError`. Codes without a dedicated
    class give a plain HoardError.
    """
    if code is grpc.StatusCode.NOT_FOUND and message.startswith("repository "):
        return RepositoryNotFoundError(message, code=code)
    cls = _BY_CODE.get(code, HoardError) if code is not None else HoardError
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        cls = _BY_REASON.get(reason, cls)
    if not message:
        message = f"the daemon answered {code.name}" if code is not None else "gRPC call failed"
    return cls(message, code=code)


def from_rpc_error(error: grpc.RpcError) -> HoardError:
    """Translate a failed gRPC call into the matching :class:`HoardError`."""
    code = error.code() if callable(getattr(error, "code", None)) else None
    details = error.details() if callable(getattr(error, "details", None)) else None
    reason = ""
    trailers = getattr(error, "trailing_metadata", None)
    if callable(trailers):
        for key, value in trailers() or ():
            if key == "hoard-reason":
                reason = value if isinstance(value, str) else value.decode("ascii", "replace")
    return error_for_status(code, details or "", reason)


@contextlib.contextmanager
def translate_rpc_errors() -> Iterator[None]:
    """Re-raise any ``grpc.RpcError`` raised inside the block as a :class:`HoardError`."""
    try:
        yield
    except grpc.RpcError as error:
        raise from_rpc_error(error) from None
