"""The SDK's exceptions, and the one place a failed call becomes one of them.

Every exception derives from :class:`HoardError` and from the built-in exception a Python
program (or AiiDA) already catches for that condition: a missing object is a
``FileNotFoundError``, a bad argument a ``ValueError``, a full disk an ``OSError`` with
``errno.ENOSPC``.

The daemon says what went wrong in a ``google.rpc.ErrorInfo`` (domain ``hoard``) carried in
the status details: its ``reason`` picks the exception, its ``metadata`` becomes
``.details``. The message is kept as the text for people and never parsed. A status without
an ErrorInfo (from gRPC itself, or an older daemon) is mapped by its code alone.

Failures to get in (no token, a token without the role needed, a TLS handshake that fails)
get a message of the SDK's own, naming the daemon (an :class:`Endpoint`) and what to change
on this side. gRPC reports a failed handshake only as UNAVAILABLE with OpenSSL's words in the
text: that text is the one read here, to tell a TLS failure from an absent daemon.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "ERROR_DOMAIN",
    "AccessDeniedError",
    "AuthenticationError",
    "ConnectionSettingsError",
    "DataCorruptionError",
    "DatasetFileNotFoundError",
    "DatasetNotFoundError",
    "DeadlineExceededError",
    "DtypeMismatchError",
    "Endpoint",
    "FailedPreconditionError",
    "FileAlreadyExistsError",
    "FileDamagedError",
    "FolderNotFoundError",
    "HoardError",
    "InvalidArgumentError",
    "InvalidMachineIdError",
    "InvalidMetadataValueError",
    "InvalidPageTokenError",
    "InvalidPathError",
    "InvalidPatternError",
    "InvalidQueryError",
    "InvalidSelectionError",
    "LengthMismatchError",
    "MetadataNotFoundError",
    "NotADatasetError",
    "NotAGroupError",
    "NotASyncDirectoryError",
    "NotFoundError",
    "NotHDF5Error",
    "ObjectNotFoundError",
    "OutOfRangeError",
    "OutsideSyncRootsError",
    "OverloadedError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "ReplyTooLargeError",
    "RepositoryNotFoundError",
    "ResourceExhaustedError",
    "SelectionOutOfRangeError",
    "ShapeMismatchError",
    "StorageFullError",
    "TLSError",
    "TooManyRecordsError",
    "TypeMismatchError",
    "UnavailableError",
    "UnknownFieldError",
    "error_for_status",
    "error_info",
    "from_rpc_error",
    "retry_pushback",
]

ERROR_DOMAIN = "hoard"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
PUSHBACK_KEY = "grpc-retry-pushback-ms"
REQUEST_ID_KEY = "x-request-id"


class HoardError(Exception):
    """Base of every error the SDK raises.

    ``code``: the gRPC status, if a call failed; ``reason``: the daemon's stable name for
    the condition ("" when it gave none); ``details``: what it concerns (``key``,
    ``repository``, ``path``, ...), as strings; ``request_id``: the daemon's id of the call
    (the same one is in its log), shown after the message.
    """

    def __init__(
        self,
        message: str = "",
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        details: Mapping[str, str] | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.details: dict[str, str] = dict(details or {})
        self.request_id = request_id

    def __str__(self) -> str:
        if self.request_id:
            return f"{self.message} (request id {self.request_id})"
        return self.message


class NotFoundError(HoardError, FileNotFoundError):
    """Something the request names does not exist (NOT_FOUND)."""


class ObjectNotFoundError(NotFoundError):
    """One or more objects are missing; ``keys`` lists them (from the daemon's details)."""

    def __init__(
        self,
        message: str = "",
        *,
        code: grpc.StatusCode | None = grpc.StatusCode.NOT_FOUND,
        reason: str = "OBJECT_NOT_FOUND",
        details: Mapping[str, str] | None = None,
        keys: Sequence[str] | None = None,
        request_id: str = "",
    ) -> None:
        details = dict(details or {})
        if keys is None:
            joined = details.get("keys") or details.get("key") or ""
            keys = [k for k in joined.split(",") if k]
        elif "keys" not in details:
            details["keys"] = ",".join(keys)
        super().__init__(message, code=code, reason=reason, details=details, request_id=request_id)
        self.keys = list(keys)


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


class QuotaExceededError(ResourceExhaustedError, OSError):
    """The repository is at its byte quota (QUOTA_EXCEEDED); nothing was stored, and the
    same write fails again until space is freed (delete, then compact) or the quota raised.
    ``errno`` is ``EDQUOT``, as a file system says it; ``details`` has ``quota`` and
    ``used``."""

    def __init__(self, message: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.errno = errno.EDQUOT
        self.strerror = message


class StorageFullError(HoardError, OSError):
    """The daemon's disk or index is full; nothing was stored. ``errno`` is ``ENOSPC``."""

    def __init__(self, message: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.errno = errno.ENOSPC
        self.strerror = message


class DataCorruptionError(HoardError, OSError):
    """Stored bytes are damaged or missing; the object cannot be served correctly."""


class PermissionDeniedError(HoardError, PermissionError):
    """The caller is known but may not do this (PERMISSION_DENIED)."""


class AccessDeniedError(PermissionDeniedError):
    """The token lacks the role the call needs on its repository (ROLE_MISSING); ``details``
    hold ``repository``, ``role`` (the one needed) and ``token`` (the token's name)."""


class AuthenticationError(HoardError, PermissionError):
    """The caller presented no token, or one the daemon does not know (UNAUTHENTICATED)."""


class UnavailableError(HoardError, ConnectionError):
    """The daemon cannot be reached, or went away (UNAVAILABLE)."""


class TLSError(UnavailableError):
    """The TLS handshake with the daemon failed; the message says the likely cause (a wrong
    CA, a server name the certificate lacks, a client certificate missing or refused, TLS
    on one side only)."""


class ConnectionSettingsError(HoardError, ValueError):
    """A connection cannot be made as asked: a token over plain TCP to another host, a
    client certificate without its key, a token or certificate file that cannot be read."""


@dataclass(frozen=True)
class Endpoint:
    """The daemon a call went to and how it was reached, for messages that say what to do.

    ``token``: where the token came from (``"token="``, ``"HOARD_TOKEN"``, a file), "" for
    none; ``client_certificate``: the certificate file presented, "" for none."""

    target: str = ""
    tls: bool = False
    client_certificate: str = ""
    token: str = ""


class DeadlineExceededError(HoardError, TimeoutError):
    """The call did not finish within its deadline (DEADLINE_EXCEEDED)."""


_BY_CODE: dict[grpc.StatusCode, type[HoardError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
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

# -- the datasets face (reasons listed in datasets.proto) ---------------------------------------


class InvalidPathError(InvalidArgumentError):
    """A file or folder path is malformed or leaves the repository (INVALID_PATH)."""


class DatasetFileNotFoundError(NotFoundError):
    """The HDF5 file (or plain file) the request names does not exist (FILE_NOT_FOUND);
    also the metadata cache's ReadFile of a file that is gone."""


class FolderNotFoundError(NotFoundError):
    """The folder the request names does not exist (FOLDER_NOT_FOUND)."""


class DatasetNotFoundError(NotFoundError, KeyError):
    """No dataset or group of that name in the file (DATASET_NOT_FOUND); a ``KeyError`` too,
    as in h5py."""


class MetadataNotFoundError(NotFoundError, KeyError):
    """The node has no attribute of that name (METADATA_NOT_FOUND)."""


class FileAlreadyExistsError(FailedPreconditionError, FileExistsError):
    """The target file exists and overwriting was not asked for (FILE_EXISTS)."""


class NotHDF5Error(InvalidArgumentError):
    """The file is not HDF5 (NOT_HDF5)."""


class ShapeMismatchError(InvalidArgumentError):
    """The data's shape does not fit the dataset (SHAPE_MISMATCH)."""


class DtypeMismatchError(InvalidArgumentError, TypeError):
    """The data's dtype does not fit the dataset (DTYPE_MISMATCH)."""


class InvalidSelectionError(InvalidArgumentError, IndexError):
    """The selection is not one HDF5 can make (INVALID_SELECTION)."""


class SelectionOutOfRangeError(OutOfRangeError, IndexError):
    """The selection reaches past the dataset's extent (SELECTION_OUT_OF_RANGE)."""


class ReplyTooLargeError(ResourceExhaustedError):
    """The selection is above the daemon's one-reply limit (REPLY_TOO_LARGE); the SDK reads
    such selections streamed, so users do not meet this."""


class NotADatasetError(FailedPreconditionError, TypeError):
    """The node is a group where a dataset was expected (NOT_A_DATASET)."""


class NotAGroupError(FailedPreconditionError, TypeError):
    """The node is a dataset where a group was expected (NOT_A_GROUP)."""


class LengthMismatchError(FailedPreconditionError):
    """An append's ``expected_length`` is not the dataset's length (LENGTH_MISMATCH)."""


class FileDamagedError(DataCorruptionError):
    """The HDF5 file cannot be read correctly (FILE_DAMAGED)."""


# -- the metadata cache (reasons listed in metadata.proto) ---------------------------------------
#
# A bad query is a ValueError where qass's users (SQLAlchemy) meet one, and more precisely an
# AttributeError for a field no record has (``BM.no_such_field``) and a TypeError for a value
# of the wrong type (``M.channel == "one"`` against a number field). The SDK's query builder
# raises the same classes for what it can see before sending.


class InvalidQueryError(InvalidArgumentError):
    """A malformed query: bad syntax, an operator with the wrong values, null compared with
    < or >, a NaN (INVALID_QUERY)."""


class UnknownFieldError(InvalidQueryError, AttributeError):
    """The query names a field no record has (UNKNOWN_FIELD); ``field`` names it."""

    def __init__(self, message: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.field = self.details.get("field", "")


class TypeMismatchError(InvalidQueryError, TypeError):
    """A value of a type the field never holds (TYPE_MISMATCH), or a Python value that is
    no metadata value at all."""


class InvalidPageTokenError(InvalidArgumentError):
    """The resume token is damaged or belongs to another query (INVALID_PAGE_TOKEN)."""


class InvalidMetadataValueError(InvalidArgumentError):
    """A pushed record holds a value or field name the index cannot store (INVALID_VALUE)."""


class TooManyRecordsError(InvalidArgumentError):
    """More records in one push than the daemon takes (TOO_MANY_RECORDS); the SDK splits
    its pushes, so users do not meet this."""


class InvalidMachineIdError(InvalidArgumentError):
    """The machine_id is reserved for the daemon's own records (it starts with "@")
    (INVALID_MACHINE_ID)."""


class InvalidPatternError(InvalidArgumentError):
    """A sync's regex or glob pattern does not compile (INVALID_PATTERN)."""


class NotASyncDirectoryError(InvalidArgumentError, NotADirectoryError):
    """A path given to synchronize_directory is not a directory (NOT_A_DIRECTORY)."""


class OutsideSyncRootsError(PermissionDeniedError):
    """A server-side sync or read names a path outside the daemon's sync roots
    (OUTSIDE_SYNC_ROOTS): sync it from the workstation instead (client-side), or ask the
    admin to add a ``--sync-root``."""


# Reasons that name a narrower condition than their status code. Any other reason (INVALID_KEY,
# HASH_MISMATCH, DATA_LOSS, ...) is kept on the exception and the code picks the class.
_BY_REASON: dict[str, type[HoardError]] = {
    "OBJECT_NOT_FOUND": ObjectNotFoundError,
    "REPOSITORY_NOT_FOUND": RepositoryNotFoundError,
    "STORAGE_FULL": StorageFullError,
    "OVERLOADED": OverloadedError,
    "QUOTA_EXCEEDED": QuotaExceededError,
    "INVALID_PATH": InvalidPathError,
    "FILE_NOT_FOUND": DatasetFileNotFoundError,
    "FOLDER_NOT_FOUND": FolderNotFoundError,
    "DATASET_NOT_FOUND": DatasetNotFoundError,
    "METADATA_NOT_FOUND": MetadataNotFoundError,
    "FILE_EXISTS": FileAlreadyExistsError,
    "NOT_HDF5": NotHDF5Error,
    "SHAPE_MISMATCH": ShapeMismatchError,
    "DTYPE_MISMATCH": DtypeMismatchError,
    "INVALID_SELECTION": InvalidSelectionError,
    "SELECTION_OUT_OF_RANGE": SelectionOutOfRangeError,
    "REPLY_TOO_LARGE": ReplyTooLargeError,
    "NOT_A_DATASET": NotADatasetError,
    "NOT_A_GROUP": NotAGroupError,
    "LENGTH_MISMATCH": LengthMismatchError,
    "FILE_DAMAGED": FileDamagedError,
    "ROLE_MISSING": AccessDeniedError,
    "INVALID_QUERY": InvalidQueryError,
    "UNKNOWN_FIELD": UnknownFieldError,
    "TYPE_MISMATCH": TypeMismatchError,
    "INVALID_PAGE_TOKEN": InvalidPageTokenError,
    "INVALID_VALUE": InvalidMetadataValueError,
    "TOO_MANY_RECORDS": TooManyRecordsError,
    "INVALID_PATTERN": InvalidPatternError,
    "INVALID_MACHINE_ID": InvalidMachineIdError,
    "NOT_A_DIRECTORY": NotASyncDirectoryError,
    "OUTSIDE_SYNC_ROOTS": OutsideSyncRootsError,
}


def error_for_status(
    code: grpc.StatusCode | None,
    message: str,
    reason: str = "",
    details: Mapping[str, str] | None = None,
    request_id: str = "",
) -> HoardError:
    """The exception for a status ``code``, the daemon's ``reason`` and ``details`` (from
    its ErrorInfo) and its ``message`` (kept verbatim, never inspected).

    A RESOURCE_EXHAUSTED is a :class:`StorageFullError` only when the reason says the disk
    is full; codes without a dedicated class give a plain :class:`HoardError`.
    """
    cls = _BY_REASON.get(reason) or (_BY_CODE.get(code, HoardError) if code else HoardError)
    if not message:
        message = f"the daemon answered {code.name}" if code is not None else "gRPC call failed"
    return cls(message, code=code, reason=reason, details=details, request_id=request_id)


def _trailers(error: grpc.RpcError) -> Sequence[tuple[str, str | bytes]]:
    trailing = getattr(error, "trailing_metadata", None)
    return (trailing() or ()) if callable(trailing) else ()


def error_info(trailers: Sequence[tuple[str, str | bytes]]) -> tuple[str, dict[str, str]]:
    """``(reason, metadata)`` of the hoard ErrorInfo in a call's trailers; ``("", {})`` when
    there is none (or it does not decode)."""
    for key, value in trailers:
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:  # a garbled trailer is no reason to hide the status itself
            return "", {}
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                return info.reason, dict(info.metadata)
    return "", {}


def retry_pushback(error: grpc.RpcError) -> float | None:
    """The delay (seconds) after which the daemon says a retry may succeed; negative when
    it says not to retry; None when it said nothing."""
    for key, value in _trailers(error):
        if key == PUSHBACK_KEY:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            try:
                return int(text) / 1000
            except ValueError:
                return None
    return None


def request_id(error: grpc.RpcError) -> str:
    """The daemon's id of the failed call (``x-request-id``, in its initial or trailing
    metadata); "" when it sent none."""
    for name in ("initial_metadata", "trailing_metadata"):
        getter = getattr(error, name, None)
        for key, value in (getter() or ()) if callable(getter) else ():
            if key == REQUEST_ID_KEY:
                return value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return ""


def from_rpc_error(error: grpc.RpcError, endpoint: Endpoint | None = None) -> HoardError:
    """Translate a failed gRPC call into the matching :class:`HoardError`; with the
    ``endpoint`` it went to, failures to get in say which daemon and what to change."""
    code = error.code() if callable(getattr(error, "code", None)) else None
    message = error.details() if callable(getattr(error, "details", None)) else None
    reason, details = error_info(_trailers(error))
    rid = request_id(error)
    if endpoint is not None and code is grpc.StatusCode.UNAVAILABLE:
        cause = tls_failure(message or "", endpoint)
        if cause:
            text = f"TLS with the daemon at {endpoint.target} failed: {cause} (gRPC: {message})"
            return TLSError(text, code=code, reason=reason, details=details, request_id=rid)
    if endpoint is not None and code is grpc.StatusCode.UNAUTHENTICATED:
        message = _not_authenticated(reason, endpoint)
    elif endpoint is not None and reason == "ROLE_MISSING":
        message = _role_missing(details, endpoint)
    return error_for_status(code, message or "", reason, details, rid)


def _not_authenticated(reason: str, endpoint: Endpoint) -> str:
    server = f"the daemon at {endpoint.target}"
    if endpoint.token and reason != "TOKEN_MISSING":
        return (
            f"{server} does not know the token from {endpoint.token}: it was revoked, "
            "mistyped or made for another daemon; ask its admin for one (hoard token add)"
        )
    return (
        f"{server} needs a token: pass token= (--token, HOARD_TOKEN) or a file holding it "
        "(token_file=, --token-file, HOARD_TOKEN_FILE)"
    )


def _role_missing(details: Mapping[str, str], endpoint: Endpoint) -> str:
    role = details.get("role", "").lower().removeprefix("role_") or "a higher"
    repository = details.get("repository") or "?"
    token = details.get("token") or "?"
    return (
        f"token {token!r} may not do this on repository {repository!r} at the daemon at "
        f"{endpoint.target}: it needs the {role} role there; ask an admin of the daemon to "
        "grant it, or use a token that has it"
    )


def tls_failure(message: str, endpoint: Endpoint) -> str:
    """The likely cause of a failed connection when gRPC's ``message`` (UNAVAILABLE) says
    it failed in or around the TLS handshake; "" when it does not."""
    if "failed to connect" not in message and "handshake" not in message.lower():
        return ""  # an established connection that went away, not a failure to get in
    if "Hostname Verification" in message or "No match found for server name" in message:
        return (
            "its certificate is not made out to the name connected to: pass the name it "
            "has as tls_server_name= (--tls-server-name, HOARD_TLS_SERVER_NAME)"
        )
    if "CERTIFICATE_VERIFY_FAILED" in message:
        return (
            "its certificate is not signed by the CA given (tls_ca=, --tls-ca, HOARD_TLS_CA), "
            "or has expired: check the CA file, and that this is the daemon meant"
        )
    if "WRONG_VERSION_NUMBER" in message and endpoint.tls:
        return (
            "it does not speak TLS on this port: connect without tls_ca (--tls-ca, "
            "HOARD_TLS_CA), or to its TLS address"
        )
    if "Socket closed" in message:
        if not endpoint.tls:
            return (
                "it closed the connection at once, as a TLS port does to a plain client: "
                "pass the CA of its certificate as tls_ca= (--tls-ca, HOARD_TLS_CA)"
            )
        if endpoint.client_certificate:
            return (
                f"it refused the client certificate {endpoint.client_certificate}: it is "
                "not signed by the daemon's client CA, or has expired"
            )
        return (
            "it closed the connection during the handshake, as a daemon that requires "
            "client certificates (mutual TLS) does: pass tls_cert= and tls_key= "
            "(--tls-cert/--tls-key, HOARD_TLS_CERT/HOARD_TLS_KEY)"
        )
    if any(sign in message for sign in ("SSL_ERROR", "Tls handshake", "TSI_")):
        return "the handshake failed"
    return ""
