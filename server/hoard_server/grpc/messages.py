"""Typed values (reports, stats) into protobuf messages, field by field, by name.

A value's attributes are named after the message's fields (``hoard_server.reports``), so one
generic function fills any of them, nested messages and repeated fields included: a new field
needs no copying code, and a field the value lacks is an error, not a silent zero.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


def to_message(cls: type[M], value: object) -> M:
    """A ``cls`` message with every field taken from the attribute of ``value`` so named."""
    msg = cls()
    _fill(msg, value)
    return msg


def _fill(msg: Message, value: object) -> None:
    for field in msg.DESCRIPTOR.fields:
        v = getattr(value, field.name)
        if field.message_type is None:
            if field.is_repeated:
                getattr(msg, field.name).extend(v)
            else:
                setattr(msg, field.name, v)
        elif field.is_repeated:
            target = getattr(msg, field.name)
            for item in v:
                _fill(target.add(), item)
        else:
            _fill(getattr(msg, field.name), v)
