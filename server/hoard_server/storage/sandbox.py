"""Client-supplied relative paths, resolved inside one directory: the one place a path is
checked, so no request can reach outside its repository.

A valid path is '/'-separated and relative: no leading '/', no empty, '.' or '..' segment,
no NUL, no backslash, no segment longer than 255 bytes. It must also *stay* inside once the
file system resolves it: a symbolic link that leads out is refused like '..' is.
"""

from __future__ import annotations

import os

from hoard_server.errors import InvalidArgument

MAX_PATH_BYTES = 4096
MAX_SEGMENT_BYTES = 255


def _refuse(path: str, why: str, repository: str | None) -> InvalidArgument:
    shown = path if len(path) <= 200 else path[:200] + "..."
    return InvalidArgument(
        f"path {shown!r} is not valid: {why}; use a relative path inside the repository, "
        "such as 'project/7/TimeSeries.h5'",
        reason="INVALID_PATH",
        path=shown,
        repository=repository,
    )


def check_relative_path(
    path: str, *, allow_top: bool = False, repository: str | None = None
) -> str:
    """The path, normalised of nothing (it must already be clean), or InvalidArgument.

    ``allow_top``: the empty path names the top folder itself (listing, disk usage)."""
    if not isinstance(path, str):
        raise _refuse(repr(path), "it is not text", repository)
    if path == "":
        if allow_top:
            return ""
        raise _refuse(path, "it is empty", repository)
    if "\x00" in path:
        raise _refuse(path.replace("\x00", "\\0"), "it contains a NUL character", repository)
    if "\\" in path:
        raise _refuse(path, "it contains a backslash (use '/')", repository)
    if path.startswith("/"):
        raise _refuse(path, "it is absolute", repository)
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise _refuse(path, f"it is longer than {MAX_PATH_BYTES} bytes", repository)
    for segment in path.split("/"):
        if segment == "":
            raise _refuse(path, "it has an empty segment ('//' or a trailing '/')", repository)
        if segment in (".", ".."):
            raise _refuse(path, f"it has a {segment!r} segment", repository)
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            raise _refuse(path, f"a segment is longer than {MAX_SEGMENT_BYTES} bytes", repository)
    return path


def resolve(
    root: str, path: str, *, allow_top: bool = False, repository: str | None = None
) -> str:
    """The absolute path of ``path`` under ``root``, refused (InvalidArgument, INVALID_PATH)
    if it is malformed or if following its links would leave ``root``.

    The file need not exist; the part of it that does is resolved through its links."""
    rel = check_relative_path(path, allow_top=allow_top, repository=repository)
    top = os.path.realpath(root)
    full = os.path.join(top, rel) if rel else top
    real = os.path.realpath(full)
    if real != top and not real.startswith(top + os.sep):
        raise _refuse(path, "it leads out of the repository through a symbolic link", repository)
    return full


def relative(root: str, full: str) -> str:
    """The repository-relative, '/'-separated form of an absolute path under ``root``."""
    rel = os.path.relpath(full, os.path.realpath(root))
    return "" if rel == "." else rel.replace(os.sep, "/")
