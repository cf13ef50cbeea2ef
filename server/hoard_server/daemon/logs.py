"""The daemon's log: one line per record on stderr, as text or as JSON.

A record emitted while a thread serves an RPC carries the call's request id (the one the
client gets back as ``x-request-id``) and, once authenticated, its token's name: text lines
show ``[req=<id> token=<name>]`` after the logger's name, JSON lines have ``request_id`` and
``token`` fields.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from hoard_server.grpc import call

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(call)s: %(message)s"


class CallFields(logging.Filter):
    """Adds ``request_id``, ``token`` (empty outside a call or without a token) and their
    text form, ``call``, to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = call.current()
        rid = current.request_id if current is not None else ""
        token = (current.token or "") if current is not None else ""
        record.request_id = rid
        record.token = token
        shown = " ".join(f"{k}={v}" for k, v in (("req", rid), ("token", token)) if v)
        record.call = f" [{shown}]" if shown else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("request_id", "token"):
            value = getattr(record, field, "")
            if value:
                doc[field] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(level: str, log_format: str) -> None:
    """Route every logger to stderr at ``level`` in ``log_format`` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CallFields())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
