"""Files move between hoard and The Virtual Brain's own storage without loss.

- Written through hoard's SDK (``hoard.tvb.HDF5StorageManager`` with TVB's calls, and the
  appender), a file read with plain h5py and with tvb-storage's own ``HDF5StorageManager``
  gives the same data and the same metadata, in TVB's conventions ("TVB_" keys, "bool:" and
  "datetime:" values, the root's ``TVB_Data_version``): from ``export``, and from the
  repository's folder once the daemon has stopped.
- Written by tvb-storage (its appends, stores, metadata) and imported into hoard
  (``import_file``), a file is served by hoard as tvb-storage itself reads it.

Real daemon, real files, real tvb-storage (skipped, saying why, when it is not installed).
"""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

h5py = pytest.importorskip("h5py", reason="h5py reads the exported files (pip install -e '.[dev]')")
try:
    logging.getLogger("tvb").setLevel(logging.ERROR)
    from tvb.storage.h5.file.hdf5_storage_manager import HDF5StorageManager as TvbManager
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(
        f"tvb-storage is not importable ({exc}): pip install -e '.[dev]' brings tvb-storage>=2.10",
        allow_module_level=True,
    )

REPOSITORY = "default"
WHEN = datetime.datetime(2026, 11, 29, 8, 30, 15, 123456)
# TVB-style metadata: TVB_-prefixed keys (the default) and plain ones, every kind of value
TVB_META: dict[str, Any] = {
    "is_surface": True,
    "has_volume": False,
    "created": WHEN,
    "nr_regions": 76,
    "sample_period": 0.9765625,
    "title": "Simulation of a 76-region connectivity",
    "labels": np.array([1.5, 2.5, 3.5]),
}
PLAIN_META: dict[str, Any] = {"Data_version_extra": 3, "origin": "hoard interop test"}


def equal(a: Any, b: Any) -> bool:
    """Metadata values compared as TVB's callers compare them (numpy scalars as numbers)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, bytes):
        a = a.decode()
    if isinstance(b, bytes):
        b = b.decode()
    return bool(a == b)


def assert_meta(got: dict[str, Any], expected: dict[str, Any]) -> None:
    missing = set(expected) - set(got)
    assert not missing, f"keys {sorted(missing)} missing from {sorted(got)}"
    for key, value in expected.items():
        assert equal(got[key], value), f"{key}: {got[key]!r} != {value!r}"


def raw_attr(value: Any) -> Any:
    """An HDF5 attribute as h5py returns it, strings decoded."""
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture
def hoard_tvb(client: Any) -> Any:
    """``hoard.tvb.HDF5StorageManager`` for a path of the daemon's default repository."""
    from hoard.tvb import HDF5StorageManager

    def manager(path: str) -> Any:
        return HDF5StorageManager(path, client=client, repository=REPOSITORY)

    return manager


def write_through_hoard(client: Any, hoard_tvb: Any, path: str) -> dict[str, np.ndarray]:
    """A TimeSeries-like file made with TVB's calls through hoard: stored arrays (one in a
    group), appends one sample at a time and in blocks, metadata on the root and a dataset."""
    rng = np.random.default_rng(7)
    m = hoard_tvb(path)
    weights = rng.random((76, 76))
    centres = rng.random((76, 3)).astype(np.float32)
    labels = np.arange(76, dtype=np.int32)
    m.store_data(weights, "weights")
    m.store_data(centres, "centres", where="/geometry")
    m.store_data(labels, "labels")
    steps = rng.standard_normal((250, 76))
    for i in range(200):  # TVB's monitor: one (1, 76) sample per call, file kept open
        m.append_data(steps[i : i + 1], "data", grow_dimension=0, close_file=False)
    m.append_data(steps[200:], "data", grow_dimension=0, close_file=True)
    time = np.arange(250, dtype=np.float64) * 0.5
    with client.datasets(REPOSITORY).appender(path, "time", grow_dimension=0) as app:
        for start in range(0, 250, 100):
            app.append(time[start : start + 100])
    m.set_metadata(TVB_META)  # root, TVB_ prefix
    m.set_metadata(PLAIN_META, tvb_specific_metadata=False)
    m.set_metadata({"unit": "mV", "is_raw": True}, "data")
    return {
        "/weights": weights,
        "/geometry/centres": centres,
        "/labels": labels,
        "/data": steps,
        "/time": time,
    }


def check_plain_h5py(local: Path, arrays: dict[str, np.ndarray]) -> None:
    with h5py.File(local, "r") as f:
        for node, expected in arrays.items():
            got = f[node][()]
            assert got.dtype == expected.dtype, node
            np.testing.assert_array_equal(got, expected, err_msg=node)
        root = {k: raw_attr(v) for k, v in f.attrs.items()}
        assert root["TVB_is_surface"] == "bool:True"
        assert root["TVB_has_volume"] == "bool:False"
        assert root["TVB_created"] == "datetime:" + WHEN.strftime("%Y-%m-%d %H:%M:%S.%f")
        assert root["TVB_nr_regions"] == 76
        assert root["TVB_sample_period"] == 0.9765625
        assert root["TVB_title"] == TVB_META["title"]
        np.testing.assert_array_equal(root["TVB_labels"], TVB_META["labels"])
        assert root["Data_version_extra"] == 3 and root["origin"] == PLAIN_META["origin"]
        assert "TVB_origin" not in root
        data_attrs = {k: raw_attr(v) for k, v in f["data"].attrs.items()}
        assert data_attrs["TVB_unit"] == "mV" and data_attrs["TVB_is_raw"] == "bool:True"
        # chunked along time (the grow dimension), not TVB's one-sample chunks
        chunks = f["data"].chunks
        assert chunks is not None and chunks[1] == 76 and chunks[0] > 1


def check_tvb_reads(local: Path, arrays: dict[str, np.ndarray]) -> None:
    tvb = TvbManager(str(local))
    assert tvb.is_valid_tvb_file()
    np.testing.assert_array_equal(tvb.get_data("weights"), arrays["/weights"])
    np.testing.assert_array_equal(
        tvb.get_data("centres", where="/geometry/"), arrays["/geometry/centres"]
    )
    np.testing.assert_array_equal(tvb.get_data("data"), arrays["/data"])
    np.testing.assert_array_equal(
        tvb.get_data("data", (slice(10, 20), slice(3, 9))), arrays["/data"][10:20, 3:9]
    )
    assert tvb.get_data_shape("data") == (250, 76)
    assert_meta(tvb.get_metadata(), {**TVB_META, **PLAIN_META})
    assert_meta(tvb.get_metadata("data"), {"unit": "mV", "is_raw": True})


def test_written_through_hoard_exported_reads_the_same_in_h5py_and_tvb(
    client: Any, hoard_tvb: Any, tmp_path: Path
) -> None:
    path = "project/1/TimeSeries_interop.h5"
    arrays = write_through_hoard(client, hoard_tvb, path)
    local = tmp_path / "exported.h5"
    client.datasets(REPOSITORY).export(path, str(local))
    check_plain_h5py(local, arrays)
    check_tvb_reads(local, arrays)
    # and what hoard itself answers is what TVB answers
    m = hoard_tvb(path)
    tvb = TvbManager(str(local))
    for name in ("weights", "data", "labels"):
        np.testing.assert_array_equal(m.get_data(name), tvb.get_data(name))
    assert_meta(m.get_metadata(), tvb.get_metadata())
    assert_meta(m.get_metadata("data"), tvb.get_metadata("data"))


def test_written_through_hoard_the_repository_folder_holds_plain_tvb_files(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """After a clean stop, the repository's datasets folder is plain HDF5 TVB opens in place."""
    import hoard
    from hoard.tvb import HDF5StorageManager

    data_dir = tmp_path / "data"
    daemon = daemon_factory(data_dir)
    path = "project/2/TimeSeries_in_place.h5"
    with hoard.connect(daemon.target, timeout=30) as c:
        arrays = write_through_hoard(
            c, lambda p: HDF5StorageManager(p, client=c, repository=REPOSITORY), path
        )
    daemon.stop()
    on_disk = data_dir / "repositories" / REPOSITORY / "datasets" / path
    assert on_disk.is_file(), f"expected the file at {on_disk}"
    check_plain_h5py(on_disk, arrays)
    check_tvb_reads(on_disk, arrays)


def test_hoard_files_carry_tvbs_data_version(client: Any, hoard_tvb: Any, tmp_path: Path) -> None:
    """TVB's loaders check the root's TVB_Data_version: a file hoard created has it."""
    m = hoard_tvb("versioned.h5")
    m.store_data(np.zeros(3), "x")
    local = tmp_path / "versioned.h5"
    client.datasets(REPOSITORY).export("versioned.h5", str(local))
    tvb = TvbManager(str(local))
    assert tvb.get_file_data_version("Data_version") == m.get_file_data_version("Data_version")
    assert int(tvb.get_file_data_version("Data_version")) == 5


def write_with_tvb(local: Path) -> TvbManager:
    """A file as TVB writes it: stores, a group, per-sample and block appends (TVB's 608-byte
    chunks), appends along the last axis (TVB's default), metadata of every kind."""
    rng = np.random.default_rng(11)
    tvb = TvbManager(str(local))
    tvb.store_data(rng.random((76, 76)), "weights")
    tvb.store_data(np.array([b"region_a", b"region_b"]), "region_labels")
    tvb.store_data(rng.random((5, 3)), "vertices", where="/surface/")
    for _ in range(300):
        tvb.append_data(rng.standard_normal((1, 76)), "data", grow_dimension=0, close_file=False)
    tvb.append_data(rng.standard_normal((40, 76)), "data", grow_dimension=0, close_file=False)
    tvb.close_file()
    for _ in range(4):
        tvb.append_data(rng.random((3, 10)), "by_last_axis")  # grow_dimension=-1, closes
    tvb.set_metadata(TVB_META)
    tvb.set_metadata(PLAIN_META, tvb_specific_metadata=False)
    tvb.set_metadata({"unit": "mV", "is_raw": False, "when": WHEN}, "data")
    tvb.set_metadata({"kind": "cortex"}, "vertices", where="/surface/")
    return tvb


def test_file_written_by_tvb_imported_is_served_as_tvb_reads_it(
    client: Any, hoard_tvb: Any, tmp_path: Path
) -> None:
    local = tmp_path / "TimeSeries_by_tvb.h5"
    tvb = write_with_tvb(local)
    client.datasets(REPOSITORY).import_file(str(local), "imported/TimeSeries_by_tvb.h5")
    m = hoard_tvb("imported/TimeSeries_by_tvb.h5")
    assert m.is_valid_tvb_file()
    for name, where in (
        ("weights", "/"),
        ("region_labels", "/"),
        ("data", "/"),
        ("by_last_axis", "/"),
        ("vertices", "/surface/"),
    ):
        expected = tvb.get_data(name, where=where)
        got = m.get_data(name, where=where)
        assert np.asarray(got).dtype == expected.dtype, name
        np.testing.assert_array_equal(got, expected, err_msg=name)
        assert tuple(m.get_data_shape(name, where=where)) == tvb.get_data_shape(name, where=where)
    for sel in ((slice(5, 25), slice(0, 76, 7)), (slice(None), 40), (slice(299, 301), slice(None))):
        np.testing.assert_array_equal(m.get_data("data", sel), tvb.get_data("data", sel))
    assert m.get_data_shape("by_last_axis") == (3, 40)
    assert_meta(m.get_metadata(), tvb.get_metadata())
    assert_meta(m.get_metadata("data"), tvb.get_metadata("data"))
    assert_meta(m.get_metadata("vertices", where="/surface/"), {"kind": "cortex"})
    assert m.get_file_data_version("Data_version") == tvb.get_file_data_version("Data_version")
    # and hoard keeps appending to TVB's file where TVB left off
    more = np.ones((2, 76))
    m.append_data(more, "data", grow_dimension=0)
    assert tuple(m.get_data_shape("data")) == (342, 76)
    np.testing.assert_array_equal(m.get_data("data", (slice(340, 342),)), more)


DTYPES = st.sampled_from(["<f8", "<f4", "<i8", "<i4", "<u2", "|u1", "|b1", "<c16"])


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    array=DTYPES.flatmap(
        lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=1, max_dims=3, max_side=9))
    )
)
def test_any_array_stored_through_hoard_reads_the_same_in_tvb(
    client: Any, hoard_tvb: Any, tmp_path: Path, array: np.ndarray
) -> None:
    path = "roundtrip/any.h5"
    m = hoard_tvb(path)
    m.store_data(array, "x")
    local = tmp_path / "any.h5"
    if local.exists():
        os.remove(local)
    client.datasets(REPOSITORY).export(path, str(local))
    got = TvbManager(str(local)).get_data("x")
    assert got.dtype == array.dtype
    np.testing.assert_array_equal(got, array)
    m.remove_data("x")


def test_a_file_exported_while_hoard_appends_to_it_opens_in_h5py_and_tvb(
    client: Any, tmp_path: Path
) -> None:
    """The daemon keeps a file it appends to open (SWMR); its export is still a plain file
    that h5py and TVB open as they are, holding every acknowledged row."""
    ds = client.datasets(REPOSITORY)
    rows = np.random.default_rng(3).standard_normal((500, 76))
    local = tmp_path / "live.h5"
    with ds.appender("live/TimeSeries.h5", "data", grow_dimension=0) as app:
        app.append(rows[:300])
        app.flush()
        ds.export("live/TimeSeries.h5", str(local))
        app.append(rows[300:])
    with h5py.File(local, "r") as f:
        np.testing.assert_array_equal(f["data"][()], rows[:300])
    np.testing.assert_array_equal(TvbManager(str(local)).get_data("data"), rows[:300])
    ds.export("live/TimeSeries.h5", str(local))
    np.testing.assert_array_equal(TvbManager(str(local)).get_data("data"), rows)


def test_none_metadata_is_a_null_attribute_tvb_sees_as_empty(
    client: Any, hoard_tvb: Any, tmp_path: Path
) -> None:
    """hoard keeps None (TVB itself stores '' and reads back ''): as the proto says, an
    attribute with a null dataspace, which tvb-storage and h5py return as ``h5py.Empty``."""
    m = hoard_tvb("none.h5")
    m.store_data(np.zeros(2), "x")
    m.set_metadata({"nothing": None, "blank": ""})
    assert m.get_metadata()["nothing"] is None and m.get_metadata()["blank"] == ""
    local = tmp_path / "none.h5"
    client.datasets(REPOSITORY).export("none.h5", str(local))
    tvb_meta = TvbManager(str(local)).get_metadata()
    assert isinstance(tvb_meta["nothing"], h5py.Empty)
    assert tvb_meta["blank"] == ""
