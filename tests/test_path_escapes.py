"""Path escapes on every RPC that takes a path or a directory, and bad repository names on
every RPC that names a repository.

The RPCs come from the descriptors: every string field (at any depth of the request) named
like a path (``PATH_FIELDS``) must be listed in ``FIELDS`` with what it is:

- ``REPO``: a path relative to the repository's dataset files; absolute paths, ``..``,
  NUL, backslashes and symbolic links that lead out are INVALID_ARGUMENT (INVALID_PATH);
- ``SYNC``: a path on the daemon's host under a ``[metadata] sync_roots`` root; outside
  (directly, through ``..`` or through a link) is PERMISSION_DENIED (OUTSIDE_SYNC_ROOTS),
  malformed (relative, NUL) INVALID_ARGUMENT;
- ``BACKUP``: a directory on the daemon's host under a backup root; outside is
  PERMISSION_DENIED, malformed INVALID_ARGUMENT;
- ``LABEL``: a name the daemon stores or matches but never opens (a workstation's path in
  a pushed record): any text is accepted, and nothing is read.

Every attempt must leave a directory planted outside every root unread (its marker is in
no answer) and unchanged, and create nothing outside the roots. Look-alikes of ``..``
(``%2e%2e``, one-dot leaders, fullwidth dots) are plain names: they stay inside.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import grpc
import h5py
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from harness import DaemonProcess
from hostile_requests import METHODS, Method, Outcome, serialized, served
from stored_data import StoredData

from hoard.v1 import datasets_pb2 as dpb
from hoard.v1 import datasets_pb2_grpc
from hoard.v1 import metadata_pb2 as mpb
from hoard.v1 import objects_pb2 as opb
from hoard.v1 import repositories_pb2 as rpb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
MARKER = b"OUTSIDE-THE-ROOTS-MARKER"
PATH_FIELDS = {
    "path",
    "paths",
    "folder",
    "source",
    "destination",
    "file",
    "files",
    "under",
    "directory",
    "directories",
}
REPO, SYNC, BACKUP, LABEL = "repository path", "sync root", "backup root", "label"
H5 = "keep/data.h5"  # stored by StoredData
RENAME_ME = "keep/rename-me.h5"  # a copy, for the renames that valid look-alikes make


class Place:
    """The module's daemon, its roots, and the outside world it must not touch."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.outside = base / "outside"
        self.outside.mkdir()
        with h5py.File(self.outside / "secret.h5", "w") as f:
            f["secret"] = list(MARKER)
            f.attrs["marker"] = MARKER
        (self.outside / "secret.txt").write_bytes(MARKER * 100)
        (self.outside / "Secret_01001p1c0b00_dump_00.000").write_bytes(MARKER * 1000)
        self.sync_root = base / "instrument"
        self.backup_root = base / "backups"
        self.backup_root.mkdir()
        self.data = base / "data"
        self.daemon = DaemonProcess(
            str(self.data),
            "--sync-root",
            str(self.sync_root),
            "--backup-root",
            str(self.backup_root),
        ).start()
        self.channel = grpc.insecure_channel(self.daemon.target)
        self.stored = StoredData("default", self.sync_root).seed(self.channel)
        files = datasets_pb2_grpc.DatasetFilesStub(self.channel)
        files.CopyFile(dpb.RenameRequest(repository="default", source=H5, destination=RENAME_ME))
        # links that lead out, from inside each root
        self.datasets = self.data / "repositories" / "default" / "datasets"
        for root in (self.datasets, self.sync_root, self.backup_root):
            os.symlink(self.outside, root / "link-out")
            os.symlink(self.outside / "secret.h5", root / "link-file.h5")
            os.symlink(
                self.outside / "Secret_01001p1c0b00_dump_00.000",
                root / "Link_01001p1c0b01_dump_00.000",
            )
        self.before = self.outside_state()

    def outside_state(self) -> dict[str, tuple[int, str]]:
        """Every entry under ``base`` that is not under a root the daemon may write: the
        outside directory and the base itself (nothing may appear next to the roots)."""
        state = {}
        for p in sorted(self.outside.rglob("*")):
            state[str(p)] = (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in self.base.iterdir():
            state.setdefault(str(p), (0, "entry"))
        return state

    def close(self) -> None:
        self.channel.close()
        self.daemon.stop()


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    p = Place(tmp_path_factory.mktemp("escapes"))
    yield p
    p.close()


# -- one valid request per RPC that takes a path: the attack changes one field -----------

Make = Callable[[Place], list]
NODE = dpb.NodeRef(repository="default", path=H5, dataset="rows")
ROWS = dpb.Array(dtype="<f8", shape=[1, 3], data=bytes(24))

TEMPLATES: dict[str, Make] = {
    "Objects.Backup": lambda p: [
        opb.BackupRequest(repository="default", destination=str(p.backup_root / "b"))
    ],
    "Datasets.StoreData": lambda p: [dpb.StoreDataRequest(node=NODE, data=ROWS)],
    "Datasets.AppendData": lambda p: [
        dpb.AppendDataRequest(node=NODE, data=ROWS, grow_dimension=0)
    ],
    "Datasets.Append": lambda p: [
        dpb.AppendRequest(node=NODE, data=ROWS, grow_dimension=0, sequence=1)
    ],
    "Datasets.GetData": lambda p: [dpb.GetDataRequest(node=NODE)],
    "Datasets.ReadData": lambda p: [dpb.GetDataRequest(node=NODE)],
    "Datasets.Follow": lambda p: [dpb.FollowRequest(node=NODE, grow_dimension=0)],
    "Datasets.GetDataShape": lambda p: [NODE],
    "Datasets.SetMetadata": lambda p: [
        dpb.SetMetadataRequest(node=NODE, metadata={"k": dpb.Value(int_value=1)})
    ],
    "Datasets.GetMetadata": lambda p: [NODE],
    "Datasets.RemoveMetadata": lambda p: [dpb.RemoveMetadataRequest(node=NODE, key="k")],
    "Datasets.RemoveData": lambda p: [NODE],
    "Datasets.IsValidFile": lambda p: [NODE],
    "Datasets.CloseFile": lambda p: [NODE],
    "Datasets.Describe": lambda p: [NODE],
    "DatasetFiles.ListFiles": lambda p: [
        dpb.ListFilesRequest(repository="default", folder="keep", recursive=True)
    ],
    "DatasetFiles.DeleteFile": lambda p: [dpb.FileRequest(repository="default", path="keep/x.h5")],
    "DatasetFiles.RenameFile": lambda p: [
        dpb.RenameRequest(repository="default", source=RENAME_ME, destination="keep/moved.h5")
    ],
    "DatasetFiles.CopyFile": lambda p: [
        dpb.RenameRequest(repository="default", source=H5, destination="keep/copy.h5")
    ],
    "DatasetFiles.RemoveFiles": lambda p: [
        dpb.RemoveFilesRequest(repository="default", paths=["keep/x.h5"], ignore_errors=True)
    ],
    "DatasetFiles.DiskUsage": lambda p: [dpb.DiskUsageRequest(repository="default", path="keep")],
    "DatasetFiles.ExportFile": lambda p: [dpb.FileRequest(repository="default", path=H5)],
    "DatasetFiles.ImportFile": lambda p: [
        dpb.ImportRequest(header=dpb.ImportHeader(repository="default", path="keep/in.h5")),
        dpb.ImportRequest(chunk=(p.outside / "secret.h5").read_bytes()),
    ],
    "DatasetFiles.SnapshotFile": lambda p: [dpb.FileRequest(repository="default", path=H5)],
    "DatasetFiles.CreateFolder": lambda p: [
        dpb.FolderRequest(repository="default", path="keep/new")
    ],
    "DatasetFiles.RenameFolder": lambda p: [
        dpb.RenameRequest(repository="default", source="keep/folder", destination="keep/f2")
    ],
    "DatasetFiles.RemoveFolder": lambda p: [
        dpb.FolderRequest(repository="default", path="keep/none", ignore_errors=True)
    ],
    "DatasetFiles.WriteXmlMetadata": lambda p: [
        dpb.XmlMetadata(repository="default", path="keep/P.xml", metadata={"a": "b"})
    ],
    "DatasetFiles.ReadXmlMetadata": lambda p: [
        dpb.FileRequest(repository="default", path="keep/Project.xml")
    ],
    "DatasetFiles.ZipFolder": lambda p: [dpb.ZipFolderRequest(repository="default", folder="keep")],
    "MetadataCache.SynchronizeDirectory": lambda p: [
        mpb.SyncRequest(repository="default", paths=[str(p.sync_root)], sync_subdirectories=True)
    ],
    "MetadataCache.AddFiles": lambda p: [
        mpb.AddFilesRequest(repository="default", files=p.stored.buffers[:1])
    ],
    "MetadataCache.RemoveFiles": lambda p: [
        mpb.RemoveFilesFromCacheRequest(repository="default", files=["/nowhere/x"])
    ],
    "MetadataCache.GetNonSynchronizedFiles": lambda p: [
        mpb.NonSynchronizedRequest(repository="default", files=p.stored.buffers[:1])
    ],
    "MetadataCache.Signatures": lambda p: [
        mpb.SignaturesRequest(repository="default", machine_id="ws", under="C:/")
    ],
    "MetadataCache.PushRecords": lambda p: [
        mpb.PushRecordsRequest(
            repository="default",
            machine_id="escapes",
            records=[mpb.Record(path="C:/x", signature=mpb.FileSignature(size=1))],
        )
    ],
    "MetadataCache.RemoveRecords": lambda p: [
        mpb.RemoveRecordsRequest(repository="default", machine_id="escapes", paths=["C:/x"])
    ],
    "MetadataCache.ReadFile": lambda p: [
        mpb.ReadFileRequest(repository="default", path=p.stored.buffers[0])
    ],
}

# (method, field inside the request, dotted; [] marks a repeated field) -> what it is
FIELDS: dict[tuple[str, str], str] = {
    ("Objects.Backup", "destination"): BACKUP,
    **{
        (f"Datasets.{name}", "node.path"): REPO
        for name in (
            "StoreData",
            "AppendData",
            "Append",
            "GetData",
            "ReadData",
            "Follow",
            "SetMetadata",
            "RemoveMetadata",
        )
    },
    **{
        (f"Datasets.{name}", "path"): REPO
        for name in (
            "GetDataShape",
            "GetMetadata",
            "RemoveData",
            "IsValidFile",
            "CloseFile",
            "Describe",
        )
    },  # these take a NodeRef itself
    ("DatasetFiles.ListFiles", "folder"): REPO,
    ("DatasetFiles.DeleteFile", "path"): REPO,
    ("DatasetFiles.RenameFile", "source"): REPO,
    ("DatasetFiles.RenameFile", "destination"): REPO,
    ("DatasetFiles.CopyFile", "source"): REPO,
    ("DatasetFiles.CopyFile", "destination"): REPO,
    ("DatasetFiles.RemoveFiles", "paths[]"): REPO,
    ("DatasetFiles.DiskUsage", "path"): REPO,
    ("DatasetFiles.ExportFile", "path"): REPO,
    ("DatasetFiles.ImportFile", "header.path"): REPO,
    ("DatasetFiles.SnapshotFile", "path"): REPO,
    ("DatasetFiles.CreateFolder", "path"): REPO,
    ("DatasetFiles.RenameFolder", "source"): REPO,
    ("DatasetFiles.RenameFolder", "destination"): REPO,
    ("DatasetFiles.RemoveFolder", "path"): REPO,
    ("DatasetFiles.WriteXmlMetadata", "path"): REPO,
    ("DatasetFiles.ReadXmlMetadata", "path"): REPO,
    ("DatasetFiles.ZipFolder", "folder"): REPO,
    ("MetadataCache.SynchronizeDirectory", "paths[]"): SYNC,
    ("MetadataCache.AddFiles", "files[]"): SYNC,
    ("MetadataCache.GetNonSynchronizedFiles", "files[]"): SYNC,
    ("MetadataCache.ReadFile", "path"): SYNC,
    # removed from the cache by name: nothing is opened, so any text is fine
    ("MetadataCache.RemoveFiles", "files[]"): LABEL,
    # a workstation's own paths, stored and matched as text
    ("MetadataCache.PushRecords", "records[].path"): LABEL,
    ("MetadataCache.RemoveRecords", "paths[]"): LABEL,
    ("MetadataCache.Signatures", "under"): LABEL,
}


def path_fields(descriptor, prefix: str = "", depth: int = 0) -> list[str]:
    """The dotted names of the path-like string fields of a message type, at any depth."""
    found = []
    for f in descriptor.fields:
        name = prefix + f.name + ("[]" if f.is_repeated else "")
        if f.message_type is not None and not f.message_type.GetOptions().map_entry and depth < 3:
            found += path_fields(f.message_type, name + ".", depth + 1)
        elif f.type == f.TYPE_STRING and f.name in PATH_FIELDS:
            found.append(name)
    return found


def test_every_path_field_is_covered():
    declared = {(m.name, f) for m in METHODS for f in path_fields(m.request)}
    missing = declared - set(FIELDS)
    assert not missing, f"path fields with no escape test: {sorted(missing)}"
    assert not set(FIELDS) - declared, f"listed but not in the protos: {set(FIELDS) - declared}"
    for name, _ in FIELDS:
        assert name in TEMPLATES, f"{name} has no valid request to attack"


def with_value(messages: list, field: str, value: str) -> list:
    """The first message of ``messages`` with ``field`` (dotted) set to ``value``."""
    first = messages[0]
    *parents, last = field.split(".")
    target = first
    for part in parents:
        target = getattr(target, part[:-2])[0] if part.endswith("[]") else getattr(target, part)
    if last.endswith("[]"):
        repeated = getattr(target, last[:-2])
        del repeated[:]
        repeated.append(value)
    else:
        setattr(target, last, value)
    return [first, *messages[1:]]


def send(place: Place, method: Method, messages: list) -> tuple[Outcome, bytes]:
    """Call with a deadline (Follow is cancelled once it answered) and return the outcome
    and every byte of the answer."""
    data = bytearray()
    payloads = serialized(messages)
    try:
        if method.server_streaming:
            if method.client_streaming:
                call = place.channel.stream_stream(method.path)(iter(payloads), timeout=30)
            else:
                call = place.channel.unary_stream(method.path)(payloads[0], timeout=30)
            for reply in call:
                data += reply
                if method.name == "Datasets.Follow":
                    call.cancel()
        elif method.client_streaming:
            data += place.channel.stream_unary(method.path)(iter(payloads), timeout=30)
        else:
            data += place.channel.unary_unary(method.path)(payloads[0], timeout=30)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            return Outcome(exc.code(), exc.details() or "", 0, reason_of(exc)), bytes(data)
    return Outcome(grpc.StatusCode.OK, ""), bytes(data)


def reason_of(exc: grpc.RpcError) -> str:
    status = rpc_status.from_call(exc)
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def attacks(place: Place, kind: str) -> list[tuple[str, grpc.StatusCode | None, str]]:
    """(value, expected status, expected reason) for a field of ``kind``; None: any
    status that is not a server error (the value is a plain name, inside)."""
    outside = str(place.outside / "secret.h5")
    if kind == REPO:
        bad = [
            outside,
            "/etc/passwd",
            "../../../../outside/secret.h5",
            "keep/../../../secret.h5",
            "..",
            "link-out/secret.h5",
            "link-out",
            "link-file.h5",
            "link-out/new/deeper.h5",
            "keep/x\x00.h5",
            "..\\..\\outside\\secret.h5",
            "keep\\x.h5",
            "x" * 300,
        ]
        plain = ["%2e%2e/%2e%2e/secret.h5", "\u2024\u2024/secret.h5", "\uff0e\uff0e/secret.h5"]
        return [(v, INVALID, "INVALID_PATH") for v in bad] + [(v, None, "") for v in plain]
    if kind == SYNC:
        root = str(place.sync_root)
        return [
            (str(place.outside), DENIED, "OUTSIDE_SYNC_ROOTS"),
            (str(place.outside / "Secret_01001p1c0b00_dump_00.000"), DENIED, "OUTSIDE_SYNC_ROOTS"),
            (f"{root}/../outside", DENIED, "OUTSIDE_SYNC_ROOTS"),
            (f"{root}/link-out", DENIED, "OUTSIDE_SYNC_ROOTS"),
            (f"{root}/Link_01001p1c0b01_dump_00.000", DENIED, "OUTSIDE_SYNC_ROOTS"),
            ("/etc/passwd", DENIED, "OUTSIDE_SYNC_ROOTS"),
            ("outside/secret.txt", INVALID, "INVALID_PATH"),
            ("../outside", INVALID, "INVALID_PATH"),
            (f"{root}/x\x00", INVALID, "INVALID_PATH"),
            (f"{root}/%2e%2e/outside", None, ""),
            (f"{root}/\uff0e\uff0e/outside", None, ""),
        ]
    if kind == BACKUP:
        root = str(place.backup_root)
        return [
            (str(place.outside / "b"), DENIED, ""),
            (f"{root}/../outside/b", DENIED, ""),
            (f"{root}/link-out", DENIED, ""),
            (f"{root}/link-out/b", DENIED, ""),
            ("/tmp", DENIED, ""),
            ("b", INVALID, ""),
            ("../b", INVALID, ""),
            ("", INVALID, ""),
            (f"{root}/b\x00", INVALID, ""),
            (f"{root}/%2e%2e/b", None, ""),
        ]
    return [
        (v, None, "") for v in (str(place.outside / "secret.txt"), "../../x", "C:\\..\\x", "a\x00b")
    ]


@pytest.mark.parametrize(("name", "field"), sorted(FIELDS), ids=lambda v: str(v))
def test_path_escapes(place, name, field):
    method = next(m for m in METHODS if m.name == name)
    for value, expected, reason in attacks(place, FIELDS[name, field]):
        messages = with_value(TEMPLATES[name](place), field, value)
        outcome, answer = send(place, method, messages)
        what = (name, field, value[:80], outcome)
        if expected is None:
            assert outcome.code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), what
        else:
            assert outcome.code == expected, what
            if reason:
                assert outcome.reason == reason, what
        assert MARKER not in answer, f"{what}: the answer holds the outside file's content"
        assert place.outside_state() == place.before, f"{what}: something outside changed"
    assert place.daemon.running


BAD_REPOSITORIES = ["../x", "..", "/abs", "/", "a\x00b", "x" * 300, "a/b", "a\\b", "."]


def repository_fields(descriptor, prefix: str = "") -> list[str]:
    found = []
    for f in descriptor.fields:
        if f.name == "repository":
            found.append(prefix + f.name)
        elif f.message_type is not None and f.message_type.full_name in (
            "hoard.v1.NodeRef",
            "hoard.v1.PutHeader",
            "hoard.v1.ImportHeader",
        ):
            found += repository_fields(f.message_type, prefix + f.name + ".")
    return found


OTHER_TEMPLATES: dict[str, Make] = {
    "Objects.Put": lambda p: [
        opb.PutRequest(header=opb.PutHeader(repository="default", size=1)),
        opb.PutRequest(chunk=b"x"),
    ],
    "Objects.PutBatch": lambda p: [opb.PutBatchRequest(repository="default", objects=[b"x"])],
    "Objects.Read": lambda p: [opb.ReadRequest(repository="default", key=p.stored.keys[2])],
    "Objects.ReadRange": lambda p: [
        opb.ReadRequest(repository="default", key=p.stored.keys[2], length=1)
    ],
    "Objects.ReadMany": lambda p: [opb.ReadManyRequest(repository="default", keys=p.stored.keys)],
    "Objects.Has": lambda p: [opb.HasRequest(repository="default", keys=p.stored.keys)],
    "Objects.Stat": lambda p: [opb.StatRequest(repository="default", keys=p.stored.keys)],
    "Objects.List": lambda p: [opb.ListRequest(repository="default")],
    "Objects.Delete": lambda p: [opb.DeleteRequest(repository="default", keys=["0" * 64])],
    "Objects.Info": lambda p: [opb.InfoRequest(repository="default")],
    "Objects.Maintain": lambda p: [opb.MaintainRequest(repository="default", dry_run=True)],
    "Objects.Verify": lambda p: [opb.VerifyRequest(repository="default", sample=0.5)],
    "Repositories.CreateRepository": lambda p: [rpb.CreateRepositoryRequest(repository="default")],
    "Repositories.GetRepository": lambda p: [rpb.GetRepositoryRequest(repository="default")],
    "Repositories.EraseRepository": lambda p: [rpb.EraseRepositoryRequest(repository="nothing")],
    "Repositories.SetRepositoryQuota": lambda p: [
        rpb.SetRepositoryQuotaRequest(repository="default")
    ],
    "MetadataCache.Query": lambda p: [mpb.QueryRequest(repository="default")],
    "MetadataCache.Count": lambda p: [mpb.CountRequest(repository="default")],
    "MetadataCache.Schema": lambda p: [mpb.SchemaRequest(repository="default")],
}


def test_every_repository_field_is_covered():
    for m in METHODS:
        if repository_fields(m.request):
            assert m.name in TEMPLATES or m.name in OTHER_TEMPLATES, f"{m.name}: no template"


@pytest.mark.parametrize(
    "method", [m for m in METHODS if repository_fields(m.request)], ids=lambda m: m.name
)
def test_bad_repository_names(place, method):
    """Each field naming a repository, set to a name that is not one: INVALID_ARGUMENT,
    and nothing appears outside the repositories' directory."""
    if not served(method):
        pytest.xfail(f"{method.name}: no servicer implements it yet (UNIMPLEMENTED)")
    make = TEMPLATES.get(method.name) or OTHER_TEMPLATES[method.name]
    repositories = sorted(os.listdir(place.data / "repositories"))
    data_dir = sorted(os.listdir(place.data))
    for field in repository_fields(method.request):
        for name in BAD_REPOSITORIES:
            outcome, _ = send(place, method, with_value(make(place), field, name))
            assert outcome.code == INVALID, (method.name, field, name, outcome)
    assert sorted(os.listdir(place.data / "repositories")) == repositories
    assert sorted(os.listdir(place.data)) == data_dir
    assert place.outside_state() == place.before
    assert not Path("/abs").exists()


def test_a_sync_of_a_root_does_not_follow_links_out(place):
    """The root holds links to outside files and directories: synchronising it indexes
    none of them, so ReadFile cannot serve them afterwards."""
    method = next(m for m in METHODS if m.name == "MetadataCache.SynchronizeDirectory")
    outcome, _ = send(place, method, TEMPLATES[method.name](place))
    assert outcome.code == grpc.StatusCode.OK, outcome
    query = next(m for m in METHODS if m.name == "MetadataCache.Query")
    request = mpb.QueryRequest(
        repository="default",
        filter=mpb.Filter(
            condition=mpb.Condition(
                field="path", op="prefix", values=[mpb.FieldValue(string_value=str(place.base))]
            )
        ),
    )
    outcome, answer = send(place, query, [request])
    assert outcome.code == grpc.StatusCode.OK
    assert b"Link_" not in answer and b"link-out" not in answer and b"Secret_" not in answer
    read = next(m for m in METHODS if m.name == "MetadataCache.ReadFile")
    for path in (
        place.sync_root / "Link_01001p1c0b01_dump_00.000",
        place.sync_root / "link-out" / "secret.txt",
    ):
        outcome, answer = send(
            place, read, [mpb.ReadFileRequest(repository="default", path=str(path))]
        )
        assert outcome.code == DENIED, outcome
        assert MARKER not in answer
    assert place.outside_state() == place.before


def test_an_append_stream_cannot_turn_to_another_file(place):
    """The first message names the file; a later one naming another path (an escape
    among them) or another repository ends the stream, INVALID_PATH."""
    method = next(m for m in METHODS if m.name == "Datasets.Append")
    first = dpb.AppendRequest(
        node=dpb.NodeRef(repository="default", path="keep/stream.h5", dataset="rows"),
        data=ROWS,
        grow_dimension=0,
        sequence=1,
    )
    for repository, path in [
        ("", "../../outside/secret.h5"),
        ("", str(place.outside / "secret.h5")),
        ("", "link-file.h5"),
        ("", "keep/other.h5"),
        ("scratch-none", ""),
    ]:
        turn = dpb.AppendRequest(
            node=dpb.NodeRef(repository=repository, path=path, dataset="rows"),
            data=ROWS,
            grow_dimension=0,
            sequence=2,
        )
        outcome, _ = send(place, method, [first, turn])
        assert (outcome.code, outcome.reason) == (INVALID, "INVALID_PATH"), (path, outcome)
    assert place.outside_state() == place.before


def test_walks_of_a_folder_do_not_follow_links_out(place):
    """A folder holding a link that leads out: listing, measuring and zipping it (and the
    repository's top, which holds such links too) neither read nor show what the link
    leads to; removing the folder removes the link, not its target."""
    by_name = {m.name: m for m in METHODS}
    trap = place.datasets / "trap"
    trap.mkdir()
    os.symlink(place.outside, trap / "link-out")
    for folder in ("trap", ""):
        listing = send_stream(
            place,
            "DatasetFiles.ListFiles",
            dpb.ListFilesRequest(repository="default", folder=folder, recursive=True),
            dpb.FileEntry,
        )
        assert not [e.path for e in listing if "link-out/" in e.path], folder
        chunks = send_stream(
            place,
            "DatasetFiles.ZipFolder",
            dpb.ZipFolderRequest(repository="default", folder=folder),
            dpb.FileChunk,
        )
        with zipfile.ZipFile(io.BytesIO(b"".join(c.data for c in chunks))) as archive:
            for entry in archive.namelist():
                assert "link-out/" not in entry, (folder, entry)
                assert MARKER not in archive.read(entry), (folder, entry)
    usage = dpb.DiskUsageResponse.FromString(
        send_unary(
            place, "DatasetFiles.DiskUsage", dpb.DiskUsageRequest(repository="default", path="trap")
        )
    )
    assert usage.bytes < 1000, usage  # the outside files hold 26 KB; a link a few bytes
    outcome, _ = send(
        place,
        by_name["DatasetFiles.RemoveFolder"],
        [dpb.FolderRequest(repository="default", path="trap")],
    )
    assert outcome.code == grpc.StatusCode.OK, outcome
    assert not trap.exists()
    assert place.outside_state() == place.before


def send_stream(place: Place, name: str, request, reply_type) -> list:
    method = next(m for m in METHODS if m.name == name)
    call = place.channel.unary_stream(method.path)(request.SerializeToString(), timeout=30)
    return [reply_type.FromString(r) for r in call]


def send_unary(place: Place, name: str, request) -> bytes:
    method = next(m for m in METHODS if m.name == name)
    return place.channel.unary_unary(method.path)(request.SerializeToString(), timeout=30)


def test_stored_data_is_unchanged(place):
    """After every attempt: the seeded repository still reads back, and the daemon
    logged no traceback (no attempt was a server error, even one answered in time)."""
    snap = place.stored.snapshot(place.channel)
    assert snap["objects"]
    assert snap["datasets"]["data"][1] == [4, 5]
    log = "".join(place.daemon.log)
    assert "Traceback" not in log, log[-4000:]
