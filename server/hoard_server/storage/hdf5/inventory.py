"""Which files under a repository's ``datasets/`` folder are its dataset files.

The one walk that info, verify and backup share: every regular file below the folder, by
its repository-relative '/'-separated path. Names starting with '.' (files or folders) are
scratch space (imports in progress, a backup's partial copies) and are skipped; symbolic
links are neither followed nor listed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DatasetFile:
    path: str  # relative to the datasets folder, '/'-separated
    size: int
    mtime_ns: int


def is_hidden(name: str) -> bool:
    """Scratch names (imports, partial backup copies): never a dataset file."""
    return name.startswith(".")


def dataset_files(root: str) -> Iterator[DatasetFile]:
    """Every dataset file under ``root``, in sorted path order (nothing if ``root`` is
    missing: repositories older than the datasets face have none). Files or folders that
    vanish during the walk are skipped."""
    yield from _walk(root, "")


def _walk(top: str, prefix: str) -> Iterator[DatasetFile]:
    try:
        with os.scandir(top) as it:
            entries = sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if is_hidden(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        rel = prefix + entry.name
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(entry.path, rel + "/")
        elif stat.S_ISREG(st.st_mode):
            yield DatasetFile(rel, st.st_size, st.st_mtime_ns)
