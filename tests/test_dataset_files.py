"""DatasetFiles: TVB's FilesHelper side of a repository's dataset files.

The service is checked directly (real h5py, real files, OpenFiles' real doors) against TVB's
own functions where TVB has one (XML metadata both ways, the zip, disk usage, run in the
tvb-storage venv), and then through the real daemon with the generated stubs: statuses,
reasons and the sandbox, RPC by RPC.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import threading
import zipfile
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path

import grpc
import h5py
import numpy as np
import pytest
from harness import wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hoard
from hoard.v1 import datasets_pb2 as pb
from hoard.v1 import datasets_pb2_grpc, objects_pb2_grpc
from hoard.v1 import objects_pb2 as opb
from hoard_server.errors import FailedPrecondition, HoardError, InvalidArgument, NotFound
from hoard_server.services.datasets import xml_metadata
from hoard_server.services.datasets.files import DatasetFileService, ImportHeader
from hoard_server.storage.hdf5 import superblock
from hoard_server.storage.hdf5.files import OpenFiles
from hoard_server.storage.registry import RepositoryRegistry
from tests.harness.tvb import TVB_PYTHON, needs_tvb


def tvb(script: str, *args: str) -> str:
    """Run ``script`` with tvb-storage's Python; its standard output."""
    done = subprocess.run(
        [str(TVB_PYTHON), "-c", script, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path) -> Iterator[RepositoryRegistry]:
    registry = RepositoryRegistry(str(tmp_path / "data"))
    registry.create("default")
    yield registry
    registry.close()


@pytest.fixture
def service(registry) -> DatasetFileService:
    return DatasetFileService(registry)


@pytest.fixture
def files(registry, service) -> OpenFiles:
    service.list_files("default")  # makes the datasets folder
    return registry.get("default").files


def plain_h5(files: OpenFiles, path: str, values=range(10)) -> str:
    """A closed HDF5 file at ``path`` holding ``values`` as dataset "x"."""
    full = files.resolve(path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with h5py.File(full, "w") as f:
        f["x"] = np.asarray(list(values))
    return full


def plain(files: OpenFiles, path: str, data: bytes = b"text") -> str:
    full = files.resolve(path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    Path(full).write_bytes(data)
    return full


def open_for_writing(files: OpenFiles, path: str, values=range(10)) -> h5py.File:
    """The daemon's own writing handle on ``path`` (left open, as a live writer's is)."""
    with files.writing(path, create=True) as f:
        f["x"] = np.asarray(list(values))
        f.flush()
        return f


def reason(exc: pytest.ExceptionInfo) -> str:
    assert isinstance(exc.value, HoardError)
    return exc.value.reason


def tree(root: str) -> dict[str, bytes | None]:
    """Every path under ``root`` (links not followed) with its content (None: a folder)."""
    found: dict[str, bytes | None] = {}
    for top, dirs, names in os.walk(root):
        for d in dirs:
            found[os.path.relpath(os.path.join(top, d), root)] = None
        for n in names:
            p = os.path.join(top, n)
            found[os.path.relpath(p, root)] = (
                b"link:" + os.readlink(p).encode() if os.path.islink(p) else Path(p).read_bytes()
            )
    return found


def scratch_left(files: OpenFiles) -> list[str]:
    return [
        os.path.join(top, n)
        for top, dirs, names in os.walk(files.root)
        for n in [*dirs, *names]
        if n.startswith(".hoard-")
    ]


# -- listing and disk usage -------------------------------------------------------------------

FOLDER_NAMES = ["a", "b", "a-1", "a.b"]
FILE_NAMES = ["a.h5", "b.txt", "a-1.h5", "z.h5"]
_examples = count()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.lists(st.sampled_from(FOLDER_NAMES), max_size=3), st.sampled_from(FILE_NAMES)),
        max_size=12,
    )
)
def test_listing_is_in_path_order(service, files, layout):
    """Recursive listing is sorted(every folder and file); a flat one is the top's
    children; h5_only keeps files ending ".h5" (folders named "a.b" never look like one)."""
    top = f"t{next(_examples)}"
    os.makedirs(files.resolve(top))
    expected: dict[str, bool] = {}
    for folders, name in layout:
        for n in range(1, len(folders) + 1):
            expected["/".join([top, *folders[:n]])] = True
        path = "/".join([top, *folders, name])
        plain(files, path, path.encode())
        expected[path] = False
    listed = list(service.list_files("default", top, recursive=True))
    assert [e.path for e in listed] == sorted(expected)
    assert all(e.is_folder == expected[e.path] for e in listed)
    assert all(e.size == (0 if e.is_folder else len(e.path)) for e in listed)
    flat = [e.path for e in service.list_files("default", top)]
    assert flat == sorted(p for p in expected if p.count("/") == 1)
    h5 = [e.path for e in service.list_files("default", top, recursive=True, h5_only=True)]
    assert h5 == sorted(p for p, folder in expected.items() if not folder and p.endswith(".h5"))


def test_listing_hides_scratch_files_and_links(service, files, tmp_path):
    plain(files, "p/a.h5")
    plain(files, "p/.hoard-import-0123")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.h5").write_bytes(b"secret")
    os.symlink(outside, files.resolve("p/out"))
    os.symlink(files.resolve("p/a.h5"), files.resolve("p/alias.h5"))
    assert [e.path for e in service.list_files("default", "", recursive=True)] == ["p", "p/a.h5"]
    assert service.disk_usage("default", "p").files == 1


def test_listing_a_missing_folder_or_a_file(service, files):
    plain(files, "f.h5")
    with pytest.raises(NotFound) as exc:
        service.list_files("default", "nope")
    assert reason(exc) == "FOLDER_NOT_FOUND" and "nope" in str(exc.value)
    with pytest.raises(FailedPrecondition) as exc:
        service.list_files("default", "f.h5")
    assert reason(exc) == "NOT_A_FOLDER"


@needs_tvb
def test_disk_usage_is_tvbs(service, files):
    for i, size in enumerate([100, 1500, 2048, 5000, 513]):
        plain(files, f"p/{i}/d{i}.h5", b"x" * size)
        plain(files, f"p/{i}/n{i}.txt", b"y" * (size + 7))
    h5 = service.disk_usage("default", "p", h5_only=True)
    assert (h5.bytes, h5.files) == (100 + 1500 + 2048 + 5000 + 513, 5)
    all_ = service.disk_usage("default", "p")
    assert (all_.bytes, all_.files) == (h5.bytes * 2 + 35, 10)
    script = (
        "import sys; from tvb.storage.h5.file.files_helper import FilesHelper as F; "
        "print(F.compute_recursive_h5_disk_usage(sys.argv[1]), "
        "F.compute_size_on_disk(sys.argv[2]))"
    )
    kib, one = tvb(script, files.resolve("p"), files.resolve("p/2/n2.txt")).split()
    assert h5.kib == int(kib)
    single = service.disk_usage("default", "p/2/n2.txt")
    assert (single.bytes, single.files, single.kib) == (2055, 1, int(one))
    assert service.disk_usage("default", "p/2/n2.txt", h5_only=True).files == 0
    with pytest.raises(NotFound):
        service.disk_usage("default", "p/none")


# -- files ------------------------------------------------------------------------------------


def test_delete_file_closes_the_handle(service, files):
    handle = open_for_writing(files, "p/a.h5")
    service.delete_file("default", "p/a.h5")
    assert not handle.id.valid
    assert not os.path.exists(files.resolve("p/a.h5"))
    with pytest.raises(NotFound) as exc:
        service.delete_file("default", "p/a.h5")
    assert reason(exc) == "FILE_NOT_FOUND" and "p/a.h5" in str(exc.value)
    with pytest.raises(FailedPrecondition) as exc:
        service.delete_file("default", "p")
    assert reason(exc) == "NOT_A_FILE"


def test_rename_file(service, files):
    source = open_for_writing(files, "p/a.h5", range(3))
    target = open_for_writing(files, "q/b.h5", range(5))
    with pytest.raises(FailedPrecondition) as exc:
        service.rename_file("default", "p/a.h5", "q/b.h5")
    assert reason(exc) == "FILE_EXISTS" and "q/b.h5" in str(exc.value)
    entry = service.rename_file("default", "p/a.h5", "q/b.h5", overwrite=True)
    assert not source.id.valid and not target.id.valid  # both ends closed
    assert (entry.path, entry.is_folder) == ("q/b.h5", False)
    with h5py.File(files.resolve("q/b.h5"), "r") as f:
        assert list(f["x"][:]) == [0, 1, 2]
    service.rename_file("default", "q/b.h5", "new/deep/c.h5")  # parents made
    assert os.path.isfile(files.resolve("new/deep/c.h5"))
    with pytest.raises(FailedPrecondition) as exc:
        service.rename_file("default", "new/deep/c.h5", "new/deep/c.h5")
    assert reason(exc) == "FILE_EXISTS"
    service.rename_file("default", "new/deep/c.h5", "new/deep/c.h5", overwrite=True)
    assert os.path.isfile(files.resolve("new/deep/c.h5"))
    with pytest.raises(FailedPrecondition) as exc:
        service.rename_file("default", "new/deep/c.h5", "new", overwrite=True)
    assert reason(exc) == "NOT_A_FILE"
    plain(files, "blocker")
    with pytest.raises(FailedPrecondition) as exc:
        service.rename_file("default", "new/deep/c.h5", "blocker/c.h5")
    assert reason(exc) == "NOT_A_FOLDER" and "blocker" in str(exc.value)
    with pytest.raises(NotFound):
        service.rename_file("default", "nope.h5", "x.h5")


def test_copy_of_a_file_open_for_writing_opens_with_plain_h5py(service, files):
    handle = open_for_writing(files, "p/a.h5", range(7))
    with open(files.resolve("p/a.h5"), "rb") as f:
        assert superblock.status_flags(f.read(4096)) != 0  # the original is marked open
    service.copy_file("default", "p/a.h5", "q/copy.h5")
    assert handle.id.valid  # the source stays open: a copy only pauses its writer
    with h5py.File(files.resolve("q/copy.h5"), "r") as f:
        assert list(f["x"][:]) == list(range(7))
    with pytest.raises(FailedPrecondition) as exc:
        service.copy_file("default", "p/a.h5", "q/copy.h5")
    assert reason(exc) == "FILE_EXISTS"
    other = open_for_writing(files, "r/b.h5", range(2))
    service.copy_file("default", "r/b.h5", "q/copy.h5", overwrite=True)
    with h5py.File(files.resolve("q/copy.h5"), "r") as f:
        assert list(f["x"][:]) == [0, 1]
    assert other.id.valid
    assert scratch_left(files) == []


def test_remove_files_tries_every_path(service, files):
    plain(files, "a.h5")
    plain(files, "d/b.h5")
    handle = open_for_writing(files, "d/e/c.h5")
    with pytest.raises(NotFound) as exc:
        service.remove_files("default", ["a.h5", "missing-1", "d", "missing-2"])
    assert reason(exc) == "FILE_NOT_FOUND"
    assert exc.value.details["missing"] == "missing-1,missing-2"
    assert exc.value.details["removed"] == "a.h5,d"
    assert "missing-1" in str(exc.value) and "'a.h5'" in str(exc.value)
    assert not os.path.exists(files.resolve("a.h5")) and not os.path.exists(files.resolve("d"))
    assert not handle.id.valid
    plain(files, "x.h5")
    result = service.remove_files("default", ["x.h5", "gone"], ignore_errors=True)
    assert (result.removed, result.missing) == (["x.h5"], ["gone"])


# -- folders ----------------------------------------------------------------------------------


def test_folders(service, files):
    entry = service.create_folder("default", "p/q/r")
    assert entry.is_folder and entry.path == "p/q/r"
    service.create_folder("default", "p/q/r")  # idempotent
    plain(files, "f")
    for path in ("f", "f/sub"):
        with pytest.raises(FailedPrecondition) as exc:
            service.create_folder("default", path)
        assert reason(exc) == "NOT_A_FOLDER"
    handle = open_for_writing(files, "p/q/r/a.h5")
    service.rename_folder("default", "p", "moved/p2")
    assert not handle.id.valid
    assert os.path.isfile(files.resolve("moved/p2/q/r/a.h5"))
    with pytest.raises(InvalidArgument) as exc:
        service.rename_folder("default", "moved", "moved/p2/inner")
    assert reason(exc) == "INVALID_PATH"
    service.create_folder("default", "other")
    with pytest.raises(FailedPrecondition) as exc:
        service.rename_folder("default", "moved", "other")
    assert reason(exc) == "FILE_EXISTS"
    service.rename_folder("default", "moved", "other", overwrite=True)
    assert os.path.isfile(files.resolve("other/p2/q/r/a.h5"))
    with pytest.raises(NotFound) as exc:
        service.rename_folder("default", "moved", "x")
    assert reason(exc) == "FOLDER_NOT_FOUND"
    with pytest.raises(FailedPrecondition) as exc:
        service.rename_folder("default", "f", "x")
    assert reason(exc) == "NOT_A_FOLDER"
    handle = open_for_writing(files, "other/p2/b.h5")
    assert service.remove_folder("default", "other").removed == ["other"]
    assert not handle.id.valid and not os.path.exists(files.resolve("other"))
    with pytest.raises(NotFound) as exc:
        service.remove_folder("default", "other")
    assert reason(exc) == "FOLDER_NOT_FOUND"
    assert service.remove_folder("default", "other", ignore_errors=True).missing == ["other"]
    with pytest.raises(FailedPrecondition) as exc:
        service.remove_folder("default", "f")
    assert reason(exc) == "NOT_A_FOLDER"
    assert os.path.isfile(files.resolve("f"))


# -- TVB's XML metadata -----------------------------------------------------------------------

KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,15}", fullmatch=True).filter(
    lambda k: not k.lower().startswith("xml")
)
VALUES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff"), max_size=40
).map(lambda v: "".join(c for c in v if c in "\t\n\r" or ord(c) >= 0x20).strip())


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=8))
def test_xml_metadata_round_trips(metadata):
    assert xml_metadata.loads(xml_metadata.dumps(metadata)) == metadata


@needs_tvb
def test_tvb_reads_what_we_write_and_we_read_what_tvb_writes(service, files, tmp_path):
    ours = {"name": "Project <1> & co", "description": "two\nlines", "last_updated": "", "id": "7"}
    service.write_xml_metadata("default", "proj/Project.xml", ours)
    read = tvb(
        "import sys, json; from tvb.storage.h5.file.xml_metadata_handlers import XMLReader; "
        "print(json.dumps(XMLReader(sys.argv[1]).read_metadata_from_xml()))",
        files.resolve("proj/Project.xml"),
    )
    assert json.loads(read) == ours
    theirs = {"name": "TVB's own", "gid": "abc-123", "tags": [1, "two"], "empty": ""}
    tvb(
        "import sys, json; from tvb.storage.h5.file.xml_metadata_handlers import XMLWriter; "
        "XMLWriter(json.loads(sys.argv[1])).write_metadata_in_xml(sys.argv[2])",
        json.dumps(theirs),
        files.resolve("proj/Operation.xml"),
    )
    assert service.read_xml_metadata("default", "proj/Operation.xml") == {
        "name": "TVB's own",
        "gid": "abc-123",
        "tags": '[1, "two"]',  # TVB's writer stores a list as JSON
        "empty": "",
    }


def test_xml_metadata_refusals(service, files):
    for bad in ({"1x": "v"}, {"a b": "v"}, {"": "v"}, {"xmlthing": "v"}, {"k": "a\x00b"}):
        with pytest.raises(InvalidArgument) as exc:
            service.write_xml_metadata("default", "m.xml", bad)
        assert reason(exc) == "INVALID_METADATA"
    assert not os.path.exists(files.resolve("m.xml"))
    plain(files, "not.xml", b"\x89HDF not xml")
    with pytest.raises(InvalidArgument) as exc:
        service.read_xml_metadata("default", "not.xml")
    assert reason(exc) == "INVALID_METADATA" and "not.xml" in str(exc.value)
    with pytest.raises(NotFound):
        service.read_xml_metadata("default", "none.xml")
    service.write_xml_metadata("default", "m.xml", {"a": "1"})
    service.write_xml_metadata("default", "m.xml", {"b": "2"})  # replaced whole
    assert service.read_xml_metadata("default", "m.xml") == {"b": "2"}
    assert scratch_left(files) == []


# -- zip --------------------------------------------------------------------------------------


@needs_tvb
@pytest.mark.parametrize("need_parent_folder", [False, True])
def test_zip_is_tvbs(service, files, tmp_path, need_parent_folder):
    """Same members, same bytes as TVB's write_zip_folder, exclusions at every level."""
    plain_h5(files, "proj/op1/a.h5")
    plain(files, "proj/Project.xml", b"<tvb_data/>")
    plain(files, "proj/op1/skip.txt", b"left out")
    plain(files, "proj/skip.txt/x", b"left out too")
    plain(files, "proj/op2/deep/b.txt", os.urandom(3_000_000))  # spans several messages
    plain(files, "proj/TEMP/c.h5", b"tmp")
    exclude = ["skip.txt", "TEMP"]
    chunks = list(service.zip_folder("default", "proj", exclude, need_parent_folder))
    assert len(chunks) > 1
    ours = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    dest = tmp_path / "tvb.zip"
    tvb(
        "import sys, json; from tvb.storage.h5.file.files_helper import TvbZip; "
        "z = TvbZip(sys.argv[1], 'w'); "
        "z.write_zip_folder(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == '1'); z.close()",
        str(dest),
        files.resolve("proj"),
        json.dumps(exclude),
        "1" if need_parent_folder else "0",
    )
    theirs = zipfile.ZipFile(dest)
    assert sorted(ours.namelist()) == sorted(theirs.namelist())
    assert ours.namelist() == sorted(ours.namelist())
    for name in theirs.namelist():
        assert ours.read(name) == theirs.read(name)
    assert ours.testzip() is None


def opens_with_plain_h5py(data: bytes, where: Path) -> list[int]:
    """Dataset "x" of the HDF5 file ``data``, opened from disk by plain h5py."""
    where.write_bytes(data)
    with h5py.File(where, "r") as f:
        return list(f["x"][:])


def test_zip_of_files_open_for_writing(service, files, tmp_path):
    open_for_writing(files, "p/a.h5", range(4))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(service.zip_folder("default", ""))))
    assert archive.namelist() == ["p/a.h5"]
    member = archive.read("p/a.h5")
    assert superblock.status_flags(member) == 0
    assert opens_with_plain_h5py(member, tmp_path / "member.h5") == [0, 1, 2, 3]
    with pytest.raises(NotFound):
        list(service.zip_folder("default", "none"))


# -- export, import, snapshot -----------------------------------------------------------------


def test_export_of_a_file_open_for_writing(service, files, tmp_path):
    handle = open_for_writing(files, "p/a.h5", range(12))
    size, chunks = service.export_file("default", "p/a.h5")
    data = b"".join(chunks)
    assert len(data) == size == os.path.getsize(files.resolve("p/a.h5"))
    assert superblock.status_flags(data) == 0
    assert opens_with_plain_h5py(data, tmp_path / "export.h5") == list(range(12))
    assert handle.id.valid
    with pytest.raises(FailedPrecondition):
        service.export_file("default", "p")


def _import(service, path, chunks, overwrite=False, active=True):
    parts = iter([ImportHeader("default", path, overwrite), *chunks])
    return service.import_file(parts, lambda: active)


def test_import(service, files, tmp_path):
    source = plain_h5(files, "src.h5", range(5))
    data = Path(source).read_bytes()
    entry = _import(service, "in/a.h5", [data[:100], data[100:]])
    assert (entry.path, entry.size) == ("in/a.h5", len(data))
    assert Path(files.resolve("in/a.h5")).read_bytes() == data
    with pytest.raises(FailedPrecondition) as exc:
        _import(service, "in/a.h5", [data])
    assert reason(exc) == "FILE_EXISTS"
    handle = open_for_writing(files, "in/b.h5", range(2))
    _import(service, "in/b.h5", [data], overwrite=True)
    assert not handle.id.valid
    with h5py.File(files.resolve("in/b.h5"), "r") as f:
        assert list(f["x"][:]) == list(range(5))
    for chunks in ([b"not hdf5 at all"], [], [data[: len(data) // 2]]):
        with pytest.raises(InvalidArgument) as exc:
            _import(service, "in/bad.h5", chunks)
        assert reason(exc) == "NOT_HDF5"
    with pytest.raises(InvalidArgument):  # cancelled once all arrived
        _import(service, "in/cut.h5", [data], active=False)
    with pytest.raises(InvalidArgument):
        service.import_file(iter([data]), lambda: True)  # no header
    with pytest.raises(InvalidArgument):
        _import(service, "in/two.h5", [ImportHeader("default", "x.h5"), data])
    assert not any(
        os.path.exists(files.resolve(p)) for p in ("in/bad.h5", "in/cut.h5", "in/two.h5")
    )
    assert scratch_left(files) == []


def test_import_of_a_file_left_open_elsewhere(service, files, tmp_path):
    """A copy taken while a writer had it open still carries the flags: cleared on import."""
    handle = open_for_writing(files, "p/a.h5", range(3))
    with open(files.resolve("p/a.h5"), "rb") as f:
        data = f.read()
    assert superblock.status_flags(data) != 0
    _import(service, "q/b.h5", [data])
    with h5py.File(files.resolve("q/b.h5"), "r") as f:
        assert list(f["x"][:]) == [0, 1, 2]
    handle.close()


def test_snapshot(service, files, registry):
    open_for_writing(files, "p/a.h5", range(6))
    first = service.snapshot_file("default", "p/a.h5")
    _, chunks = service.export_file("default", "p/a.h5")
    exported = b"".join(chunks)
    assert first.key == hashlib.sha256(exported).hexdigest() and first.size == len(exported)
    service.copy_file("default", "p/a.h5", "q/b.h5")
    assert service.snapshot_file("default", "q/b.h5").key == first.key
    _, stored = registry.get("default").read(first.key)
    with h5py.File(io.BytesIO(b"".join(stored)), "r") as f:
        assert list(f["x"][:]) == list(range(6))


# -- the sandbox, operation by operation ------------------------------------------------------

BAD_PATHS = ["..", "../x.h5", "/etc/passwd", "a//b.h5", "a/b.h5/", "a\x00b.h5", "a\\b.h5"]
LINKED = ["out", "out/x.h5", "out/sub", "out/new.h5"]  # "out" is a link to a folder outside


def operations(service: DatasetFileService) -> dict[str, Callable[[str], object]]:
    """Each operation with a client path in each place a path goes (good ones elsewhere)."""
    r = "default"

    def imported(path: str) -> object:
        return service.import_file(iter([ImportHeader(r, path, True), b"x"]), lambda: True)

    return {
        "list": lambda p: list(service.list_files(r, p, recursive=True)),
        "delete": lambda p: service.delete_file(r, p),
        "rename from": lambda p: service.rename_file(r, p, "in/x.h5", True),
        "rename to": lambda p: service.rename_file(r, "in/a.h5", p, True),
        "copy from": lambda p: service.copy_file(r, p, "in/x.h5", True),
        "copy to": lambda p: service.copy_file(r, "in/a.h5", p, True),
        "remove": lambda p: service.remove_files(r, ["in/a.h5", p], True),
        "usage": lambda p: service.disk_usage(r, p),
        "export": lambda p: b"".join(service.export_file(r, p)[1]),
        "import": imported,
        "snapshot": lambda p: service.snapshot_file(r, p),
        "create folder": lambda p: service.create_folder(r, p),
        "rename folder from": lambda p: service.rename_folder(r, p, "in2", True),
        "rename folder to": lambda p: service.rename_folder(r, "in", p, True),
        "remove folder": lambda p: service.remove_folder(r, p, True),
        "write xml": lambda p: service.write_xml_metadata(r, p, {"a": "b"}),
        "read xml": lambda p: service.read_xml_metadata(r, p),
        "zip": lambda p: b"".join(service.zip_folder(r, p)),
    }


def test_every_operation_refuses_paths_leaving_the_repository(service, files, tmp_path):
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "x.h5").write_bytes(b"outside, keep me")
    (outside / "sub" / "y.h5").write_bytes(b"me too")
    plain_h5(files, "in/a.h5")
    os.symlink(outside, files.resolve("out"))
    before, inside = tree(str(outside)), tree(files.root)
    for name, operation in operations(service).items():
        for path in BAD_PATHS + LINKED:
            with pytest.raises(InvalidArgument) as exc:
                operation(path)
            assert reason(exc) == "INVALID_PATH", (name, path)
    assert tree(str(outside)) == before
    assert tree(files.root) == inside
    # a link out inside a folder: walks neither follow nor show it; removals take the link
    os.symlink(outside, files.resolve("in/link"))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(service.zip_folder("default", ""))))
    assert archive.namelist() == ["in/a.h5"]
    assert service.disk_usage("default", "").files == 1
    service.rename_folder("default", "in", "in2")
    service.remove_folder("default", "in2")
    service.create_folder("default", "in3")
    os.symlink(outside, files.resolve("in3/link"))
    service.remove_files("default", ["in3"])
    assert tree(str(outside)) == before
    assert sorted(os.listdir(files.root)) == ["out"]


# -- through the daemon -----------------------------------------------------------------------


@pytest.fixture
def stub(hoard_daemon) -> Iterator[datasets_pb2_grpc.DatasetFilesStub]:
    with grpc.insecure_channel(hoard_daemon.target) as channel:
        yield datasets_pb2_grpc.DatasetFilesStub(channel)


def datasets_dir(daemon) -> str:
    return os.path.join(daemon.data_dir, "repositories", "default", "datasets")


def h5_bytes(values=range(10)) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f["x"] = np.asarray(list(values))
    return buffer.getvalue()


def import_requests(path: str, data: bytes, overwrite: bool = False) -> Iterator[pb.ImportRequest]:
    yield pb.ImportRequest(
        header=pb.ImportHeader(repository="default", path=path, overwrite=overwrite)
    )
    for i in range(0, len(data), 1000):
        yield pb.ImportRequest(chunk=data[i : i + 1000])


def failure(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, str]:
    """(code, reason, message) of a call that must fail."""
    with pytest.raises(grpc.RpcError) as exc:
        call()
    error = hoard.errors.from_rpc_error(exc.value)
    return exc.value.code(), error.reason, exc.value.details()


def test_through_the_daemon(hoard_daemon, stub):
    r = "default"
    data = h5_bytes(range(20))
    entry = stub.ImportFile(import_requests("proj/op/a.h5", data), timeout=30)
    assert (entry.path, entry.size, entry.is_folder) == ("proj/op/a.h5", len(data), False)
    code, why, message = failure(lambda: stub.ImportFile(import_requests("proj/op/a.h5", data)))
    assert (code, why) == (grpc.StatusCode.FAILED_PRECONDITION, "FILE_EXISTS")
    assert "proj/op/a.h5" in message
    code, why, _ = failure(lambda: stub.ImportFile(import_requests("proj/bad.h5", b"no" * 600)))
    assert (code, why) == (grpc.StatusCode.INVALID_ARGUMENT, "NOT_HDF5")

    stub.CopyFile(pb.RenameRequest(repository=r, source="proj/op/a.h5", destination="proj/b.h5"))
    stub.RenameFile(pb.RenameRequest(repository=r, source="proj/b.h5", destination="proj/c.h5"))
    stub.CreateFolder(pb.FolderRequest(repository=r, path="proj/empty"))
    meta = {"name": "proj", "description": "a <test>"}
    stub.WriteXmlMetadata(pb.XmlMetadata(repository=r, path="proj/Project.xml", metadata=meta))
    read = stub.ReadXmlMetadata(pb.FileRequest(repository=r, path="proj/Project.xml"))
    assert dict(read.metadata) == meta

    listed = stub.ListFiles(pb.ListFilesRequest(repository=r, folder="proj", recursive=True))
    assert [(e.path, e.is_folder) for e in listed] == [
        ("proj/Project.xml", False),
        ("proj/c.h5", False),
        ("proj/empty", True),
        ("proj/op", True),
        ("proj/op/a.h5", False),
    ]
    h5 = stub.ListFiles(pb.ListFilesRequest(repository=r, folder="proj", h5_only=True))
    assert [e.path for e in h5] == ["proj/c.h5"]
    usage = stub.DiskUsage(pb.DiskUsageRequest(repository=r, path="proj", h5_only=True))
    assert (usage.bytes, usage.files) == (2 * len(data), 2)

    chunks = list(stub.ExportFile(pb.FileRequest(repository=r, path="proj/c.h5")))
    assert chunks[0].size == len(data) and b"".join(c.data for c in chunks) == data
    archive = zipfile.ZipFile(
        io.BytesIO(
            b"".join(
                c.data
                for c in stub.ZipFolder(
                    pb.ZipFolderRequest(
                        repository=r, folder="proj", exclude=["op"], need_parent_folder=True
                    )
                )
            )
        )
    )
    assert archive.namelist() == ["proj/Project.xml", "proj/c.h5"]

    snap = stub.SnapshotFile(pb.FileRequest(repository=r, path="proj/c.h5"))
    assert snap.key == hashlib.sha256(data).hexdigest() and snap.size == len(data)
    with grpc.insecure_channel(hoard_daemon.target) as channel:
        objects = objects_pb2_grpc.ObjectsStub(channel)
        stored = b"".join(m.data for m in objects.Read(opb.ReadRequest(repository=r, key=snap.key)))
    assert stored == data

    code, why, message = failure(
        lambda: stub.RemoveFiles(pb.RemoveFilesRequest(repository=r, paths=["proj/c.h5", "nope"]))
    )
    assert (code, why) == (grpc.StatusCode.NOT_FOUND, "FILE_NOT_FOUND")
    assert "nope" in message and "proj/c.h5" in message
    assert not os.path.exists(os.path.join(datasets_dir(hoard_daemon), "proj/c.h5"))
    stub.DeleteFile(pb.FileRequest(repository=r, path="proj/Project.xml"))
    code, why, _ = failure(lambda: stub.DeleteFile(pb.FileRequest(repository=r, path="proj")))
    assert (code, why) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_A_FILE")
    stub.RenameFolder(pb.RenameRequest(repository=r, source="proj", destination="moved"))
    code, why, _ = failure(
        lambda: list(stub.ListFiles(pb.ListFilesRequest(repository=r, folder="proj")))
    )
    assert (code, why) == (grpc.StatusCode.NOT_FOUND, "FOLDER_NOT_FOUND")
    code, why, _ = failure(
        lambda: list(stub.ListFiles(pb.ListFilesRequest(repository=r, folder="moved/op/a.h5")))
    )
    assert (code, why) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_A_FOLDER")
    removed = stub.RemoveFolder(pb.FolderRequest(repository=r, path="moved"))
    assert list(removed.removed) == ["moved"]
    code, why, _ = failure(lambda: stub.RemoveFolder(pb.FolderRequest(repository=r, path="moved")))
    assert (code, why) == (grpc.StatusCode.NOT_FOUND, "FOLDER_NOT_FOUND")
    assert stub.RemoveFolder(pb.FolderRequest(repository=r, path="moved", ignore_errors=True))
    assert os.listdir(datasets_dir(hoard_daemon)) == []
    assert "Traceback" not in "".join(hoard_daemon.log)


def rpc_with_path(stub, rpc: str, path: str) -> object:
    """Call ``rpc`` with ``path`` where a client path goes (the rest valid)."""
    r = "default"
    calls: dict[str, Callable[[], object]] = {
        "ListFiles": lambda: list(stub.ListFiles(pb.ListFilesRequest(repository=r, folder=path))),
        "DeleteFile": lambda: stub.DeleteFile(pb.FileRequest(repository=r, path=path)),
        "RenameFile": lambda: stub.RenameFile(
            pb.RenameRequest(repository=r, source="in/a.h5", destination=path, overwrite=True)
        ),
        "CopyFile": lambda: stub.CopyFile(
            pb.RenameRequest(repository=r, source=path, destination="in/b.h5", overwrite=True)
        ),
        "RemoveFiles": lambda: stub.RemoveFiles(
            pb.RemoveFilesRequest(repository=r, paths=[path], ignore_errors=True)
        ),
        "DiskUsage": lambda: stub.DiskUsage(pb.DiskUsageRequest(repository=r, path=path)),
        "ExportFile": lambda: list(stub.ExportFile(pb.FileRequest(repository=r, path=path))),
        "ImportFile": lambda: stub.ImportFile(import_requests(path, h5_bytes(), True)),
        "SnapshotFile": lambda: stub.SnapshotFile(pb.FileRequest(repository=r, path=path)),
        "CreateFolder": lambda: stub.CreateFolder(pb.FolderRequest(repository=r, path=path)),
        "RenameFolder": lambda: stub.RenameFolder(
            pb.RenameRequest(repository=r, source=path, destination="in2", overwrite=True)
        ),
        "RemoveFolder": lambda: stub.RemoveFolder(
            pb.FolderRequest(repository=r, path=path, ignore_errors=True)
        ),
        "WriteXmlMetadata": lambda: stub.WriteXmlMetadata(
            pb.XmlMetadata(repository=r, path=path, metadata={"a": "b"})
        ),
        "ReadXmlMetadata": lambda: stub.ReadXmlMetadata(pb.FileRequest(repository=r, path=path)),
        "ZipFolder": lambda: list(stub.ZipFolder(pb.ZipFolderRequest(repository=r, folder=path))),
    }
    return calls[rpc]()


RPCS = [m.name for m in pb.DESCRIPTOR.services_by_name["DatasetFiles"].methods]


def test_every_rpc_is_covered_by_the_sandbox_test(stub):
    for rpc in RPCS:
        with pytest.raises(grpc.RpcError):  # every RPC has a row in rpc_with_path
            rpc_with_path(stub, rpc, "..")


@pytest.mark.parametrize("rpc", RPCS)
def test_the_daemon_refuses_paths_leaving_the_repository(hoard_daemon, stub, tmp_path, rpc):
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "x.h5").write_bytes(h5_bytes())
    top = datasets_dir(hoard_daemon)
    os.makedirs(top, exist_ok=True)
    os.symlink(outside, os.path.join(top, "out"))
    stub.ImportFile(import_requests("in/a.h5", h5_bytes()), timeout=30)
    before, inside = tree(str(outside)), tree(top)
    for path in BAD_PATHS + LINKED:
        code, why, message = failure(lambda path=path: rpc_with_path(stub, rpc, path))
        assert (code, why) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PATH"), (path, message)
    assert tree(str(outside)) == before
    assert tree(top) == inside


def test_an_import_cut_short_leaves_nothing(hoard_daemon, stub):
    data = h5_bytes(range(100_000))
    requests = import_requests("in/cut.h5", data)
    first_sent = [next(requests), next(requests)]
    sent, resume = threading.Event(), threading.Event()

    def stream():
        yield from first_sent
        sent.set()
        resume.wait(10)
        yield from requests

    future = stub.ImportFile.future(stream())
    assert sent.wait(10)
    top = datasets_dir(hoard_daemon)
    wait_until(lambda: any(n.startswith(".hoard-import") for n in os.listdir(top)), what="scratch")
    future.cancel()
    resume.set()
    wait_until(lambda: os.listdir(top) == [], what="the scratch file removed")
    assert not os.path.exists(os.path.join(top, "in", "cut.h5"))


def test_streams_take_slots(daemon_factory, tmp_path):
    """A client that opens streams and never reads them holds at most the slots of their
    kind; the next is refused at once (RESOURCE_EXHAUSTED, OVERLOADED); health and short
    calls keep answering, and the slots come back when the client goes away."""
    d = daemon_factory(tmp_path / "data", "--max-read-streams", "2", "--max-upload-streams", "1")
    big = io.BytesIO()
    with h5py.File(big, "w") as f:
        f["x"] = np.frombuffer(os.urandom(32 << 20), dtype="u1")
    with grpc.insecure_channel(d.target) as channel:
        stub = datasets_pb2_grpc.DatasetFilesStub(channel)
        stub.ImportFile(import_requests("big.h5", big.getvalue()), timeout=60)
        export = pb.FileRequest(repository="default", path="big.h5")
        held = [stub.ExportFile(export), stub.ZipFolder(pb.ZipFolderRequest(repository="default"))]
        for stream in held:
            next(stream)  # admitted, and never read further
        for refused in (
            lambda: next(stub.ExportFile(export)),
            lambda: next(stub.ListFiles(pb.ListFilesRequest(repository="default"))),
        ):
            code, why, message = failure(refused)
            assert (code, why) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED"), message
            assert "max_read_streams" in message
        sent, resume = threading.Event(), threading.Event()

        def stalled_upload() -> Iterator[pb.ImportRequest]:
            yield pb.ImportRequest(header=pb.ImportHeader(repository="default", path="up.h5"))
            sent.set()
            resume.wait(30)

        upload = stub.ImportFile.future(stalled_upload())
        assert sent.wait(10)
        wait_until(
            lambda: (
                failure(lambda: stub.ImportFile(import_requests("x.h5", b"x")))[1] == "OVERLOADED"
            ),
            what="the second upload refused",
        )
        usage = stub.DiskUsage(pb.DiskUsageRequest(repository="default"))  # short calls answer
        assert usage.files == 1
        for stream in held:
            stream.cancel()
        upload.cancel()
        resume.set()

        def slots_back() -> bool:
            try:
                return len(b"".join(c.data for c in stub.ExportFile(export))) > 32 << 20
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                return False

        wait_until(slots_back, what="the read slots back")
        assert not os.path.exists(os.path.join(datasets_dir(d), "up.h5"))


def test_scratch_files_a_crash_left_are_removed_when_the_repository_opens(tmp_path):
    registry = RepositoryRegistry(str(tmp_path / "data"))
    registry.create("default")
    service = DatasetFileService(registry)
    files = registry.get("default").files
    service.create_folder("default", "kept")
    plain(files, ".hoard-import-0123abcd", b"half an upload")
    plain(files, "kept/.hoard-lookalike", b"not ours: only the top holds scratch files")
    registry.close()
    registry = RepositoryRegistry(str(tmp_path / "data"))
    try:
        files = registry.get("default").files
        assert sorted(os.listdir(files.root)) == ["kept"]
        assert os.listdir(files.resolve("kept")) == [".hoard-lookalike"]
    finally:
        registry.close()
