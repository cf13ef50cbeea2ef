"""The one place a domain error becomes a gRPC status code.

Every servicer method is wrapped with ``grpc_errors``; a user's mistake never reaches the
client as UNKNOWN or INTERNAL. Anything unexpected is logged with its traceback and answered
INTERNAL with a message that says so.

RESOURCE_EXHAUSTED means two different things, so it carries a ``hoard-reason`` trailer
(``STORAGE_FULL`` or ``OVERLOADED``) and gRPC's retry pushback: a busy daemon asks the
client's retry policy to come back shortly, a full disk asks it not to retry at all.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import random
from collections.abc import Callable

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from hoard_server.errors import (
    ERROR_DOMAIN,
    DataLoss,
    FailedPrecondition,
    HoardError,
    InvalidArgument,
    NotFound,
    OutOfRange,
    Overloaded,
    PermissionDenied,
    StorageFull,
)

log = logging.getLogger(__name__)

_CODES: list[tuple[type[HoardError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (StorageFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DataLoss, grpc.StatusCode.DATA_LOSS),
]


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code, str(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, f"no space left on the storage device: {exc}"
    return (
        grpc.StatusCode.INTERNAL,
        f"internal error ({type(exc).__name__}): {exc}; see the server log",
    )


REASON_KEY = "hoard-reason"
PUSHBACK_KEY = "grpc-retry-pushback-ms"  # gRPC's retry policy honours it (gRFC A6)


def trailers_of(exc: BaseException, code: grpc.StatusCode) -> tuple[tuple[str, str], ...]:
    """Machine-readable trailers for a status: which RESOURCE_EXHAUSTED it is."""
    if isinstance(exc, Overloaded):
        delay = exc.retry_after * (1 + random.random())  # jitter: not all at once
        return ((REASON_KEY, "OVERLOADED"), (PUSHBACK_KEY, str(int(delay * 1000))))
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ((REASON_KEY, "STORAGE_FULL"), (PUSHBACK_KEY, "-1"))  # retrying will not help
    return ()


def _abort(context: grpc.ServicerContext, exc: BaseException, method: str) -> None:
    code, message = status_of(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.error("%s failed", method, exc_info=exc)
    else:
        log.debug("%s: %s: %s", method, code.name, message)
    # The SDK picks its exception from this ErrorInfo, never from the message.
    info = error_details_pb2.ErrorInfo(
        domain=ERROR_DOMAIN,
        reason=_reason_of(exc, code),
        metadata=getattr(exc, "details", None) or {},
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    trailers = (*trailers_of(exc, code), (STATUS_DETAILS_KEY, status.SerializeToString()))
    context.abort_with_status(_Status(code, message, trailers))


STATUS_DETAILS_KEY = "grpc-status-details-bin"


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def _reason_of(exc: BaseException, code: grpc.StatusCode) -> str:
    """The domain error's reason; for anything else, the status code's name (STORAGE_FULL
    for a full disk reported by the OS)."""
    if isinstance(exc, HoardError):
        return exc.reason
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "STORAGE_FULL"
    return code.name


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
                    _abort(context, exc, name)

        return streaming

    @functools.wraps(method)
    def unary(self, request, context):
        try:
            return method(self, request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:
            _abort(context, exc, name)

    return unary
