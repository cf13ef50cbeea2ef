"""Maintenance of a packed store, each given only the engine parts it works on.

- ``compactor.py``: live compaction (index, pack reader, pack writer, activity, a record
  check and a way to drop a pack's file);
- ``verifier.py``: integrity checks (index, pack reader, pack paths, activity and the
  store's own read path);
- ``backup.py``: online backup and offline restore (a ``BackupSource``: identity, layout,
  index snapshot, activity).
"""
