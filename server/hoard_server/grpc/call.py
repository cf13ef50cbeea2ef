"""What the daemon knows about the RPC a thread is serving: its method, request id, peer and,
once authenticated, the caller's token.

The outermost interceptor sets it at the start of each call (``begin``); the authentication
interceptor fills in the token; log records and audit lines read it. grpc's sync server runs
each call on one worker thread from start to end, so a context variable set there is the
call's own. Work a call hands to other threads (an Append's commit, a sync's extractors)
does not carry it.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Call", "begin", "current"]


@dataclass
class Call:
    method: str  # "/hoard.v1.Objects/Put"
    request_id: str  # sent back to the client as `x-request-id`
    peer: str  # grpc's peer string, "ipv4:10.0.0.7:53122" or "unix:"
    token: str | None = None  # the token's name, once the call is authenticated
    grants: Any = None  # the token's roles (hoard_server.auth), None without authentication
    extra: dict[str, str] = field(default_factory=dict)


_CURRENT: contextvars.ContextVar[Call | None] = contextvars.ContextVar("hoard_call", default=None)


def begin(call: Call) -> None:
    """Make ``call`` the current thread's call (replacing the one it served before)."""
    _CURRENT.set(call)


def current() -> Call | None:
    """The call this thread is serving, or None outside a call."""
    return _CURRENT.get()
