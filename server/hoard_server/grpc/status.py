"""The one place an error becomes a gRPC status.

Every servicer method is wrapped with ``grpc_errors``; a user's mistake never reaches the
client as UNKNOWN or INTERNAL. Anything unexpected is logged with its traceback and answered
INTERNAL with a message that says so.

Each status the daemon sends on purpose carries a ``google.rpc.Status`` whose details hold
one ``google.rpc.ErrorInfo``: domain ``hoard``, ``reason`` the error's stable reason,
``metadata`` its details (plus ``repository`` when the request named one). Clients pick
their exception from the reason, never from the message.

RESOURCE_EXHAUSTED means three different things, told apart by the reason: STORAGE_FULL (the
disk or the index is full), OVERLOADED (a daemon limit, for now) or a per-call limit such as
REPLY_TOO_LARGE (``LimitExceeded``: the same call will fail again). Each also sets gRPC's
retry pushback: a busy daemon asks the client's retry policy to come back shortly, a full
disk or a per-call limit asks it not to retry at all.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from hoard_server.errors import (
    ERROR_DOMAIN,
    DataLoss,
    FailedPrecondition,
    HoardError,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    OutOfRange,
    Overloaded,
    PermissionDenied,
    StorageFull,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

_CODES: list[tuple[type[HoardError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (StorageFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DataLoss, grpc.StatusCode.DATA_LOSS),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
]

PUSHBACK_KEY = "grpc-retry-pushback-ms"  # gRPC's retry policy honours it (gRFC A6)


@dataclass(frozen=True, slots=True)
class Failure:
    """What a client is told about an error."""

    code: grpc.StatusCode
    message: str
    reason: str
    details: dict[str, str]
    retry_pushback_ms: int | None = None  # -1: do not retry; None: no advice


def failure_of(exc: BaseException, repository: str = "") -> Failure:
    """The status for ``exc``; ``repository``: the one the request named, if any."""
    named = {"repository": repository} if repository else {}
    for cls, code in _CODES:
        if isinstance(exc, cls):
            assert isinstance(exc, HoardError)
            return Failure(code, str(exc), exc.reason, {**named, **exc.details}, _pushback(exc))
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        path = {"path": str(exc.filename)} if exc.filename else {}
        return Failure(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"no space left on the storage device: {exc}",
            StorageFull.reason,
            {**named, **path},
            -1,
        )
    return Failure(
        grpc.StatusCode.INTERNAL,
        f"internal error ({type(exc).__name__}): {exc}; see the server log",
        "INTERNAL",
        named,
    )


def _pushback(exc: HoardError) -> int | None:
    if isinstance(exc, Overloaded):
        return int(exc.retry_after * (1 + random.random()) * 1000)  # jitter: not all at once
    if exc.reason == StorageFull.reason or isinstance(exc, LimitExceeded):
        return -1  # retrying will not help
    return None


def status_of(failure: Failure) -> grpc.Status:
    """The ``grpc.Status`` to abort with: code, message and the ErrorInfo (plus pushback)."""
    info = error_details_pb2.ErrorInfo(
        reason=failure.reason, domain=ERROR_DOMAIN, metadata=failure.details
    )
    detail = status_pb2.Status(code=failure.code.value[0], message=failure.message)
    detail.details.add().Pack(info)
    status = rpc_status.to_status(detail)
    extra: tuple[tuple[str, str], ...] = ()
    if failure.retry_pushback_ms is not None:
        extra = ((PUSHBACK_KEY, str(failure.retry_pushback_ms)),)
    return status._replace(trailing_metadata=(*status.trailing_metadata, *extra))


def abort(
    context: grpc.ServicerContext, exc: BaseException, method: str, repository: str = ""
) -> None:
    """End the call with the status for ``exc`` (raises, as ``context.abort`` does)."""
    failure = failure_of(exc, repository)
    if failure.code == grpc.StatusCode.INTERNAL:
        log.error("%s failed", method, exc_info=exc)
    else:
        log.debug("%s: %s %s: %s", method, failure.code.name, failure.reason, failure.message)
    context.abort_with_status(status_of(failure))


def _repository_of(request: object) -> str:
    """The repository a request message names, at its top or in its ``node`` (datasets);
    '' for a request stream, or none."""
    name = getattr(request, "repository", None)
    if name is None:
        name = getattr(getattr(request, "node", None), "repository", "")
    return name if isinstance(name, str) else ""


def grpc_errors(method: Callable) -> Callable:
    """Wrap a servicer method (unary or response-streaming) so errors become statuses."""
    name = method.__qualname__
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def streaming(self, request, context):
            try:
                yield from method(self, request, context)
            except grpc.RpcError:
                raise
            except Exception as exc:
                if context.is_active() or not isinstance(exc, GeneratorExit):
                    abort(context, exc, name, _repository_of(request))

        return streaming

    @functools.wraps(method)
    def unary(self, request, context):
        try:
            return method(self, request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:
            abort(context, exc, name, _repository_of(request))

    return unary
