"""Blob store decorators: one behaviour per module, each a ``BlobStore`` wrapping another.

None exists yet. The intended ones follow bb-storage's ``*_blob_access`` decorators:

- ``metrics.py``: counts and timings per method, passed through unchanged;
- ``quota.py``: refuses puts past a repository's byte or object quota (StorageFull with its
  own reason) before they reach the store;
- ``read_cache.py``: keeps recently read small objects in memory.

A decorator takes the store it wraps in its constructor, implements every ``BlobStore``
method (delegating what it does not change) and never reaches past that interface: it must
work around the packed store, another decorator or a test double alike.
"""
