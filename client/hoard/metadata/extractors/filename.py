"""``filename``: fields from the named groups of a regular expression on the file name.

``(?P<process>\\d+)`` gives an int field ``process``; a group that matches digits only (with
an optional sign) becomes an int, one that looks like a decimal number a float, anything
else a string, and a group that did not take part in the match null.
"""

from __future__ import annotations

import os
import re
from typing import Any

from hoard.metadata.extractors.base import ExtractionError, Extractor, register
from hoard.metadata.records import Value, check_field_name

# qass's file names: <project>_<nnnnn>p<process>c<channel, 0-based>b<buffer>...
# (named apart from the buffer header's fields: the name's channel is 0-based, and a file
# renamed by hand may disagree with its header)
BUFFER_NAME = (r"^(?P<name_project>.*?)_?(?P<name_number>\d*)p(?P<name_process>\d+)"
               r"c(?P<name_channel>\d)b(?P<name_buffer>\d{2})")

_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?\Z")


def typed(text: str | None) -> Value:
    """A matched group as a typed value."""
    if text is None:
        return None
    if _INT.match(text):
        value = int(text)
        if -(1 << 63) <= value < (1 << 64):
            return value
        return text
    if _FLOAT.match(text):
        return float(text)
    return text


@register
class FilenameExtractor(Extractor):
    """Named groups of ``pattern`` searched in the file name (not the directory); a name
    that does not match is an extraction failure naming the pattern."""

    name = "filename"
    trusted = True

    def __init__(self, pattern: str = BUFFER_NAME, prefix: str = "") -> None:
        self.pattern = re.compile(pattern)
        if not self.pattern.groupindex:
            raise ValueError(f"the pattern {pattern!r} has no named group (?P<name>...)")
        self.prefix = prefix
        for group in self.pattern.groupindex:
            check_field_name(prefix + group)

    def options(self) -> dict[str, Any]:
        return {"pattern": self.pattern.pattern, "prefix": self.prefix}

    def extract(self, path: str, st: os.stat_result) -> dict[str, Value]:
        name = os.path.basename(path)
        match = self.pattern.search(name)
        if match is None:
            raise ExtractionError(f"the file name does not match {self.pattern.pattern!r}")
        return {self.prefix + k: typed(v) for k, v in match.groupdict().items()}
