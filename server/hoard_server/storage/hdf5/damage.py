"""Whether an error h5py raised means the file's inside does not hold together.

Opening a damaged file fails in ``OpenFiles`` (FILE_DAMAGED); a file that opens can still
have a damaged group, dataset or attribute, met only when it is read. Every door of
``OpenFiles`` turns such an error into DataLoss FILE_DAMAGED, and ``nodes.lookup`` does not
mistake it for a missing node.
"""

from __future__ import annotations

# What HDF5 says (the last, parenthesised part of h5py's message) when a structure inside
# a file does not hold together: checksums, signatures and versions that do not match,
# lengths and addresses past the end. Measured by flipping bytes in files written with
# libver "latest": "incorrect metadata checksum" is by far the most common; the name
# length and link count ones come from an attribute name HDF5 cannot store (64 KiB).
_SIGNS = (
    "checksum",
    "signature",
    "version number",
    "header version",
    "exceeds eoa",
    "past end",
    "status flag",
    "name length is invalid",
    "link count would be negative",
    "len not positive",
    "truncated",
    "corrupt",
)


def damaged(exc: BaseException) -> bool:
    """Whether ``exc`` (raised by h5py) says the file's structure is damaged."""
    if not isinstance(exc, RuntimeError | OSError | KeyError | ValueError):
        return False
    if isinstance(exc, OSError) and exc.errno is not None:
        return False  # the system's error (ENOSPC, EIO...), not HDF5's judgement
    text = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).lower()
    return any(sign in text for sign in _SIGNS)
