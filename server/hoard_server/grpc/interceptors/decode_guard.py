"""Requests that do not parse get INVALID_ARGUMENT (reason UNDECODABLE_REQUEST) and one log
line, not INTERNAL.

gRPC's own deserialisation failure answers INTERNAL and logs a traceback per request, so a
broken or hostile client could flood the log while being told the fault is the server's.
This interceptor takes over decoding for every method: handlers receive the raw bytes, the
interceptor parses them with the method's own deserializer and answers a failure itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from hoard_server.errors import InvalidArgument
from hoard_server.grpc.interceptors.handlers import keep_markers
from hoard_server.grpc.status import abort

log = logging.getLogger(__name__)


class UndecodableRequest(InvalidArgument):
    """A request message that is not a valid encoding of the method's request type."""

    reason = "UNDECODABLE_REQUEST"


def _message_name(parse: Callable[[bytes], Any]) -> str:
    cls = getattr(parse, "__self__", None)
    descriptor = getattr(cls, "DESCRIPTOR", None)
    return descriptor.full_name if descriptor is not None else "request"


class DecodeGuard(grpc.ServerInterceptor):
    """Wraps each method handler so that its request messages are decoded here."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        parse = handler.request_deserializer
        expected = _message_name(parse)

        def decode(data: bytes, context: grpc.ServicerContext) -> Any:
            try:
                return parse(data)
            except Exception as exc:
                reason = str(exc).rsplit(": ", 1)[-1] or type(exc).__name__
                log.warning("undecodable request to %s from %s: %s", method, context.peer(), reason)
                raise UndecodableRequest(
                    f"the request to {method} is not a valid {expected} message ({reason}); "
                    "is the client built from the same hoard.v1 protos?",
                    method=method,
                ) from None

        def requests(iterator: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[Any]:
            for data in iterator:
                yield decode(data, context)

        def unary_in(behaviour: Callable) -> Callable:
            def handle(data: bytes, context: grpc.ServicerContext, *more: Any) -> Any:
                try:
                    request = decode(data, context)
                except UndecodableRequest as exc:
                    abort(context, exc, method)
                return behaviour(request, context, *more)

            # A non-blocking handler (health's Watch) gets grpc's send_response_callback as a
            # third argument and returns at once instead of holding a worker: keep it so.
            return keep_markers(behaviour, handle)

        def stream_in_unary_out(behaviour: Callable) -> Callable:
            def handle(iterator: Iterator[bytes], context: grpc.ServicerContext) -> Any:
                try:
                    return behaviour(requests(iterator, context), context)
                except UndecodableRequest as exc:  # a servicer that did not map it itself
                    abort(context, exc, method)

            return handle

        def stream_in_stream_out(behaviour: Callable) -> Callable:
            def handle(iterator: Iterator[bytes], context: grpc.ServicerContext) -> Iterator:
                try:
                    yield from behaviour(requests(iterator, context), context)
                except UndecodableRequest as exc:
                    abort(context, exc, method)

            return handle

        if handler.unary_unary is not None:
            changes = {"unary_unary": unary_in(handler.unary_unary)}
        elif handler.unary_stream is not None:
            changes = {"unary_stream": unary_in(handler.unary_stream)}
        elif handler.stream_unary is not None:
            changes = {"stream_unary": stream_in_unary_out(handler.stream_unary)}
        else:
            changes = {"stream_stream": stream_in_stream_out(handler.stream_stream)}
        return handler._replace(request_deserializer=None, **changes)
