"""The hoard daemon: storage engine, domain services, gRPC servicers and the process around them.

Layers, each importable and testable without the ones above it:

- ``hoard_server.storage``: on-disk formats (pack records, frame tables), the LMDB object
  index, the group-committing pack writer and the repository that composes them;
- ``hoard_server.services``: gRPC servicers that translate protobuf and status codes only;
- ``hoard_server.daemon``: configuration, start-up, graceful shutdown.
"""

__version__ = "0.1.0"
