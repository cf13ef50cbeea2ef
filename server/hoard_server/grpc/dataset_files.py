"""hoard.v1.DatasetFiles: protobuf in, ``DatasetFileService`` calls, protobuf out.

Long streams run under ``limits``: ListFiles, ExportFile and ZipFolder take a "read" slot,
ImportFile an "upload" slot; each wait on the client is watched for idleness. A stream
holds at most one message of about a MiB beyond what grpc is sending.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from hoard.v1 import datasets_pb2 as pb
from hoard.v1 import datasets_pb2_grpc
from hoard_server.grpc.limits import StreamLimits
from hoard_server.grpc.messages import to_message
from hoard_server.grpc.status import grpc_errors
from hoard_server.services.datasets.files import DatasetFileService, ImportHeader, ImportPart


def _import_part(msg: pb.ImportRequest) -> ImportPart:
    part = msg.WhichOneof("part")
    if part == "chunk":
        return msg.chunk
    if part == "header":
        h = msg.header
        return ImportHeader(h.repository, h.path, h.overwrite)
    return None


class DatasetFilesServicer(datasets_pb2_grpc.DatasetFilesServicer):
    def __init__(self, files: DatasetFileService, limits: StreamLimits) -> None:
        self._files = files
        self._limits = limits

    @grpc_errors
    def ListFiles(self, request: pb.ListFilesRequest, context: grpc.ServicerContext):
        with self._limits.stream("read", context) as stream:
            entries = self._files.list_files(
                request.repository, request.folder, request.recursive, request.h5_only
            )
            for entry in entries:
                with stream.waiting():
                    yield to_message(pb.FileEntry, entry)

    @grpc_errors
    def DeleteFile(self, request: pb.FileRequest, context: grpc.ServicerContext):
        self._files.delete_file(request.repository, request.path)
        return pb.DeleteFileResponse()

    @grpc_errors
    def RenameFile(self, request: pb.RenameRequest, context: grpc.ServicerContext):
        entry = self._files.rename_file(
            request.repository, request.source, request.destination, request.overwrite
        )
        return to_message(pb.FileEntry, entry)

    @grpc_errors
    def CopyFile(self, request: pb.RenameRequest, context: grpc.ServicerContext):
        entry = self._files.copy_file(
            request.repository, request.source, request.destination, request.overwrite
        )
        return to_message(pb.FileEntry, entry)

    @grpc_errors
    def RemoveFiles(self, request: pb.RemoveFilesRequest, context: grpc.ServicerContext):
        result = self._files.remove_files(
            request.repository, list(request.paths), request.ignore_errors
        )
        return to_message(pb.RemoveFilesResponse, result)

    @grpc_errors
    def DiskUsage(self, request: pb.DiskUsageRequest, context: grpc.ServicerContext):
        usage = self._files.disk_usage(request.repository, request.path, request.h5_only)
        return to_message(pb.DiskUsageResponse, usage)

    @grpc_errors
    def ExportFile(self, request: pb.FileRequest, context: grpc.ServicerContext):
        with self._limits.stream("read", context) as stream:
            size, chunks = self._files.export_file(request.repository, request.path)
            try:
                first = True
                for chunk in chunks:
                    with stream.waiting():
                        yield pb.FileChunk(data=chunk, size=size if first else 0)
                    first = False
            finally:
                chunks.close()

    @grpc_errors
    def ImportFile(
        self, request_iterator: Iterator[pb.ImportRequest], context: grpc.ServicerContext
    ):
        with self._limits.stream("upload", context) as stream:
            parts = (_import_part(m) for m in stream.receive(request_iterator))
            return to_message(pb.FileEntry, self._files.import_file(parts, context.is_active))

    @grpc_errors
    def SnapshotFile(self, request: pb.FileRequest, context: grpc.ServicerContext):
        snapshot = self._files.snapshot_file(request.repository, request.path)
        return to_message(pb.SnapshotResponse, snapshot)

    @grpc_errors
    def CreateFolder(self, request: pb.FolderRequest, context: grpc.ServicerContext):
        return to_message(pb.FileEntry, self._files.create_folder(request.repository, request.path))

    @grpc_errors
    def RenameFolder(self, request: pb.RenameRequest, context: grpc.ServicerContext):
        entry = self._files.rename_folder(
            request.repository, request.source, request.destination, request.overwrite
        )
        return to_message(pb.FileEntry, entry)

    @grpc_errors
    def RemoveFolder(self, request: pb.FolderRequest, context: grpc.ServicerContext):
        result = self._files.remove_folder(request.repository, request.path, request.ignore_errors)
        return to_message(pb.RemoveFilesResponse, result)

    @grpc_errors
    def WriteXmlMetadata(self, request: pb.XmlMetadata, context: grpc.ServicerContext):
        entry = self._files.write_xml_metadata(
            request.repository, request.path, dict(request.metadata)
        )
        return to_message(pb.FileEntry, entry)

    @grpc_errors
    def ReadXmlMetadata(self, request: pb.FileRequest, context: grpc.ServicerContext):
        metadata = self._files.read_xml_metadata(request.repository, request.path)
        return pb.XmlMetadata(repository=request.repository, path=request.path, metadata=metadata)

    @grpc_errors
    def ZipFolder(self, request: pb.ZipFolderRequest, context: grpc.ServicerContext):
        with self._limits.stream("read", context) as stream:
            chunks = self._files.zip_folder(
                request.repository,
                request.folder,
                list(request.exclude),
                request.need_parent_folder,
            )
            try:
                for chunk in chunks:
                    with stream.waiting():
                        yield pb.FileChunk(data=chunk)
            finally:
                chunks.close()
