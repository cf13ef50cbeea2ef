"""``stat``: what the file system says about a file (the change detector's fields)."""

from __future__ import annotations

import os

from hoard.metadata.extractors.base import Extractor, register
from hoard.metadata.records import Value


@register
class StatExtractor(Extractor):
    """``size``, ``mtime_ns``, ``ctime_ns``, ``inode``: every record has them."""

    name = "stat"
    trusted = True

    def extract(self, path: str, st: os.stat_result) -> dict[str, Value]:
        return {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns,
            "inode": st.st_ino,
        }
