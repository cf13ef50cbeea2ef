"""Domain errors raised by the storage engine.

Each names a user-visible condition; the servicers map them to gRPC status codes in one
place (``hoard_server.services.status``). Messages are written for a person to act on.
"""

from __future__ import annotations


class HoardError(Exception):
    """Base of every error the engine raises on purpose."""


class InvalidArgument(HoardError):
    """The request is malformed: a bad key, a bad name, a hash that does not match."""


class NotFound(HoardError):
    """Something the request names does not exist."""


class RepositoryNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"repository {name!r} does not exist; create it first "
            f"(SDK: repository.initialise(), CLI: hoard repo create {name})"
        )
        self.name = name


class ObjectNotFound(NotFound):
    def __init__(self, keys: list[str]) -> None:
        shown = ", ".join(keys[:20]) + (f" and {len(keys) - 20} more" if len(keys) > 20 else "")
        noun = "object" if len(keys) == 1 else f"{len(keys)} objects"
        super().__init__(f"{noun} not found: {shown}")
        self.keys = keys


class OutOfRange(HoardError):
    """A read starts past the end of an object."""


class FailedPrecondition(HoardError):
    """The request is well formed but the system is not in a state to honour it."""


class PermissionDenied(HoardError):
    """The request reaches for something the daemon's configuration does not allow."""


class StorageFull(HoardError):
    """The disk (or the index's map) is full; nothing was stored."""


class Overloaded(HoardError):
    """A daemon limit (streams, response memory) is reached for now; the same request may
    succeed shortly. Not a full disk: clients retry it after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 0.2) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DataLoss(HoardError):
    """Stored bytes are damaged or missing; the object cannot be served correctly."""
