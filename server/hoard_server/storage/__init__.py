"""The storage engine, in layers that can each be read and tested alone.

On-disk formats: ``pack.py`` (pack files and record headers), ``codec.py`` (compression,
frame tables, checks), ``keys.py`` (the one place a key is parsed), ``layout.py`` (the one
place a file or folder is named), ``modes.py`` (their permissions).

Reusable engine parts: ``lmdb_env.py`` (an LMDB environment: durable commits, batched
walks, the swap for a compacted copy), ``group_commit.py`` (a writer thread batching any
items into one commit), ``activity.py`` (operations in progress, reader epochs).

The object store: ``blobstore.py`` (the ``BlobStore`` interface), ``index.py`` (the object
index on ``lmdb_env``), ``writer.py`` (pack records on ``group_commit``), ``staging.py``
(large uploads), ``records.py`` (checking a stored record), ``packed/`` (``PackedStore``,
the implementation), ``decorators/`` (behaviour wrapped around any ``BlobStore``).

Repositories: ``repository.py`` (a named packed store with its maintenance entry points),
``registry.py`` (the repositories of a data directory), ``settings.py``.
"""
