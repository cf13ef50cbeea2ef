"""The gRPC face of hoard: one thin servicer per service (protobuf <-> Python values), the one
mapping of errors to statuses (``status``), stream limits (``limits``) and interceptors."""
