"""Repositories: create, describe, list and erase the named repositories of a data directory."""

from __future__ import annotations

from dataclasses import dataclass

from hoard_server.storage.keys import KEY_FORMAT
from hoard_server.storage.registry import RepositoryRegistry
from hoard_server.storage.repository import Repository


@dataclass(frozen=True, slots=True)
class RepositoryInfo:
    """Named after ``hoard.v1.RepositoryInfo``."""

    name: str
    uuid: str
    key_format: str
    created_at: float  # seconds since the epoch, UTC
    quota_bytes: int = 0  # 0: none; filled by the quota work (branch limits)
    used_bytes: int = 0

    @classmethod
    def of(cls, repo: Repository) -> RepositoryInfo:
        return cls(repo.name, repo.uuid, KEY_FORMAT, repo.created_at)


def open_repository(registry: RepositoryRegistry, name: str) -> Repository:
    """The repository a request names: INVALID_REPOSITORY_NAME or REPOSITORY_NOT_FOUND."""
    return registry.get(name)  # the registry checks the name


class RepositoryService:
    """The repositories of one registry, as a user manages them."""

    def __init__(self, registry: RepositoryRegistry) -> None:
        self._registry = registry

    def create(self, name: str) -> RepositoryInfo:
        """Create the repository, or describe it unchanged if it exists (idempotent)."""
        repo, _created = self._registry.create(name)
        return RepositoryInfo.of(repo)

    def get(self, name: str) -> RepositoryInfo:
        return RepositoryInfo.of(open_repository(self._registry, name))

    def list(self) -> list[RepositoryInfo]:
        """Every repository, by name; one erased while listing is left out."""
        infos = []
        for name in self._registry.names():
            try:
                infos.append(RepositoryInfo.of(self._registry.get(name)))
            except Exception:  # erased meanwhile (opening it may fail in several ways)
                continue
        return infos

    def erase(self, name: str) -> None:
        """Delete the repository and everything it holds; REPOSITORY_NOT_FOUND if absent."""
        self._registry.erase(name)
