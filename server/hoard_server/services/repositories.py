"""hoard.v1.Repositories over a RepositoryRegistry."""

from __future__ import annotations

import grpc

from hoard.v1 import repositories_pb2 as pb
from hoard.v1 import repositories_pb2_grpc
from hoard_server.services.status import grpc_errors
from hoard_server.storage.keys import KEY_FORMAT
from hoard_server.storage.registry import RepositoryRegistry, check_repository_name
from hoard_server.storage.repository import Repository


def _info(repo: Repository) -> pb.RepositoryInfo:
    return pb.RepositoryInfo(
        name=repo.name, uuid=repo.uuid, key_format=KEY_FORMAT, created_at=repo.created_at
    )


class RepositoriesServicer(repositories_pb2_grpc.RepositoriesServicer):
    def __init__(self, registry: RepositoryRegistry) -> None:
        self._registry = registry

    @grpc_errors
    def CreateRepository(self, request, context: grpc.ServicerContext):
        repo, _created = self._registry.create(check_repository_name(request.repository))
        return _info(repo)

    @grpc_errors
    def GetRepository(self, request, context: grpc.ServicerContext):
        return _info(self._registry.get(check_repository_name(request.repository)))

    @grpc_errors
    def ListRepositories(self, request, context: grpc.ServicerContext):
        infos = []
        for name in self._registry.names():
            try:
                infos.append(_info(self._registry.get(name)))
            except Exception:  # erased meanwhile
                continue
        return pb.ListRepositoriesResponse(repositories=infos)

    @grpc_errors
    def EraseRepository(self, request, context: grpc.ServicerContext):
        self._registry.erase(check_repository_name(request.repository))
        return pb.EraseRepositoryResponse()
