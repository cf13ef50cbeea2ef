"""Domain services in plain Python: what hoard does, over the storage engine.

No transport here (no grpc import): ``hoard_server.grpc`` translates protobuf to calls of
these services and their domain errors to status codes. Tests call them directly.
"""
