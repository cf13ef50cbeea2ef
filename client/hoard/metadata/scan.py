"""Which files a directory sync looks at: qass's selection, walked once.

A glob on the file name preselects (``*p*c?b*``), then a regular expression must match the
name from its start (``re.match``, as qass does); ``sync_subdirectories`` walks the whole
tree. Directory links are not followed (no loops); file links are, as ``is_file`` does.
The ``stat`` of each file comes with it, so the change test opens nothing.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from hoard.metadata.records import FileSignature

DEFAULT_REGEX = "^.*[p][0-9]*[c][0-9]{1}[b][0-9]{2}"
DEFAULT_GLOB = "*p*c?b*"


def directory_root(path: str | os.PathLike[str]) -> str:
    """The absolute, resolved form of a directory to sync (qass resolves it too)."""
    return os.path.realpath(os.fspath(path))


def scan_directory(
    root: str,
    *,
    sync_subdirectories: bool = True,
    regex_pattern: str = DEFAULT_REGEX,
    glob_pattern: str = DEFAULT_GLOB,
    follow_links: bool = True,
) -> Iterator[tuple[str, os.stat_result]]:
    """(path, stat) of every regular file under ``root`` that the patterns select. A file
    that vanishes while the walk reaches it is left out; an unreadable directory too.
    ``follow_links=False`` leaves file links out (a daemon reads nothing outside its
    sync roots through one)."""
    regex = re.compile(regex_pattern)
    if "/" in glob_pattern or "**" in glob_pattern:
        yield from _scan_with_pathlib(root, sync_subdirectories, regex, glob_pattern,
                                      follow_links)
        return
    name_glob = re.compile(fnmatch.translate(glob_pattern))
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                    continue
                if not (name_glob.match(entry.name) and regex.match(entry.name)):
                    continue
                if not follow_links and entry.is_symlink():
                    continue
                st = entry.stat()  # follows a link, like is_file
            except OSError:
                continue
            if _is_regular(st):
                yield entry.path, st
        if sync_subdirectories:
            stack.extend(sorted(subdirs, reverse=True))


def _is_regular(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISREG(st.st_mode)


def _scan_with_pathlib(
    root: str, recursive: bool, regex: re.Pattern[str], glob_pattern: str,
    follow_links: bool,
) -> Iterator[tuple[str, os.stat_result]]:
    base = Path(root)
    found = base.rglob(glob_pattern) if recursive else base.glob(glob_pattern)
    for p in found:
        if not regex.match(p.name) or (not follow_links and p.is_symlink()):
            continue
        try:
            st = p.stat()
        except OSError:
            continue
        if _is_regular(st):
            yield str(p), st


def in_scope(path: str, root: str, sync_subdirectories: bool) -> bool:
    """Whether an indexed ``path`` lies where a sync of ``root`` looks: below it, or
    directly in it when subdirectories are not synced."""
    prefix = root.rstrip("/") + "/"
    if not path.startswith(prefix):
        return False
    return sync_subdirectories or "/" not in path[len(prefix):]


def non_synchronized(
    files: Sequence[str | os.PathLike[str]], stored: Mapping[str, FileSignature]
) -> tuple[list[str], list[str]]:
    """qass's ``get_non_synchronized_files`` over what a cache holds for one machine
    (``stored``: path -> signature): the files that are new or changed since extraction,
    and the stored paths not among ``files``. Only ``stat`` is called; a file that is gone
    needs no extraction."""
    paths = [os.path.abspath(os.fspath(p)) for p in files]
    unsynchronised = []
    for path in paths:
        try:
            sig = FileSignature.of(os.stat(path))
        except OSError:
            continue
        if stored.get(path) != sig:
            unsynchronised.append(path)
    listed = set(paths)
    return unsynchronised, sorted(p for p in stored if p not in listed)
