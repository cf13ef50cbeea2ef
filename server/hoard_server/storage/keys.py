"""Object keys: the lowercase SHA-256 hex digest of the uncompressed content.

The only place a key is validated or converted; the index stores the 32 raw digest bytes.
"""

from __future__ import annotations

import hashlib

from hoard_server.errors import InvalidArgument

KEY_FORMAT = "sha256"
_HEX_LEN = 64


def parse_key(key: str) -> bytes:
    """Return the 32-byte digest of ``key`` or raise InvalidArgument naming it."""
    if len(key) == _HEX_LEN:
        try:
            digest = bytes.fromhex(key)
        except ValueError:
            pass
        else:
            # fromhex accepts upper case and skips spaces: insist on the one canonical spelling.
            if len(digest) == 32 and digest.hex() == key:
                return digest
    shown = key if len(key) <= 80 else key[:77] + "..."
    raise InvalidArgument(
        f"key {shown!r} is not a SHA-256 key (64 lowercase hexadecimal characters)",
        reason="INVALID_KEY",
        key=shown,
    )


def parse_keys(keys: list[str] | tuple[str, ...]) -> list[bytes]:
    return [parse_key(k) for k in keys]


def format_key(digest: bytes) -> str:
    return digest.hex()


def key_of(data: bytes | bytearray | memoryview) -> bytes:
    """The digest of ``data``: what its key stands for."""
    return hashlib.sha256(data).digest()
