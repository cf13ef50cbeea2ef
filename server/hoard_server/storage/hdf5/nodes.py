"""Nodes inside an HDF5 file: the one place ``where`` and a dataset name become a node path,
and where a missing or mistyped node becomes an error a person can act on."""

from __future__ import annotations

import h5py

from hoard_server.errors import FailedPrecondition, InvalidArgument, NotFound
from hoard_server.storage.hdf5.damage import damaged


def node_path(where: str, name: str) -> str:
    """``where`` (a group, "" is "/") joined with ``name`` (relative to it, "" names the
    group itself) as paths: "/a/b" + "x" is "/a/b/x", never "/a/bx" (TVB's concatenation).

    InvalidArgument (INVALID_PATH) for '.', '..', empty segments or NUL."""
    parts: list[str] = []
    for piece in ((where or "/").strip("/"), name.strip("/")):
        if not piece:
            continue
        for seg in piece.split("/"):
            if seg in ("", ".", "..") or "\x00" in seg:
                shown = f"{where!r} + {name!r}"
                raise InvalidArgument(
                    f"node {shown} is not valid: segments may not be empty, '.' or '..' "
                    "(use a group such as '/a/b' and a name such as 'data')",
                    reason="INVALID_PATH",
                    node=shown.replace("\x00", "\\0"),
                )
            parts.append(seg)
    return "/" + "/".join(parts)


def lookup(f: h5py.File, node: str, path: str = "", repository: str | None = None):
    """The group or dataset at ``node``; NotFound (DATASET_NOT_FOUND) if absent."""
    try:
        obj = f[node] if node != "/" else f
    except (KeyError, ValueError) as exc:
        if damaged(exc):
            raise  # there, but unreadable: the caller's door makes it FILE_DAMAGED
        obj = None
    if obj is None or not isinstance(obj, h5py.Group | h5py.Dataset):
        raise NotFound(
            f"no dataset or group {node!r} in {path!r}",
            reason="DATASET_NOT_FOUND",
            repository=repository,
            path=path,
            node=node,
        )
    return obj


def dataset(f: h5py.File, node: str, path: str = "", repository: str | None = None) -> h5py.Dataset:
    """The dataset at ``node``: DATASET_NOT_FOUND if absent, NOT_A_DATASET for a group."""
    obj = lookup(f, node, path, repository)
    if not isinstance(obj, h5py.Dataset):
        raise FailedPrecondition(
            f"{node!r} in {path!r} is a group, not a dataset",
            reason="NOT_A_DATASET",
            repository=repository,
            path=path,
            node=node,
        )
    return obj


def is_text(dtype) -> bool:
    """Whether a dataset's dtype is variable-length text (fixed-length bytes are not)."""
    info = h5py.check_string_dtype(dtype)
    return info is not None and info.length is None


def exists(f: h5py.File, node: str) -> bool:
    return node == "/" or node in f


def check_parents(f: h5py.File, node: str, path: str = "", repository: str | None = None) -> None:
    """Before ``node`` is created: FailedPrecondition (NOT_A_GROUP) if one of the groups it
    would go in is a dataset (h5py would fail with a TypeError of its own)."""
    parts = node.strip("/").split("/")
    for n in range(1, len(parts)):
        parent = "/" + "/".join(parts[:n])
        if parent in f and not isinstance(f[parent], h5py.Group):
            raise FailedPrecondition(
                f"{parent!r} in {path!r} is a dataset, so it cannot hold {node!r}",
                reason="NOT_A_GROUP",
                repository=repository,
                path=path,
                node=parent,
            )
