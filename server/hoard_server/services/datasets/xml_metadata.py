"""TVB's XML metadata files (``Project.xml``, operation and image metadata), read and written.

The format is what tvb-storage's ``XMLWriter`` writes and its ``XMLReader`` reads::

    <?xml version="1.0" ?>
    <tvb_data Data_version="5">
    \t<name>value</name>
    \t...
    </tvb_data>

one element per key under a root element, its text the value. As TVB's reader does, text is
read with surrounding whitespace stripped and attributes are ignored; an element that holds
elements (TVB reads it as a nested dictionary) comes back as that dictionary in JSON, the
way TVB's writer stores a list. Keys must be XML names; values must be characters XML 1.0
can carry. Both mistakes are InvalidArgument (reason INVALID_METADATA).
"""

from __future__ import annotations

import json
import re
import xml.dom.minidom
from xml.dom.minidom import Node
from xml.parsers.expat import ExpatError

from hoard_server.errors import InvalidArgument

ROOT = "tvb_data"  # TVB XMLWriter.ELEM_ROOT
VERSION_ATTRIBUTE = "Data_version"  # TvbProfile's DATA_VERSION_ATTRIBUTE
DATA_VERSION = 5  # TvbProfile's DATA_VERSION (tvb-storage 2.x)

# An XML name without namespaces, in ASCII: what TVB's keys (Python identifiers) look like.
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Characters XML 1.0 cannot carry at all.
_UNCARRIABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_TEXT_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;"}


class FileDamaged(Exception):
    """The bytes are not a TVB metadata document (the caller names the file)."""


def check(metadata: dict[str, str]) -> None:
    """InvalidArgument (INVALID_METADATA) unless every key and value can be written."""
    for key, value in metadata.items():
        if not _KEY.fullmatch(key) or key.lower().startswith("xml"):
            raise InvalidArgument(
                f"metadata key {key[:100]!r} is not an XML element name: use letters, digits, "
                "'_', '-' and '.', starting with a letter or '_' (and not with 'xml')",
                reason="INVALID_METADATA",
                key=key[:100],
            )
        bad = _UNCARRIABLE.search(value)
        if bad:
            raise InvalidArgument(
                f"the value of metadata key {key!r} holds character U+{ord(bad.group()):04X}, "
                "which an XML file cannot carry",
                reason="INVALID_METADATA",
                key=key,
            )


def _escape(text: str) -> str:
    return "".join(_TEXT_ESCAPES.get(c, c) for c in text)


def dumps(metadata: dict[str, str]) -> bytes:
    """The document for ``metadata`` (checked first), in key order as given."""
    check(metadata)
    lines = ['<?xml version="1.0" ?>', f'<{ROOT} {VERSION_ATTRIBUTE}="{DATA_VERSION}">']
    lines += [f"\t<{key}>{_escape(value)}</{key}>" for key, value in metadata.items()]
    lines.append(f"</{ROOT}>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def loads(data: bytes) -> dict[str, str]:
    """The metadata of a document; FileDamaged if it is not one."""
    try:
        doc = xml.dom.minidom.parseString(data)
    except (ExpatError, ValueError) as exc:
        raise FileDamaged(f"it is not well-formed XML ({exc})") from None
    root = doc.documentElement
    if root is None:
        raise FileDamaged("it has no root element")
    result: dict[str, str] = {}
    for node in root.childNodes:
        if node.nodeType == Node.ELEMENT_NODE:
            nested = _nested(node)
            result[node.nodeName] = json.dumps(nested) if nested else _text(node)
    return result


def _text(node: Node) -> str:
    """The element's first text, stripped (TVB XMLReader.get_node_text)."""
    for child in node.childNodes:
        if child.nodeType == Node.TEXT_NODE:
            return str(child.data).strip()
    return ""


def _nested(node: Node) -> dict[str, object]:
    """An element's element children as TVB's reader makes them: a dictionary, recursively."""
    result: dict[str, object] = {}
    for child in node.childNodes:
        if child.nodeType == Node.ELEMENT_NODE:
            inner = _nested(child)
            result[child.nodeName] = inner if inner else _text(child)
    return result
