"""Verification of a repository's metadata cache: its databases checked against each other
(``MetadataIndex.check``). Every problem is reported with the path "metadata", the cache's
folder in the repository."""

from __future__ import annotations

from collections.abc import Iterator

from hoard_server.reports import Problem
from hoard_server.storage.layout import METADATA
from hoard_server.storage.metadata.index import MetadataIndex


def metadata_problems(index: MetadataIndex) -> Iterator[Problem]:
    for problem in index.check():
        yield Problem("", 0, f"metadata cache: {problem}", path=METADATA)
