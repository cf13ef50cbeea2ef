"""What the daemon serves: the one table of gRPC services, and what their servicers share.

This is the only module of the daemon that imports servicers, interceptors or stream limits:
a new face is one more row in ``SERVICES``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from hoard.v1 import (
    datasets_pb2,
    datasets_pb2_grpc,
    metadata_pb2,
    metadata_pb2_grpc,
    objects_pb2,
    objects_pb2_grpc,
    repositories_pb2,
    repositories_pb2_grpc,
)
from hoard_server.auth.access import AccessPolicy
from hoard_server.auth.interceptor import Authorization
from hoard_server.auth.tokens import Tokens, TokensFileError
from hoard_server.daemon.builder import Service
from hoard_server.daemon.config import Config, ConfigError, stream_slots, where
from hoard_server.grpc.dataset_files import DatasetFilesServicer
from hoard_server.grpc.datasets import DatasetsServicer
from hoard_server.grpc.interceptors.calls import CallInterceptor
from hoard_server.grpc.interceptors.decode_guard import DecodeGuard
from hoard_server.grpc.limits import StreamLimits
from hoard_server.grpc.metadata import MetadataCacheServicer
from hoard_server.grpc.objects import ObjectsServicer
from hoard_server.grpc.repositories import RepositoriesServicer
from hoard_server.services.datasets.files import DatasetFileService
from hoard_server.services.datasets.service import DatasetService, DatasetSettings
from hoard_server.services.metadata.indexer import DatasetIndexer
from hoard_server.services.metadata.service import MetadataService
from hoard_server.services.objects import ObjectService
from hoard_server.services.repositories import RepositoryService
from hoard_server.storage.registry import RepositoryRegistry


class HealthServicer(health.HealthServicer):
    """grpc's health servicer, minus a deadlock at shutdown.

    Its non-blocking Watch sends status changes while holding its lock, and waits for each
    send on gRPC's serving thread; when a watcher goes away, its close callback runs on that
    same serving thread and takes the same lock. A status change (``enter_graceful_shutdown``
    at SIGTERM) racing a watcher's disconnect therefore hung the daemon's stop for good (seen
    once in a full CI run, with the stacks to show it). Close callbacks here run on a thread
    of their own, so the serving thread never waits for the lock."""

    def _on_close_callback(self, send_response_callback: Any, service: str) -> Any:
        close = super()._on_close_callback(send_response_callback, service)

        def callback() -> None:
            threading.Thread(target=close, name="health-watch-close", daemon=True).start()

        return callback


@dataclass(frozen=True)
class ServiceContext:
    """What servicers are made from: one of each per daemon."""

    config: Config
    registry: RepositoryRegistry
    limits: StreamLimits
    health: HealthServicer
    names: tuple[str, ...]  # every service in SERVICES, for reflection and health
    datasets: DatasetService  # shared: its followers are ended at shutdown
    indexer: DatasetIndexer  # keeps the dataset files' records in the metadata caches
    tokens: Tokens | None  # None: no tokens file, no authentication

    @classmethod
    def create(cls, config: Config, registry: RepositoryRegistry) -> ServiceContext:
        tokens = None
        if config.security.tokens_file:
            try:
                tokens = Tokens(config.security.tokens_file)
            except TokensFileError as exc:
                raise ConfigError(f"{exc} ({where('tokens_file')})") from None
        reads, uploads = stream_slots(config)
        limits = StreamLimits(
            {
                "read": (reads, where("max_read_streams")),
                "upload": (uploads, where("max_upload_streams")),
                "append": (config.datasets.append_streams, where("append_streams")),
                "follow": (config.datasets.follow_streams, where("follow_streams")),
            },
            config.limits.stream_idle_timeout,
            config.limits.response_memory_bytes,
            (config.limits.streams_per_client, where("streams_per_client")),
            config.limits.default_deadline,
        )
        names = tuple(row.name for row in SERVICES)
        ds = config.datasets
        datasets = DatasetService(
            registry,
            limits.budget,
            DatasetSettings(
                # a reply must fit in a message: a larger selection is REPLY_TOO_LARGE
                # (the SDK then streams it), not a message gRPC refuses to send
                min(ds.max_reply_bytes, config.limits.max_message_bytes - (64 << 10)),
                ds.max_open_files,
                ds.chunk_target_bytes,
                ds.handle_idle_seconds,
                ds.structural_copy_bytes,
                ds.shared_memory_reads,
                ds.shared_memory_bytes,
            ),
        )
        indexer = DatasetIndexer(registry, datasets.handle_limit)
        return cls(config, registry, limits, HealthServicer(), names, datasets, indexer, tokens)

    def serving(self) -> None:
        """Health: every service (and the server as a whole, "") is SERVING."""
        for name in ("", *self.names):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def shutting_down(self) -> None:
        """Health: NOT_SERVING from now on, so that balancers send new calls elsewhere."""
        self.health.enter_graceful_shutdown()
        self.datasets.stop()  # Follow streams would otherwise last the whole grace period

    def close(self) -> None:
        self.datasets.close()
        self.indexer.stop()
        self.limits.close()


def _name(module: object, service: str) -> str:
    return module.DESCRIPTOR.services_by_name[service].full_name  # type: ignore[attr-defined]


SERVICES: tuple[Service[ServiceContext], ...] = (
    Service(
        _name(objects_pb2, "Objects"),
        lambda ctx: ObjectsServicer(
            ObjectService(ctx.registry, ctx.limits.budget, ctx.config.maintenance.backup_roots),
            ctx.limits,
        ),
        objects_pb2_grpc.add_ObjectsServicer_to_server,
    ),
    Service(
        _name(repositories_pb2, "Repositories"),
        lambda ctx: RepositoriesServicer(RepositoryService(ctx.registry)),
        repositories_pb2_grpc.add_RepositoriesServicer_to_server,
    ),
    Service(
        _name(datasets_pb2, "Datasets"),
        lambda ctx: DatasetsServicer(ctx.datasets, ctx.limits),
        datasets_pb2_grpc.add_DatasetsServicer_to_server,
    ),
    Service(
        _name(datasets_pb2, "DatasetFiles"),
        lambda ctx: DatasetFilesServicer(DatasetFileService(ctx.registry), ctx.limits),
        datasets_pb2_grpc.add_DatasetFilesServicer_to_server,
    ),
    Service(
        _name(metadata_pb2, "MetadataCache"),
        lambda ctx: MetadataCacheServicer(
            MetadataService(ctx.registry, ctx.config.metadata.sync_roots), ctx.limits
        ),
        metadata_pb2_grpc.add_MetadataCacheServicer_to_server,
    ),
    # Check answers on the probe pool even when every worker is busy. Watch stays on the
    # workers: it holds its thread for as long as the watcher stays.
    Service(
        _name(health_pb2, "Health"),
        lambda ctx: ctx.health,
        health_pb2_grpc.add_HealthServicer_to_server,
        probes=("Check",),
    ),
    Service(
        reflection.SERVICE_NAME,
        lambda ctx: reflection.ReflectionServicer(ctx.names),
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server,
    ),
)


def interceptors(tokens: Tokens | None = None) -> list[grpc.ServerInterceptor]:
    """Interceptors every call goes through, outermost first: the call's context, request id
    and metrics; decoding; then, with ``tokens``, authentication (None: none). The access
    policy is read even without tokens, so that a method that declares no role stops every
    daemon's start."""
    policy = AccessPolicy(row.name for row in SERVICES)
    chain: list[grpc.ServerInterceptor] = [CallInterceptor(), DecodeGuard()]
    if tokens is not None:
        chain.append(Authorization(tokens, policy))
    return chain
