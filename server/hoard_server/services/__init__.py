"""gRPC servicers: protobuf in, protobuf out, domain errors to status codes. No storage logic."""
