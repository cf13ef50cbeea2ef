"""The packed blob store: records in append-only pack files, indexed in LMDB.

- ``store.py``: ``PackedStore``, the ``BlobStore`` built from the engine parts;
- ``reads.py``: the read path (locations to checked bytes, no hold across a yield);
- ``recovery.py``: what opening a store repairs after a crash;
- ``dictionary.py``: training the zstd dictionary for small objects.
"""

from hoard_server.storage.packed.store import INLINE_LIMIT, PackedStore

__all__ = ["INLINE_LIMIT", "PackedStore"]
