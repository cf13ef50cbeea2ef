"""Domain errors raised by the storage engine and the services.

Each names a user-visible condition; the servicers map them to gRPC status codes in one
place (``hoard_server.grpc.status``). Messages are written for a person to act on;
``reason`` and ``details`` are for programs: they travel as a ``google.rpc.ErrorInfo``
(domain ``hoard``), and the SDK picks its exception from them, never from the message.
Reasons are UPPER_SNAKE_CASE and stable: clients rely on them.
"""

from __future__ import annotations

ERROR_DOMAIN = "hoard"


class HoardError(Exception):
    """Base of every error the engine raises on purpose.

    ``reason``: a stable name for the condition (subclasses or callers refine it);
    ``details``: what it concerns, as strings (``key``, ``keys``, ``repository``, ``path``,
    ``pack_id``, ``setting``...)."""

    reason: str = "ERROR"  # a subclass's default; an instance may refine it

    def __init__(self, message: str = "", *, reason: str | None = None, **details: object):
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.details: dict[str, str] = {k: str(v) for k, v in details.items() if v is not None}


class InvalidArgument(HoardError):
    """The request is malformed: a bad key, a bad name, a hash that does not match."""

    reason = "INVALID_ARGUMENT"


class NotFound(HoardError):
    """Something the request names does not exist."""

    reason = "NOT_FOUND"


class RepositoryNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"repository {name!r} does not exist; create it first "
            f"(SDK: repository.initialise(), CLI: hoard repo create {name})",
            reason="REPOSITORY_NOT_FOUND",
            repository=name,
        )
        self.name = name


class ObjectNotFound(NotFound):
    def __init__(self, keys: list[str]) -> None:
        shown = ", ".join(keys[:20]) + (f" and {len(keys) - 20} more" if len(keys) > 20 else "")
        noun = "object" if len(keys) == 1 else f"{len(keys)} objects"
        super().__init__(
            f"{noun} not found: {shown}", reason="OBJECT_NOT_FOUND", keys=",".join(keys[:1000])
        )
        self.keys = keys


class OutOfRange(HoardError):
    """A read starts past the end of an object."""

    reason = "OUT_OF_RANGE"


class FailedPrecondition(HoardError):
    """The request is well formed but the system is not in a state to honour it."""

    reason = "FAILED_PRECONDITION"


class Unauthenticated(HoardError):
    """The call carries no credentials the daemon accepts (no token, or an unknown one)."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(HoardError):
    """The request reaches for something the daemon's configuration does not allow."""

    reason = "PERMISSION_DENIED"


class StorageFull(HoardError):
    """The disk (or the index's map) is full; nothing was stored."""

    reason = "STORAGE_FULL"


class Overloaded(HoardError):
    """A daemon limit (streams, response memory) is reached for now; the same request may
    succeed shortly. Not a full disk: clients retry it after ``retry_after`` seconds."""

    reason = "OVERLOADED"

    def __init__(
        self,
        message: str,
        retry_after: float = 0.2,
        *,
        reason: str | None = None,
        **details: object,
    ) -> None:
        super().__init__(message, reason=reason, **details)
        self.retry_after = retry_after


class Unavailable(HoardError):
    """The daemon cannot serve this now but will shortly (it is stopping: the same request
    succeeds against the restarted daemon). Clients retry or resume."""

    reason = "UNAVAILABLE"


class LimitExceeded(HoardError):
    """One request asks for more than a daemon limit allows in one call (a reply too
    large); the same request will fail again: the message names the way around it."""

    reason = "LIMIT_EXCEEDED"


class DataLoss(HoardError):
    """Stored bytes are damaged or missing; the object cannot be served correctly."""

    reason = "DATA_LOSS"
