#!/opt/hoard/bin/python3
"""hoard-healthcheck [ADDRESS]: exit 0 when the daemon reports SERVING, else 1.

The container image's HEALTHCHECK and the Kubernetes probes. It asks the standard
grpc.health.v1 service over the daemon's unix socket by default: that socket is plain gRPC
even when the TCP port is TLS-only, and Health needs no token, so the check needs no
certificate and no secret.
"""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_ADDRESS = "unix:/run/hoard/hoard.sock"


def main(argv: list[str]) -> int:
    address = argv[1] if len(argv) > 1 else DEFAULT_ADDRESS
    request = health_pb2.HealthCheckRequest(service="")
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=4)
        except grpc.RpcError as exc:
            print(f"hoard at {address}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"hoard at {address}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
