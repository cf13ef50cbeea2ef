"""The one place every call's token and role are checked (the contract of access.proto).

At ``intercept_service`` time, before any request is decoded, the ``authorization: Bearer
<token>`` metadata is looked up: none, or a token the tokens file does not know, is
UNAUTHENTICATED and the call's requests are never parsed. A known token's grants are then
checked against the method's rule on each decoded request: for a client stream, every
message that names a repository (the first must). Runs after ``DecodeGuard``, which hands it
decoded requests.

Calls of methods that need write or admin leave one line on the ``hoard.audit`` logger:
``audit: <token> <method> repository=<repo> -> <status>``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from hoard_server.auth.access import AccessPolicy, MethodAccess
from hoard_server.auth.tokens import Grants, Role, Tokens
from hoard_server.errors import PermissionDenied, Unauthenticated
from hoard_server.grpc import call as calls
from hoard_server.grpc.interceptors.handlers import keep_markers, kind_of
from hoard_server.grpc.status import abort

__all__ = ["Authorization"]

log = logging.getLogger(__name__)
audit_log = logging.getLogger("hoard.audit")

# The Call this interceptor began on this worker thread, when no outer interceptor began one:
# grpc's workers keep their context between calls, so such a Call is stale at the next one.
_BEGUN_HERE: contextvars.ContextVar[calls.Call | None] = contextvars.ContextVar(
    "hoard_auth_call", default=None
)


def bearer_token(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The token of ``authorization: Bearer <token>``, or None."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class Authorization(grpc.ServerInterceptor):
    """Checks token and role of every call against ``tokens`` and the ``policy``."""

    def __init__(self, tokens: Tokens, policy: AccessPolicy) -> None:
        self._tokens = tokens
        self._policy = policy

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return None  # grpc answers UNIMPLEMENTED
        if method not in self._policy:  # a handler added outside the service table
            return _refusing(
                handler,
                PermissionDenied(
                    f"{method} is served outside the daemon's service table, so no rule says "
                    "who may call it: refused",
                    reason="ROLE_MISSING",
                ),
                method,
            )
        rule = self._policy.rule(method)
        if rule is None:
            return handler  # open to everyone (health)
        token = bearer_token(handler_call_details.invocation_metadata)
        if token is None:
            return _refusing(handler, _missing(rule), method)
        grants = self._tokens.authenticate(token)
        if grants is None:
            return _refusing(handler, _unknown(rule), method)
        return _Checked(rule, grants).wrap(handler)


def _missing(rule: MethodAccess) -> Unauthenticated:
    return Unauthenticated(
        f"{rule.name} needs a token: send the metadata 'authorization: Bearer <token>' "
        "(SDK: hoard.connect(token=...), CLI: --token or HOARD_TOKEN); an admin makes one "
        "with `hoard token add NAME --role REPOSITORY=ROLE`",
        reason="TOKEN_MISSING",
    )


def _unknown(rule: MethodAccess) -> Unauthenticated:
    return Unauthenticated(
        f"{rule.name}: the daemon does not know this token (removed, mistyped, or made for "
        "another daemon's tokens file); ask an admin for a token (`hoard token ls` lists "
        "the names it knows)",
        reason="TOKEN_UNKNOWN",
    )


def _refusing(handler: grpc.RpcMethodHandler, exc: Exception, method: str) -> Any:
    """``handler`` answering ``exc`` at once; no request is decoded (DecodeGuard leaves a
    handler without a deserializer alone)."""

    def refuse(request: Any, context: grpc.ServicerContext, *more: Any) -> Any:
        log.info("refused %s from %s: %s", method, context.peer(), getattr(exc, "reason", exc))
        abort(context, exc, method)

    return handler._replace(request_deserializer=None, **{kind_of(handler): refuse})


class _Checked:
    """The handler of one authenticated call: checks its requests, records it."""

    def __init__(self, rule: MethodAccess, grants: Grants) -> None:
        self.rule = rule
        self.grants = grants
        self.seen: list[str] = []  # the repositories the call's requests named

    def wrap(self, handler: grpc.RpcMethodHandler) -> Any:
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._unary_in(handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._unary_in_stream_out(handler.unary_stream))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=self._stream_in(handler.stream_unary))
        return handler._replace(stream_stream=self._stream_in_stream_out(handler.stream_stream))

    # -- the four kinds ----------------------------------------------------------------

    def _unary_in(self, behaviour: Callable) -> Callable:
        def handle(request: Any, context: grpc.ServicerContext, *more: Any) -> Any:
            self._enter(context)
            with self._audit(context):
                self._check_request(request, context)
                return behaviour(request, context, *more)

        return keep_markers(behaviour, handle)

    def _unary_in_stream_out(self, behaviour: Callable) -> Callable:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self._enter(context)
            with self._audit(context):
                self._check_request(request, context)
                yield from behaviour(request, context)

        return handle

    def _stream_in(self, behaviour: Callable) -> Callable:
        def handle(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            self._enter(context)
            with self._audit(context):
                try:
                    return behaviour(self._checked(requests), context)
                except PermissionDenied as exc:  # a servicer that did not map it itself
                    abort(context, exc, self.rule.method)

        return handle

    def _stream_in_stream_out(self, behaviour: Callable) -> Callable:
        def handle(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            self._enter(context)
            with self._audit(context):
                try:
                    yield from behaviour(self._checked(requests), context)
                except PermissionDenied as exc:
                    abort(context, exc, self.rule.method)

        return handle

    # -- checks ------------------------------------------------------------------------

    def _check_request(self, request: Any, context: grpc.ServicerContext) -> None:
        if not self.rule.paths:
            return  # names no repository: a known token is enough
        for repository in dict.fromkeys(self.rule.named(request) or [""]):
            try:
                self._check(repository)
            except PermissionDenied as exc:
                abort(context, exc, self.rule.method, repository)

    def _checked(self, requests: Iterator[Any]) -> Iterator[Any]:
        """The request stream, each message naming a repository checked before the servicer
        sees it. The first message must name one (later ones may leave it empty: the same
        one). May run on a thread of the servicer's (an Append's read-ahead)."""
        first = True
        for message in requests:
            if self.rule.paths:
                named = [r for r in self.rule.named(message) if r]
                for repository in dict.fromkeys(named or ([""] if first else [])):
                    self._check(repository)
            first = False
            yield message

    def _check(self, repository: str) -> None:
        if repository not in self.seen:
            self.seen.append(repository)
        role = self.rule.role
        if role is None or self.grants.allows(role, repository):
            return
        raise _role_missing(self.rule, self.grants, role, repository)

    # -- the call's context and audit line ---------------------------------------------

    def _enter(self, context: grpc.ServicerContext) -> None:
        """Tell the rest of the call (the repositories' listing, log records) who calls."""
        call = calls.current()
        if call is None or call is _BEGUN_HERE.get():
            call = calls.Call(self.rule.method, "", context.peer())
            calls.begin(call)
            _BEGUN_HERE.set(call)
        call.token = self.grants.name
        call.grants = self.grants

    @contextlib.contextmanager
    def _audit(self, context: grpc.ServicerContext) -> Iterator[None]:
        if self.rule.role is None or self.rule.role < Role.WRITE:
            yield
            return
        status = "OK"
        try:
            yield
            status = _code_name(context.code(), "OK")
        except GeneratorExit:
            status = _code_name(context.code(), "CANCELLED")
            raise
        except BaseException:
            status = _code_name(context.code(), "UNKNOWN")
            raise
        finally:
            repositories = ",".join(self.seen) or "-"
            audit_log.info(
                "audit: %s %s repository=%s -> %s",
                self.grants.name,
                self.rule.name,
                repositories,
                status,
            )


def _code_name(code: grpc.StatusCode | None, otherwise: str) -> str:
    return code.name if code is not None else otherwise


def _role_missing(
    rule: MethodAccess, grants: Grants, role: Role, repository: str
) -> PermissionDenied:
    name = grants.name
    if not repository:
        message = (
            f"{rule.name} names no repository, and token {name!r} has roles only on "
            f"{', '.join(sorted(grants.roles)) or 'none'}"
        )
    else:
        have = grants.role_on(repository)
        has = f"has {have.label} on {repository!r}" if have else f"has no role on {repository!r}"
        message = (
            f"token {name!r} {has} but {rule.name} needs {role.label}; ask an admin for a "
            f"token with that role: hoard token add NAME --role {repository}={role.label}"
        )
    return PermissionDenied(
        message, reason="ROLE_MISSING", repository=repository, role=role.label, token=name
    )
