"""Administration: the repositories a daemon hosts, and one repository's housekeeping
(info, maintenance, verification, backup), returning typed reports."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any, TypeVar

from hoard import requests
from hoard.reports import (
    BackupProgress,
    MaintainProgress,
    Problem,
    RepositoryInfo,
    StoreInfo,
    VerifyProgress,
    VerifyResult,
    from_message,
)
from hoard.transport import Transport, is_local_target
from hoard.v1 import objects_pb2 as pb
from hoard.v1 import repositories_pb2 as repo_pb

R = TypeVar("R", MaintainProgress, VerifyProgress)

__all__ = ["Admin", "Repositories", "backup_destination"]


class Repositories:
    """The repositories hosted by the daemon ``transport`` talks to."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def create(self, name: str) -> RepositoryInfo:
        """Create repository ``name``; creating one that exists returns it unchanged."""
        request = repo_pb.CreateRepositoryRequest(repository=name)
        return from_message(
            RepositoryInfo, self.transport.unary("Repositories.CreateRepository", request)
        )

    def get(self, name: str) -> RepositoryInfo:
        """Describe repository ``name``; RepositoryNotFoundError when it does not exist."""
        request = repo_pb.GetRepositoryRequest(repository=name)
        return from_message(
            RepositoryInfo, self.transport.unary("Repositories.GetRepository", request)
        )

    def list(self) -> list[RepositoryInfo]:
        """Every repository the daemon hosts."""
        reply = self.transport.unary(
            "Repositories.ListRepositories", repo_pb.ListRepositoriesRequest()
        )
        return [from_message(RepositoryInfo, r) for r in reply.repositories]

    def erase(self, name: str) -> None:
        """Delete repository ``name`` and everything in it; RepositoryNotFoundError if absent."""
        request = repo_pb.EraseRepositoryRequest(repository=name)
        self.transport.unary("Repositories.EraseRepository", request)

    def set_quota(self, name: str, quota_bytes: int) -> RepositoryInfo:
        """Limit repository ``name`` to ``quota_bytes`` on disk (0: no limit). Writes to a
        repository at its quota raise QuotaExceededError; reads and deletes keep working."""
        request = repo_pb.SetRepositoryQuotaRequest(repository=name, quota_bytes=quota_bytes)
        return from_message(
            RepositoryInfo, self.transport.unary("Repositories.SetRepositoryQuota", request)
        )


class Admin:
    """Housekeeping of repository ``repository``: every operation runs live, while clients
    keep reading and writing. Interrupting a streamed operation (an exception in
    ``progress``, Ctrl-C) cancels it; the daemon stops after its current step."""

    def __init__(self, transport: Transport, repository: str) -> None:
        self.transport = transport
        self.repository = repository

    def info(self, detailed: bool = False) -> StoreInfo:
        """Counts and sizes; with ``detailed`` also every pack."""
        request = pb.InfoRequest(repository=self.repository, detailed=detailed)
        return from_message(StoreInfo, self.transport.unary("Objects.Info", request))

    def _follow(
        self, method: str, request: Any, report: type[R], progress: Callable[[R], None] | None
    ) -> tuple[R, list[Problem]]:
        """Read a progress stream: its last report (an empty one if none came) and every
        problem the reports named (each names only those new since the previous one)."""
        last = report()
        problems: list[Problem] = []
        for message in self.transport.server_stream(method, request):
            last = from_message(report, message)
            problems.extend(last.problems)
            if progress is not None:
                progress(last)
        return last, problems

    def maintain(
        self,
        dry_run: bool = False,
        live: bool = True,
        *,
        dead_fraction: float | None = None,
        max_packs: int | None = None,
        progress: Callable[[MaintainProgress], None] | None = None,
    ) -> MaintainProgress:
        """Compact packs whose dead bytes reach ``dead_fraction`` (daemon default 0.25), at
        most ``max_packs`` (a later call continues); ``dry_run`` only reports.

        ``progress`` receives every report, its ``problems`` those new since the previous
        one; the last report is returned with every problem of the run (an empty report if
        the daemon sent none). Problems are records compaction would not move; their packs
        are kept.
        """
        request = requests.maintain_request(
            self.repository, dry_run, live, dead_fraction, max_packs
        )
        last, problems = self._follow("Objects.Maintain", request, MaintainProgress, progress)
        return dataclasses.replace(last, problems=problems)

    def verify(
        self,
        *,
        pack_id: int | None = None,
        sample: float | None = None,
        progress: Callable[[VerifyProgress], None] | None = None,
    ) -> VerifyResult:
        """Re-read and re-hash objects (all, pack ``pack_id``, or a random ``sample``
        fraction) and check the index against the packs; every problem found, ``ok`` when
        none. ``progress`` receives every report (its ``problems`` are the new ones)."""
        request = requests.verify_request(self.repository, pack_id, sample)
        last, problems = self._follow("Objects.Verify", request, VerifyProgress, progress)
        count = max(last.problem_count, len(problems))
        return VerifyResult(
            checked_objects=last.checked_objects,
            total_objects=last.total_objects,
            checked_bytes=last.checked_bytes,
            problem_count=count,
            problems=problems,
            ok=count == 0,
        )

    def backup(
        self,
        destination: str | os.PathLike[str],
        *,
        progress: Callable[[BackupProgress], None] | None = None,
    ) -> BackupProgress:
        """Snapshot the repository into ``destination`` on the daemon's host (see
        :func:`backup_destination`); incremental and resumable. ``progress`` receives every
        report; the last is returned (an empty one if the daemon sent none)."""
        target = backup_destination(self.transport.target, destination)
        request = requests.backup_request(self.repository, target)
        last = BackupProgress()
        for message in self.transport.server_stream("Objects.Backup", request):
            last = from_message(BackupProgress, message)
            if progress is not None:
                progress(last)
        return last


def backup_destination(target: str, destination: str | os.PathLike[str]) -> str:
    """``destination`` as sent to the daemon at ``target``: made absolute (``~`` expanded)
    when the daemon is on this machine, else as given (the daemon refuses a relative one)."""
    path = os.fspath(destination)
    if not isinstance(path, str):
        raise TypeError(f"destination must be a str path, not {type(path).__name__}")
    if not path:
        raise ValueError("destination must not be empty")
    if is_local_target(target):
        return os.path.abspath(os.path.expanduser(path))
    return path
