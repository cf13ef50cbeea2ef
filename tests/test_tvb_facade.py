"""hoard.tvb against a real daemon: the calls TVB code makes (tvb-storage's own test suite
is the model), with TVB's exceptions; then FilesHelper in repository terms."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hoard import errors
from hoard.tvb import (
    FilesHelper,
    FileStructureException,
    HDF5StorageManager,
    IncompatibleFileManagerException,
    MissingDataFileException,
    MissingDataSetException,
)
from tests.harness.tvb import TVB_PYTHON, needs_tvb

ROOT = HDF5StorageManager.ROOT_NODE_PATH
STORE_PATH = "/node1/node2"
META = {"meta_key": "meta_value"}


@pytest.fixture
def storage(client: Any) -> HDF5StorageManager:
    return HDF5StorageManager("PROJECTS/p/7/test_data.h5", client=client)


def test_a_missing_name_is_a_structure_error() -> None:
    with pytest.raises(FileStructureException):
        HDF5StorageManager(None)


def test_store_and_read(storage: HDF5StorageManager) -> None:
    data = np.random.default_rng(0).random((10, 10))
    assert not storage.is_valid_tvb_file()
    storage.store_data(data, "dataset1", ROOT)
    assert storage.is_valid_tvb_file() and storage.is_valid_file()
    np.testing.assert_array_equal(storage.get_data("dataset1", None, ROOT, False, True), data)
    for i in range(10):
        sl = slice(i, i + 1, 1)
        np.testing.assert_array_equal(storage.get_data("dataset1", sl, ROOT, False, True), data[sl])
    storage.store_data(data * 2, "dataset1", ROOT)  # same shape: updated
    np.testing.assert_array_equal(storage.get_data("dataset1"), data * 2)
    with pytest.raises(IncompatibleFileManagerException):
        storage.store_data(np.zeros((3, 3, 3)), "dataset1", ROOT)
    with pytest.raises(FileStructureException):
        storage.store_data(None, "dataset1", ROOT)
    assert storage.get_data_shape("dataset1") == (10, 10)


def test_where_and_the_name_are_joined_as_paths(storage: HDF5StorageManager, client: Any) -> None:
    storage.store_data(np.arange(3), "dataset1", STORE_PATH)
    np.testing.assert_array_equal(storage.get_data("dataset1", where=STORE_PATH), np.arange(3))
    assert "node1/node2/dataset1" in client.datasets().open(storage.storage_full_name)


def test_text_and_scalars_survive(storage: HDF5StorageManager) -> None:
    text = np.array([["a", "b"], ["c", "é"]])
    storage.store_data(text, "s")
    np.testing.assert_array_equal(storage.get_data("s"), text)
    storage.store_data(np.array(3.5), "scalar")  # TVB loses 0-d values; hoard keeps them
    assert float(storage.get_data("scalar")) == 3.5


def test_bytes_come_back_as_bytes(storage: HDF5StorageManager) -> None:
    text = np.array([[b"a", b"b"], [b"c", b"d"]])  # tvb-storage's own test_string_data_storage
    storage.store_data(text, "s")
    np.testing.assert_array_equal(storage.get_data("s"), text)


def test_append_like_tvb(storage: HDF5StorageManager) -> None:
    cube = np.random.default_rng(1).random((3, 3, 3))
    storage.append_data(cube, "d1", 1, True, ROOT)
    np.testing.assert_array_equal(storage.get_data("d1"), cube)
    plane = np.random.default_rng(2).random((10, 10))
    for i in range(10):
        storage.append_data(plane[:, i : i + 1], "d2", 1, True, ROOT)
    storage.close_file()
    np.testing.assert_array_equal(storage.get_data("d2"), plane)
    for i in range(10):
        storage.append_data(plane[i : i + 1], "d3", 0, True, ROOT)
    np.testing.assert_array_equal(storage.get_data("d3"), plane)
    with pytest.raises(FileStructureException):
        storage.append_data(None, "d1", 1, True, ROOT)


def test_append_without_closing_is_durable_on_close(
    storage: HDF5StorageManager, client: Any
) -> None:
    cube = np.random.default_rng(3).random((3, 3, 3))
    for i in range(3):
        storage.append_data(cube[:, i : i + 1], "d", 1, False, ROOT)
    storage.close_file()
    storage.close_file()  # twice is fine
    other = HDF5StorageManager(storage.storage_full_name, client=client)
    np.testing.assert_array_equal(other.get_data("d"), cube)
    # buffered rows are read back by the manager that buffered them, and by a later
    # close_file=True append, in order
    storage.append_data(cube[:, :1], "e", 1, False, ROOT)
    storage.append_data(cube[:, 1:], "e", 1, True, ROOT)
    np.testing.assert_array_equal(other.get_data("e"), cube)


def test_remove_data(storage: HDF5StorageManager) -> None:
    storage.store_data(np.zeros(3), "dataset1", STORE_PATH)
    storage.remove_data("dataset1", STORE_PATH)
    with pytest.raises(MissingDataSetException) as caught:
        storage.get_data("dataset1", None, STORE_PATH, False, True)
    assert isinstance(caught.value, KeyError)
    assert isinstance(caught.value, errors.DatasetNotFoundError)
    assert storage.get_data("dataset1", where=STORE_PATH, ignore_errors=True) is None
    with pytest.raises(FileStructureException):
        storage.remove_data("dataset1", STORE_PATH)


def test_metadata_like_tvb(storage: HDF5StorageManager) -> None:
    storage.store_data(np.zeros((2, 2)), "dataset1")
    storage.set_metadata(META, "dataset1", True, ROOT)
    assert storage.get_metadata("dataset1", ROOT) == META
    storage.set_metadata(META, "", True, ROOT)
    assert storage.get_metadata("", ROOT)["meta_key"] == "meta_value"
    storage.set_metadata({"other": 1}, "dataset1", False, ROOT)
    assert storage.get_metadata("dataset1") == {**META, "other": 1}

    storage.remove_metadata("meta_key", "dataset1", True, ROOT)
    assert "meta_key" not in storage.get_metadata("dataset1", ROOT)
    with pytest.raises(FileStructureException):
        storage.remove_metadata("meta_key", "dataset1", True, ROOT)
    storage.remove_metadata("meta_key", "dataset1", True, ROOT, check_existence=True)
    with pytest.raises(FileStructureException):
        storage.remove_metadata("meta_key", "missing", True, ROOT)

    with pytest.raises(MissingDataSetException):
        storage.get_metadata("dataset2", ROOT)
    with pytest.raises(MissingDataSetException):  # TVB would create a float dataset
        storage.set_metadata(META, "dataset2")

    when = datetime.datetime(2024, 1, 2, 3, 4, 5, 6)
    storage.set_metadata({"flag": True, "when": when, "nothing": None})
    got = storage.get_metadata()
    assert got["flag"] is True and got["when"] == when and got["nothing"] is None


def test_file_data_version(storage: HDF5StorageManager, client: Any) -> None:
    with pytest.raises(MissingDataFileException) as caught:
        storage.get_file_data_version("Data_version")
    assert isinstance(caught.value, FileNotFoundError)
    storage.store_data(np.zeros(1), "d")
    assert storage.get_file_data_version("Data_version") == 5  # stamped on a new file
    with pytest.raises(IncompatibleFileManagerException):
        storage.get_file_data_version("No_such_version")


def test_reading_a_missing_file(client: Any) -> None:
    storage = HDF5StorageManager("nowhere/x.h5", client=client)
    with pytest.raises(MissingDataFileException):
        storage.get_data("data")
    with pytest.raises(MissingDataFileException):
        storage.get_data_shape("data")


# -- FilesHelper -------------------------------------------------------------------------------


def test_files_helper_projects(client: Any, tmp_path: Path) -> None:
    helper = FilesHelper(client)
    folder = helper.get_project_folder("p", "7")
    assert folder == "PROJECTS/p/7"
    storage = HDF5StorageManager(f"{folder}/ts.h5", client=client)
    storage.store_data(np.zeros(300), "data")
    assert helper.get_project_folder_from_h5(f"{folder}/ts.h5") == "PROJECTS/p"

    helper.write_project_metadata({"name": "p", "gid": "abc"}, "Project.xml")
    assert helper.read_project_metadata("PROJECTS/p", "Project.xml") == {"name": "p", "gid": "abc"}

    kib = helper.compute_recursive_h5_disk_usage("PROJECTS/p")
    size = client.datasets().disk_usage("PROJECTS/p/7/ts.h5").bytes
    assert kib == round(size / 1024)
    assert helper.compute_size_on_disk("PROJECTS/p/7/ts.h5") == size // 1024
    assert helper.compute_size_on_disk("PROJECTS/p/7/none.h5") == 0

    helper.move_datatype("q", 3, f"{folder}/ts.h5")
    assert client.datasets().is_valid_file("PROJECTS/q/3/ts.h5")

    old, new = helper.rename_project_structure("q", "r")
    assert (old, new) == ("PROJECTS/q", "PROJECTS/r")
    with pytest.raises(FileStructureException):
        helper.rename_project_structure("r", "p")  # taken

    zipped = tmp_path / "p.zip"
    helper.write_zip_folder(zipped, "PROJECTS/p", exclude=["7"])
    import zipfile

    assert zipfile.ZipFile(zipped).namelist() == ["Project.xml"]

    helper.remove_operation_data("r", 3)
    with pytest.raises(FileStructureException):
        helper.remove_operation_data("r", 3)
    helper.remove_folder("PROJECTS/r/3", ignore_errors=True)
    with pytest.raises(FileStructureException):
        helper.remove_folder("PROJECTS/r/3", False)


def test_files_helper_copy_and_remove(client: Any, tmp_path: Path) -> None:
    helper = FilesHelper(client)
    storage = HDF5StorageManager("a/x.h5", client=client)
    storage.store_data(np.arange(4), "data")
    helper.copy_file("a/x.h5", "b", "y.h5")
    local = tmp_path / "x.h5"
    with open(local, "wb") as out:
        helper.copy_file("a/x.h5", out)
    with open(local, "rb") as source:
        helper.copy_file(source, "c/z.h5")
    for path in ("b/y.h5", "c/z.h5"):
        np.testing.assert_array_equal(
            HDF5StorageManager(path, client=client).get_data("data"), np.arange(4)
        )
    helper.remove_files(["b/y.h5", "c", "never/there.h5"])  # missing ones are skipped
    datasets = client.datasets()
    assert not datasets.is_valid_file("b/y.h5") and not datasets.is_valid_file("c/z.h5")


# -- with tvb-storage itself ---------------------------------------------------------------------

_TVB_WRITE = """
import sys, datetime, numpy
from tvb.storage.h5.file.hdf5_storage_manager import HDF5StorageManager
s = HDF5StorageManager(sys.argv[1])
s.store_data(numpy.arange(12.0).reshape(3, 4), "data")
for i in range(5):
    s.append_data(numpy.full((2, 1), i, dtype="int32"), "trace", 1, False)
s.close_file()
s.set_metadata({"flag": True, "when": datetime.datetime(2020, 1, 2, 3, 4, 5, 6), "n": 7})
s.set_metadata({"unit": "ms"}, "data", False)
"""

_TVB_READ = """
import sys, json, numpy
from tvb.storage.h5.file.hdf5_storage_manager import HDF5StorageManager
s = HDF5StorageManager(sys.argv[1])
meta = {k: (v.isoformat() if hasattr(v, "isoformat") else v.item() if hasattr(v, "item") else v)
        for k, v in s.get_metadata().items()}
print(json.dumps({
    "meta": meta,
    "trace": s.get_data("trace").tolist(),
    "block": s.get_data("block", where="/g/").tolist(),
    "data_meta": s.get_metadata("data"),
    "version": int(s.get_file_data_version("Data_version")),
}))
"""


def _tvb(script: str, path: Path) -> str:
    import subprocess

    done = subprocess.run(
        [str(TVB_PYTHON), "-c", script, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_tvb
def test_a_file_tvb_wrote_reads_the_same_through_the_facade(client: Any, tmp_path: Path) -> None:
    local = tmp_path / "tvb.h5"
    _tvb(_TVB_WRITE, local)
    client.datasets().import_file(local, "PROJECTS/p/1/tvb.h5")
    storage = HDF5StorageManager("PROJECTS/p/1/tvb.h5", client=client)
    np.testing.assert_array_equal(storage.get_data("data"), np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(storage.get_data("trace"), np.repeat([range(5)], 2, axis=0))
    meta = storage.get_metadata()
    assert meta["flag"] is True and meta["n"] == 7
    assert meta["when"] == datetime.datetime(2020, 1, 2, 3, 4, 5, 6)
    assert storage.get_file_data_version("Data_version") == 5
    assert storage.get_metadata("data") == {"unit": "ms"}


@needs_tvb
def test_a_file_the_facade_wrote_reads_the_same_in_tvb(client: Any, tmp_path: Path) -> None:
    import json

    storage = HDF5StorageManager("PROJECTS/p/2/hoard.h5", client=client)
    for i in range(4):
        storage.append_data(np.full((3, 1), i), "trace", 1, False)
    storage.store_data(np.ones((2, 2)), "block", where="/g/")
    storage.store_data(np.zeros(2), "data")
    storage.set_metadata({"flag": False, "when": datetime.datetime(2021, 5, 6), "x": 1.5})
    storage.set_metadata({"unit": "s"}, "data", False)
    storage.close_file()
    local = tmp_path / "hoard.h5"
    client.datasets().export("PROJECTS/p/2/hoard.h5", local)
    seen = json.loads(_tvb(_TVB_READ, local).strip().splitlines()[-1])  # after its log lines
    assert seen["trace"] == np.repeat([range(4)], 3, axis=0).tolist()
    assert seen["block"] == [[1.0, 1.0], [1.0, 1.0]]
    assert seen["meta"]["flag"] is False and seen["meta"]["x"] == 1.5
    assert seen["meta"]["when"] == "2021-05-06T00:00:00"
    assert seen["data_meta"] == {"unit": "s"} and seen["version"] == 5
