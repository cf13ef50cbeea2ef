"""Every call gets a request id and is counted, timed and sized in the metrics.

The outermost of hoard's interceptors (``daemon/services.py``). On the worker thread that
serves the call it begins the call's context (``grpc.call``), so log lines and the inner
interceptors know the call; the request id is the client's ``x-request-id`` if it sent a
sane one, else a new random one, and goes back to the client in the trailing metadata
(errors included) and, for response streams, in the initial metadata, sent just before the
first response (a unary call's answer comes with its trailers anyway, and headers of their
own cost it a round of gRPC's batch machinery: about a tenth of a small call's rate). Not
earlier: gRPC commits a call once its client has received headers, and a committed call is
never retried, so headers sent at the start would stop the client's retry policy from
retrying a call refused with a pushback (OVERLOADED); a call that fails before answering
therefore sends none.

A call is counted once, with its final status code, by whichever sees its end first: the
handler returning or raising (the code an abort set, OK otherwise), or, for a stream or a
non-blocking handler, gRPC's termination callback when the client cancelled it or its
deadline passed (CANCELLED, DEADLINE_EXCEEDED). So a stream the client walked away from is
counted too.
A handler ending is counted before gRPC sends its status: once a client has a call's
status, the call is in the metrics. Calls to methods the daemon does not have are answered
UNIMPLEMENTED by gRPC itself and are not counted (their names are the client's to choose).

Bytes are message sizes on the wire, before gRPC's framing: requests as received (the
decoding interceptor inside this one hands their bytes on), responses as serialized.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from prometheus_client import Counter, Gauge, Histogram

from hoard_server.grpc import call
from hoard_server.grpc.interceptors.handlers import keep_markers
from hoard_server.observe import metrics

REQUEST_ID = "x-request-id"
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")  # a uuid, a trace id, a short tag
Code: TypeAlias = grpc.StatusCode


def request_id(metadata: Any) -> str:
    """The client's ``x-request-id`` if it is sane (1-64 letters, digits, ``._:-``), else
    a new random one (12 hex digits)."""
    for key, value in metadata or ():
        if key == REQUEST_ID and isinstance(value, str) and _SANE_ID.fullmatch(value):
            return value
    return secrets.token_hex(6)


@dataclass(frozen=True)
class _MethodMetrics:
    """The metrics' children of one method, looked up once (labels() takes a lock)."""

    service: str
    method: str
    duration: Histogram
    received: Counter
    sent: Counter
    in_flight: Gauge

    @classmethod
    def of(cls, full_method: str) -> _MethodMetrics:
        service, _, method = full_method.lstrip("/").rpartition("/")
        return cls(
            service,
            method,
            metrics.RPC_DURATION.labels(service, method),
            metrics.RPC_RECEIVED_BYTES.labels(service, method),
            metrics.RPC_SENT_BYTES.labels(service, method),
            metrics.RPCS_IN_FLIGHT.labels(service, method),
        )

    def ended(self, code: Code) -> Counter:
        return metrics.RPCS.labels(self.service, self.method, code.name)


def _size(message: Any) -> int:
    return len(message) if isinstance(message, bytes) else message.ByteSize()


def _ended_code(context: grpc.ServicerContext, otherwise: Code) -> Code:
    """The status a call ends with: the code set (an abort sets one), CANCELLED or
    DEADLINE_EXCEEDED for a call no longer active, ``otherwise`` for one that is."""
    code = context.code()
    if code is not None:
        return code
    if not context.is_active():
        if context.time_remaining() <= 0:
            return Code.DEADLINE_EXCEEDED
        return Code.CANCELLED
    return otherwise


class _Tally:
    """One call in the metrics: in flight from ``__init__`` until ``end``, which counts
    only the first time it is called."""

    def __init__(self, of: _MethodMetrics) -> None:
        self._of = of
        self._lock = threading.Lock()
        self._ended = False
        self._start = time.perf_counter()
        of.in_flight.inc()

    def end(self, code: Code) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self._of.in_flight.dec()
        self._of.duration.observe(time.perf_counter() - self._start)
        self._of.ended(code).inc()


class CallInterceptor(grpc.ServerInterceptor):
    """Wraps each method handler: request id, call context, metrics."""

    def __init__(self) -> None:
        self._methods: dict[str, _MethodMetrics] = {}

    def _metrics(self, method: str) -> _MethodMetrics:
        found = self._methods.get(method)
        if found is None:  # a race makes two equal ones: harmless
            found = self._methods[method] = _MethodMetrics.of(method)
        return found

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        of = self._metrics(method)
        rid = request_id(handler_call_details.invocation_metadata)

        headers_sent = False  # intercept_service runs once per call: this is the call's

        def begin(context: grpc.ServicerContext, outlives_handler: bool) -> _Tally:
            """On the worker thread, before the handler: the call's context and tally. A
            call that may end while its handler is not running (a stream, a non-blocking
            handler) is also counted by gRPC's termination callback, if that comes first."""
            call.begin(call.Call(method, rid, context.peer()))
            tally = _Tally(of)
            if outlives_handler:
                end = tally.end
                if not context.add_callback(lambda: end(_ended_code(context, Code.OK))):
                    end(_ended_code(context, Code.CANCELLED))  # already over
                context.set_trailing_metadata(((REQUEST_ID, rid),))
            return tally

        def headers(context: grpc.ServicerContext) -> None:
            """The id in the initial metadata, once, before the first response."""
            nonlocal headers_sent
            if not headers_sent:
                headers_sent = True
                context.send_initial_metadata(((REQUEST_ID, rid),))

        def finish(context: grpc.ServicerContext, tally: _Tally, otherwise: Code) -> None:
            tally.end(_ended_code(context, otherwise))
            trailing = tuple(context.trailing_metadata() or ())  # an abort replaces it
            if (REQUEST_ID, rid) not in trailing:
                context.set_trailing_metadata((*trailing, (REQUEST_ID, rid)))

        def counted_stream(requests: Iterator[Any]) -> Iterator[Any]:
            for request in requests:
                of.received.inc(_size(request))
                yield request

        def counted_in(request: Any, streamed: bool) -> Any:
            if streamed:
                return counted_stream(request)
            of.received.inc(_size(request))
            return request

        def returning(behaviour: Callable, streamed_in: bool) -> Callable:
            """A handler that returns its response (or, non-blocking, returns at once and
            answers through the callback gRPC passes it: then its end comes later)."""

            def handle(request: Any, context: grpc.ServicerContext, *more: Any) -> Any:
                tally = begin(context, outlives_handler=bool(more))
                if more:  # non-blocking: its responses go through gRPC's callback
                    more = (answering(context, more[0]), *more[1:])
                try:
                    response = behaviour(counted_in(request, streamed_in), context, *more)
                except BaseException:
                    finish(context, tally, Code.UNKNOWN)
                    raise
                if not more:
                    finish(context, tally, Code.OK)
                return response

            return keep_markers(behaviour, handle)

        def streaming(behaviour: Callable, streamed_in: bool) -> Callable:
            if getattr(behaviour, "experimental_non_blocking", False):
                return returning(behaviour, streamed_in)

            def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                tally = begin(context, outlives_handler=True)
                responses = None
                try:
                    responses = behaviour(counted_in(request, streamed_in), context)
                    for response in responses:
                        headers(context)
                        yield response
                except GeneratorExit:  # gRPC dropped the stream: the client went away
                    finish(context, tally, Code.CANCELLED)
                    raise
                except BaseException:
                    finish(context, tally, Code.UNKNOWN)
                    raise
                finally:
                    close = getattr(responses, "close", None)
                    if close is not None:  # the handler's own clean-up, now
                        close()
                finish(context, tally, Code.OK)

            return handle

        def answering(
            context: grpc.ServicerContext, answer: Callable[[Any], None]
        ) -> Callable[[Any], None]:
            def send(response: Any) -> None:
                if response is not None:  # None: the end of the stream
                    headers(context)
                answer(response)

            return send

        def counted_out(serialize: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
            def counted(message: Any) -> bytes:
                data = serialize(message)
                of.sent.inc(len(data))
                return data

            return counted

        changes: dict[str, Any] = {}
        if handler.response_serializer is not None:
            changes["response_serializer"] = counted_out(handler.response_serializer)
        if handler.unary_unary is not None:
            changes["unary_unary"] = returning(handler.unary_unary, streamed_in=False)
        elif handler.stream_unary is not None:
            changes["stream_unary"] = returning(handler.stream_unary, streamed_in=True)
        elif handler.unary_stream is not None:
            changes["unary_stream"] = streaming(handler.unary_stream, streamed_in=False)
        else:
            changes["stream_stream"] = streaming(handler.stream_stream, streamed_in=True)
        return handler._replace(**changes)
