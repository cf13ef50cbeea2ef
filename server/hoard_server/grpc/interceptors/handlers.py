"""What every interceptor needs to wrap a grpc method handler, in one place.

A ``grpc.RpcMethodHandler`` carries its behaviour in one of four fields (``KINDS``). A
behaviour may carry markers grpc reads off the function itself: ``experimental_non_blocking``
(health's Watch: it gets grpc's send-response callback as a third argument and returns at
once instead of holding a worker) and ``experimental_thread_pool`` (the probe pool). A wrapper
that drops them changes how grpc runs the call, so every wrapper keeps them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
MARKERS = ("experimental_non_blocking", "experimental_thread_pool")


def kind_of(handler: grpc.RpcMethodHandler) -> str:
    """The field of ``handler`` that holds its behaviour."""
    return next(kind for kind in KINDS if getattr(handler, kind) is not None)


def keep_markers(behaviour: Callable[..., Any], wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """``wrapper``, carrying the grpc markers ``behaviour`` carries."""
    for marker in MARKERS:
        if hasattr(behaviour, marker):
            setattr(wrapper, marker, getattr(behaviour, marker))
    return wrapper
