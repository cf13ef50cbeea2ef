"""Data stored in a repository before a hostile test, and what it reads back as afterwards.

``StoredData(repository, sync_root).seed(channel)`` puts something on every face: objects,
a dataset file with two datasets, TVB XML metadata and a folder, records pushed by a
workstation and buffer files synchronised from a sync root on the daemon's host. Its
``snapshot(channel)`` reads all of it back through the raw stubs; a test compares the
snapshot after the attack with the one before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from buffers import write_buffer_tree

from hoard.v1 import datasets_pb2 as dpb
from hoard.v1 import datasets_pb2_grpc, metadata_pb2_grpc, objects_pb2_grpc, repositories_pb2_grpc
from hoard.v1 import metadata_pb2 as mpb
from hoard.v1 import objects_pb2 as opb
from hoard.v1 import repositories_pb2 as rpb

OBJECTS = [b"", b"x", b"stored before the attack " * 100, bytes(range(256)) * 1024]
H5 = "keep/data.h5"
XML = "keep/Project.xml"
FOLDER = "keep/folder"
WORKSTATION = "ws"
T = 60  # seconds: any one call of the seeding or the check


def buffer_tree(root: Path, count: int = 3) -> list[str]:
    """Buffer files under ``root`` (created once), for server-side synchronisation."""
    if not root.exists():
        root.mkdir(parents=True)
        write_buffer_tree(root, count)
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def _records() -> list[mpb.Record]:
    return [
        mpb.Record(
            path=f"C:/keep/f{n}",
            signature=mpb.FileSignature(size=n + 1, mtime_ns=2, ctime_ns=3, inode=n),
            fields={
                "process": mpb.FieldValue(int_value=n),
                "label": mpb.FieldValue(string_value=f"run {n}"),
            },
        )
        for n in range(5)
    ]


def _kept_records() -> mpb.Filter:
    """The workstation's records and the daemon's own synchronised files (not the dataset
    indexer's, which it may write at any time)."""
    return mpb.Filter(
        any=mpb.FilterList(
            filters=[
                mpb.Filter(
                    condition=mpb.Condition(
                        field="machine_id", op="==", values=[mpb.FieldValue(string_value=m)]
                    )
                )
                for m in (WORKSTATION, "")
            ]
        )
    )


@dataclass
class StoredData:
    repository: str
    sync_root: Path
    keys: list[str] = field(default_factory=list)

    @property
    def buffers(self) -> list[str]:
        return buffer_tree(self.sync_root)

    def seed(self, channel: grpc.Channel) -> StoredData:
        repos = repositories_pb2_grpc.RepositoriesStub(channel)
        objects = objects_pb2_grpc.ObjectsStub(channel)
        datasets = datasets_pb2_grpc.DatasetsStub(channel)
        files = datasets_pb2_grpc.DatasetFilesStub(channel)
        metadata = metadata_pb2_grpc.MetadataCacheStub(channel)
        r = self.repository
        buffer_tree(self.sync_root)
        repos.CreateRepository(rpb.CreateRepositoryRequest(repository=r), timeout=T)
        put = objects.PutBatch(opb.PutBatchRequest(repository=r, objects=OBJECTS), timeout=T)
        self.keys = list(put.keys)
        data = dpb.Array(dtype="<i4", shape=[4, 5], data=bytes(range(80)))
        datasets.StoreData(
            dpb.StoreDataRequest(
                node=dpb.NodeRef(repository=r, path=H5, dataset="data"), data=data
            ),
            timeout=T,
        )
        rows = dpb.Array(dtype="<f8", shape=[6, 3], data=os.urandom(8 * 18))
        datasets.StoreData(
            dpb.StoreDataRequest(
                node=dpb.NodeRef(repository=r, path=H5, dataset="rows"), data=rows
            ),
            timeout=T,
        )
        files.WriteXmlMetadata(
            dpb.XmlMetadata(repository=r, path=XML, metadata={"name": "kept"}), timeout=T
        )
        files.CreateFolder(dpb.FolderRequest(repository=r, path=FOLDER), timeout=T)
        metadata.PushRecords(
            mpb.PushRecordsRequest(repository=r, machine_id=WORKSTATION, records=_records()),
            timeout=T,
        )
        sync = mpb.SyncRequest(repository=r, paths=[str(self.sync_root)], sync_subdirectories=True)
        list(metadata.SynchronizeDirectory(sync, timeout=T))
        return self

    def snapshot(self, channel: grpc.Channel) -> dict[str, Any]:
        """Everything ``seed`` stored, as read back now."""
        objects = objects_pb2_grpc.ObjectsStub(channel)
        datasets = datasets_pb2_grpc.DatasetsStub(channel)
        files = datasets_pb2_grpc.DatasetFilesStub(channel)
        metadata = metadata_pb2_grpc.MetadataCacheStub(channel)
        r = self.repository
        keys = [k for m in objects.List(opb.ListRequest(repository=r), timeout=T) for k in m.keys]
        contents = {
            k: b"".join(
                m.data for m in objects.Read(opb.ReadRequest(repository=r, key=k), timeout=T)
            )
            for k in keys
        }
        arrays = {}
        for name in ("data", "rows"):
            node = dpb.NodeRef(repository=r, path=H5, dataset=name)
            a = datasets.GetData(dpb.GetDataRequest(node=node), timeout=T)
            arrays[name] = (a.dtype, list(a.shape), a.data)
        listing = files.ListFiles(dpb.ListFilesRequest(repository=r, recursive=True), timeout=T)
        xml = files.ReadXmlMetadata(dpb.FileRequest(repository=r, path=XML), timeout=T)
        query = mpb.QueryRequest(
            repository=r,
            filter=_kept_records(),
            order_by=[mpb.OrderBy(field="path")],
            output="records",
        )
        records = [
            rec.SerializeToString(deterministic=True)
            for page in metadata.Query(query, timeout=T)
            for rec in page.records
        ]
        count = metadata.Count(mpb.CountRequest(repository=r, filter=_kept_records()), timeout=T)
        return {
            "objects": contents,
            "datasets": arrays,
            "files": sorted((e.path, e.is_folder) for e in listing),
            "xml": dict(xml.metadata),
            "records": records,
            "count": count.count,
        }
