"""hoard.v1.Repositories: protobuf in, ``RepositoryService`` calls, protobuf out."""

from __future__ import annotations

import grpc

from hoard.v1 import repositories_pb2 as pb
from hoard.v1 import repositories_pb2_grpc
from hoard_server.auth.tokens import Role
from hoard_server.grpc import call
from hoard_server.grpc.messages import to_message
from hoard_server.grpc.status import grpc_errors
from hoard_server.services.repositories import RepositoryService


def readable(name: str) -> bool:
    """Whether the current call's token may read repository ``name`` (every repository
    when the daemon authenticates nobody: the auth interceptor sets no grants then)."""
    current = call.current()
    grants = current.grants if current is not None else None
    return grants is None or grants.allows(Role.READ, name)


class RepositoriesServicer(repositories_pb2_grpc.RepositoriesServicer):
    def __init__(self, repositories: RepositoryService) -> None:
        self._repositories = repositories

    @grpc_errors
    def CreateRepository(self, request: pb.CreateRepositoryRequest, context: grpc.ServicerContext):
        return to_message(pb.RepositoryInfo, self._repositories.create(request.repository))

    @grpc_errors
    def GetRepository(self, request: pb.GetRepositoryRequest, context: grpc.ServicerContext):
        return to_message(pb.RepositoryInfo, self._repositories.get(request.repository))

    @grpc_errors
    def ListRepositories(self, request: pb.ListRepositoriesRequest, context: grpc.ServicerContext):
        infos = self._repositories.list(readable)
        return pb.ListRepositoriesResponse(
            repositories=[to_message(pb.RepositoryInfo, i) for i in infos]
        )

    @grpc_errors
    def EraseRepository(self, request: pb.EraseRepositoryRequest, context: grpc.ServicerContext):
        self._repositories.erase(request.repository)
        return pb.EraseRepositoryResponse()

    @grpc_errors
    def SetRepositoryQuota(
        self, request: pb.SetRepositoryQuotaRequest, context: grpc.ServicerContext
    ):
        info = self._repositories.set_quota(request.repository, request.quota_bytes)
        return to_message(pb.RepositoryInfo, info)
