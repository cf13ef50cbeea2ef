"""The datasets SDK: numpy <-> proto alone (no daemon), then round trips through a real
daemon: the typed client, the h5py-like view, the appender, follow, files."""

from __future__ import annotations

import datetime
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hoard.arrays import (
    from_array,
    from_value,
    selection_from_key,
    selection_shape,
    to_array,
    to_value,
)
from hoard.v1 import datasets_pb2 as pb

# -- arrays and selections, no daemon ----------------------------------------------------------

DTYPES = st.one_of(
    hnp.integer_dtypes(endianness="="),
    hnp.unsigned_integer_dtypes(endianness="="),
    hnp.floating_dtypes(endianness="=", sizes=(32, 64)),
    hnp.complex_number_dtypes(endianness="="),
    hnp.boolean_dtypes(),
    hnp.byte_string_dtypes(endianness="=", max_len=8),
    st.just(np.dtype(">f8")),
    st.just(np.dtype(">i4")),
)


@given(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
def test_arrays_round_trip_through_the_message(array: np.ndarray) -> None:
    message = pb.Array.FromString(to_array(array).SerializeToString())
    back = from_array(message)
    assert back.shape == array.shape
    assert back.dtype == array.dtype.newbyteorder("<") or back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    assert message.dtype.startswith(("<", "|"))  # little-endian on the wire


TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=5)  # UTF-8 encodable


@given(
    hnp.arrays(
        np.dtype("<U5"),
        hnp.array_shapes(max_dims=3, min_side=0),
        elements=TEXT,
    )
)
def test_text_travels_as_strings(array: np.ndarray) -> None:
    message = to_array(array)
    assert message.dtype == "str" and not message.data
    np.testing.assert_array_equal(from_array(message), array)


def test_a_message_with_the_wrong_byte_count_is_refused() -> None:
    with pytest.raises(ValueError, match="needs 24 bytes"):
        from_array(pb.Array(dtype="<f8", shape=[3], data=b"\0" * 16))


def _decode(selection: pb.Selection) -> tuple[Any, ...]:
    """What a daemon would make of the message: back to a numpy key."""
    key: list[Any] = []
    for item in selection.items:
        kind = item.WhichOneof("item")
        if kind == "index":
            key.append(item.index)
        elif kind == "ellipsis":
            key.append(Ellipsis)
        elif kind == "indices":
            key.append(list(item.indices.values))
        else:
            s = item.slice
            key.append(
                slice(
                    s.start if s.HasField("start") else None,
                    s.stop if s.HasField("stop") else None,
                    s.step if s.HasField("step") else None,
                )
            )
    return tuple(key)


@st.composite
def shape_and_key(draw: st.DrawFn) -> tuple[tuple[int, ...], Any]:
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6))
    bound = st.one_of(st.none(), st.integers(-8, 8))
    per_axis: list[Any] = []
    for n in shape:
        kind = draw(st.sampled_from(["index", "slice", "indices"]))
        if kind == "index":
            per_axis.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            step = draw(st.one_of(st.none(), st.integers(1, 3), st.integers(-3, -1)))
            per_axis.append(slice(draw(bound), draw(bound), step))
        else:
            values = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
            per_axis.append(sorted(values))
    head = draw(st.integers(0, len(shape)))
    items = per_axis[:head]
    if draw(st.booleans()):  # an ellipsis, then items for the last axes
        tail = draw(st.integers(0, len(shape) - head))
        items = [*items, Ellipsis, *per_axis[len(shape) - tail :]]
    # numpy treats several index lists as one fancy index; h5py allows one list per selection
    # and moves it to the front when integers stand apart from it (h5py keeps axes in place)
    lists = [i for i, item in enumerate(items) if isinstance(item, list)]
    for i in lists[1:]:
        items[i] = slice(None)
    if lists:
        items = [slice(None) if isinstance(item, int) else item for item in items]
    return shape, tuple(items)


@given(shape_and_key())
def test_selections_encode_what_numpy_would_select(case: tuple[tuple[int, ...], Any]) -> None:
    shape, key = case
    array = np.arange(int(np.prod(shape))).reshape(shape)
    expected = array[key]
    message = pb.Selection.FromString(selection_from_key(key).SerializeToString())
    np.testing.assert_array_equal(array[_decode(message)], expected)
    assert selection_shape(shape, key) == expected.shape


def test_selection_items_numpy_would_refuse_are_refused() -> None:
    with pytest.raises(IndexError):
        selection_from_key((Ellipsis, 1, Ellipsis))
    with pytest.raises(TypeError):
        selection_from_key(1.5)
    with pytest.raises(TypeError):
        selection_from_key(np.array([True, False]))
    with pytest.raises(IndexError):
        selection_shape((3, 4), (1, 2, 3))
    with pytest.raises(IndexError):
        selection_shape((3,), 3)
    assert selection_from_key(None) == pb.Selection()
    assert selection_shape((3, 4), None) == (3, 4)


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    TEXT,
    st.binary(),
    st.datetimes(),
)


@given(VALUES)
def test_metadata_values_round_trip(value: Any) -> None:
    back = from_value(pb.Value.FromString(to_value(value).SerializeToString()))
    assert back == value and type(back) is type(value)


def test_array_metadata_values_round_trip() -> None:
    back = from_value(to_value(np.arange(4, dtype="<i2")))
    np.testing.assert_array_equal(back, np.arange(4))
    assert from_value(to_value(datetime.datetime(2020, 1, 2, 3, 4, 5, 6))).microsecond == 6
    with pytest.raises(TypeError):
        to_value(object())


def test_every_datasets_reason_has_its_exception() -> None:
    """The reasons datasets.proto lists each pick a class also catchable as the built-in a
    Python program would expect."""
    import grpc

    from hoard import errors

    proto = (Path(__file__).parent.parent / "protos/hoard/v1/datasets.proto").read_text()
    header = proto.split("syntax")[0]
    for reason, code, builtin in [
        ("FILE_NOT_FOUND", grpc.StatusCode.NOT_FOUND, FileNotFoundError),
        ("DATASET_NOT_FOUND", grpc.StatusCode.NOT_FOUND, KeyError),
        ("METADATA_NOT_FOUND", grpc.StatusCode.NOT_FOUND, KeyError),
        ("FOLDER_NOT_FOUND", grpc.StatusCode.NOT_FOUND, FileNotFoundError),
        ("FILE_EXISTS", grpc.StatusCode.FAILED_PRECONDITION, FileExistsError),
        ("INVALID_PATH", grpc.StatusCode.INVALID_ARGUMENT, ValueError),
        ("NOT_HDF5", grpc.StatusCode.INVALID_ARGUMENT, ValueError),
        ("SELECTION_OUT_OF_RANGE", grpc.StatusCode.OUT_OF_RANGE, IndexError),
        ("INVALID_SELECTION", grpc.StatusCode.INVALID_ARGUMENT, IndexError),
        ("REPLY_TOO_LARGE", grpc.StatusCode.RESOURCE_EXHAUSTED, RuntimeError),
        ("FILE_DAMAGED", grpc.StatusCode.DATA_LOSS, OSError),
    ]:
        assert reason in header
        error = errors.error_for_status(code, "m", reason, {"path": "x.h5"})
        assert isinstance(error, builtin) and error.reason == reason, reason
        assert type(error) is not errors._BY_CODE[code], reason


# -- against the daemon ------------------------------------------------------------------------


@pytest.fixture
def ds(client: Any) -> Any:
    return client.datasets("default")


def test_store_get_and_shape(ds: Any) -> None:
    data = np.arange(60, dtype="<f4").reshape(6, 10)
    shape = ds.store_data("p/1/a.h5", "data", data)
    assert shape.shape == (6, 10) and shape.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(ds.get_data("p/1/a.h5", "data"), data)
    np.testing.assert_array_equal(ds.get_data("p/1/a.h5", "data", (slice(1, 5), 3)), data[1:5, 3])
    assert ds.get_data_shape("p/1/a.h5", "data").shape == (6, 10)
    ds.store_data("p/1/a.h5", "scalar", np.float64(2.5))
    assert ds.get_data("p/1/a.h5", "scalar") == 2.5
    ds.store_data("p/1/a.h5", "labels", np.array(["a", "bc"]))
    assert list(ds.get_data("p/1/a.h5", "labels")) == ["a", "bc"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=shape_and_key())
def test_selections_read_what_numpy_selects(ds: Any, case: tuple[tuple[int, ...], Any]) -> None:
    shape, key = case
    array = np.arange(int(np.prod(shape)), dtype="<i8").reshape(shape)
    ds.store_data("sel.h5", "data", array)
    np.testing.assert_array_equal(ds.get_data("sel.h5", "data", key), array[key])


def test_missing_things_raise_their_exceptions(ds: Any) -> None:
    from hoard import errors

    with pytest.raises(errors.DatasetFileNotFoundError):
        ds.get_data("nope.h5", "data")
    ds.store_data("m.h5", "data", np.zeros(3))
    with pytest.raises(errors.DatasetNotFoundError):
        ds.get_data("m.h5", "other")
    with pytest.raises(errors.SelectionOutOfRangeError):
        ds.get_data("m.h5", "data", 7)
    with pytest.raises(errors.InvalidPathError):
        ds.get_data("../escape.h5", "data")
    assert ds.is_valid_file("m.h5") and not ds.is_valid_file("nope.h5")


def test_a_reply_past_the_limit_is_read_streamed(daemon_factory: Any, tmp_path: Path) -> None:
    import hoard
    from hoard import errors

    daemon = daemon_factory(tmp_path / "d", env={"HOARD_MAX_REPLY_BYTES": "65536"})
    with hoard.connect(daemon.target) as client:
        ds = client.datasets()
        data = np.random.default_rng(1).random((1500, 200))  # 2.4 MB: three 1 MiB blocks
        ds.store_data("big.h5", "data", data)
        request = pb.GetDataRequest(node=ds.node("big.h5", "data"))
        with pytest.raises(errors.ReplyTooLargeError):  # what the SDK hides
            client.transport.unary("Datasets.GetData", request)
        np.testing.assert_array_equal(ds.get_data("big.h5", "data"), data)
        np.testing.assert_array_equal(ds.get_data("big.h5", "data", (slice(None), 5)), data[:, 5])
        view = ds.open("big.h5")["data"]
        np.testing.assert_array_equal(view[100:1400:3, ::-2], data[100:1400:3, ::-2])
        text = np.array([f"row {i}" * (1 + i % 3) for i in range(40_000)])  # varying widths
        ds.store_data("big.h5", "text", text)
        assert len(list(ds.read_data("big.h5", "text"))) > 1
        np.testing.assert_array_equal(ds.get_data("big.h5", "text"), text)
        blocks = list(ds.read_data("big.h5", "data"))
        assert len(blocks) > 1 and all(shape == (1500, 200) for _, _, shape in blocks)
        assert [offset for offset, _, _ in blocks] == sorted({o for o, _, _ in blocks})


def test_a_selection_the_shape_says_is_large_is_streamed_at_once(
    hoard_daemon: Any, monkeypatch: Any
) -> None:
    """Which RPCs a read makes: small selections one GetData, a large one (by the view's
    shape) straight to ReadData, no refused GetData first."""
    import grpc

    import hoard
    from hoard import datasets
    from hoard.transport import channel_options

    class Recorder(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
        def __init__(self) -> None:
            self.methods: list[str] = []

        def intercept_unary_unary(self, proceed: Any, details: Any, request: Any) -> Any:
            self.methods.append(details.method.rsplit("/", 1)[-1])
            return proceed(details, request)

        def intercept_unary_stream(self, proceed: Any, details: Any, request: Any) -> Any:
            self.methods.append(details.method.rsplit("/", 1)[-1])
            return proceed(details, request)

    monkeypatch.setattr(datasets, "STREAMED_READ_BYTES", 4096)
    recorder = Recorder()
    channel = grpc.intercept_channel(
        grpc.insecure_channel(hoard_daemon.target, options=channel_options(5)), recorder
    )
    with hoard.Client(channel, target=hoard_daemon.target) as client:
        ds = client.datasets()
        data = np.arange(2000, dtype="<i8").reshape(1000, 2)
        ds.store_data("rec.h5", "data", data)
        view = ds.open("rec.h5")["data"]
        recorder.methods.clear()
        np.testing.assert_array_equal(view[:10], data[:10])  # 160 bytes
        np.testing.assert_array_equal(view[::2, 1], data[::2, 1])  # 4000 bytes
        np.testing.assert_array_equal(view[:], data)  # 16000 bytes
        assert recorder.methods == ["GetData", "GetData", "ReadData"]


def test_metadata_round_trip(ds: Any) -> None:
    from hoard import errors

    ds.store_data("meta.h5", "data", np.zeros(2))
    when = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)
    values = {"n": 3, "x": 1.5, "s": "text", "b": True, "when": when, "none": None}
    ds.set_metadata("meta.h5", values, tvb_specific_metadata=True)
    ds.set_metadata("meta.h5", {"unit": "ms"}, "data")
    assert ds.get_metadata("meta.h5") == {**values, "Data_version": 5}  # stamped at creation
    assert ds.get_metadata("meta.h5", "data") == {"unit": "ms"}
    assert ds.remove_metadata("meta.h5", "n", tvb_specific_metadata=True)
    assert not ds.remove_metadata("meta.h5", "n", tvb_specific_metadata=True)
    with pytest.raises(errors.MetadataNotFoundError):
        ds.remove_metadata("meta.h5", "n", tvb_specific_metadata=True, check_existence=True)
    with pytest.raises(errors.DatasetNotFoundError):
        ds.set_metadata("meta.h5", {"a": 1}, "missing")


def test_the_view_reads_like_h5py(ds: Any) -> None:
    data = np.arange(400, dtype="<i4").reshape(100, 4)
    ds.store_data("v.h5", "data", data)
    ds.store_data("v.h5", "group/sub/data", np.ones(3))
    f = ds.open("v.h5")
    view = f["data"]
    np.testing.assert_array_equal(view[10:20, ::2], data[10:20, ::2])
    np.testing.assert_array_equal(view[...], data)
    np.testing.assert_array_equal(np.asarray(view), data)
    assert view.shape == (100, 4) and view.dtype == np.dtype("<i4") and view.ndim == 2
    assert len(view) == 100
    assert view[3, 2] == data[3, 2] and isinstance(view[3, 2], np.int32)  # a scalar, as h5py
    assert set(f.keys()) == {"data", "group"}
    assert "data" in f and "group/sub/data" in f and "absent" not in f
    np.testing.assert_array_equal(f["group/sub/data"][:], np.ones(3))
    assert f["group"]["sub"].keys() == ["data"]
    with pytest.raises(KeyError):
        f["absent"]


def test_the_view_attrs_are_a_mapping_with_raw_names(ds: Any) -> None:
    ds.store_data("at.h5", "data", np.zeros(2))
    ds.set_metadata("at.h5", {"Data_version": 5}, tvb_specific_metadata=True)
    f = ds.open("at.h5")
    assert f.attrs["TVB_Data_version"] == 5 and list(f.attrs) == ["TVB_Data_version"]
    assert "Data_version" not in f.attrs  # h5py's names only, as stored
    attrs = f["data"].attrs
    attrs["unit"] = "ms"
    attrs["scale"] = 2.0
    assert dict(attrs) == {"unit": "ms", "scale": 2.0}
    assert "unit" in attrs and len(attrs) == 2
    del attrs["unit"]
    assert list(attrs) == ["scale"]
    with pytest.raises(KeyError):
        del attrs["unit"]


def test_appender_batches_and_acknowledges_every_row(ds: Any) -> None:
    rows = np.arange(3000, dtype="<f8").reshape(1000, 3)
    with ds.appender("app.h5", "data", grow_dimension=0) as app:
        for row in rows[:500]:
            app.append_row(row)
        app.append(rows[500:])
        app.flush()
        assert app.acknowledged == app.sent == 1000
    assert app.acknowledged == 1000
    np.testing.assert_array_equal(ds.get_data("app.h5", "data"), rows)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    blocks=st.lists(st.integers(0, 300), min_size=1, max_size=30),
    grow=st.sampled_from([0, 1, -1]),
    max_rows=st.integers(1, 500),
)
def test_appended_blocks_land_as_their_concatenation(
    ds: Any, blocks: list[int], grow: int, max_rows: int
) -> None:
    """Whatever the block sizes and batch limits, the dataset is the blocks joined along the
    grow dimension, and every row is acknowledged once the appender closes."""
    path = f"prop/{uuid.uuid4().hex}.h5"
    rng = np.random.default_rng(len(blocks))
    axis = grow % 2
    parts = [rng.random((n, 3) if axis == 0 else (3, n)).astype("<f4") for n in blocks]
    with ds.appender(path, "data", grow_dimension=grow, max_rows=max_rows) as app:
        for part in parts:
            app.append(part)
    total = sum(blocks)
    assert app.acknowledged == app.sent == app.appended == total
    if total:
        np.testing.assert_array_equal(ds.get_data(path, "data"), np.concatenate(parts, axis))
    else:
        assert not ds.is_valid_file(path)  # nothing was sent


def test_the_dataset_view_appends_and_follows(ds: Any) -> None:
    ds.store_data("vf.h5", "seed", np.zeros(1))
    ds.append_data("vf.h5", "data", np.zeros((2, 3)), grow_dimension=0)
    view = ds.open("vf.h5")["data"]
    with view.appender(grow_dimension=0) as app:
        app.append_row([1, 2, 3])
    assert view.shape == (2, 3)  # cached, as an h5py SWMR reader's
    view.refresh()
    assert view.shape == (3, 3)
    view.append(np.full((1, 3), 7.0), grow_dimension=0)  # its own appends update it
    assert view.shape == (4, 3) and len(view) == 4 and view.chunks is not None
    stream = view.follow(from_row=3, grow_dimension=0)
    np.testing.assert_array_equal(next(stream), np.full((1, 3), 7.0))
    stream.close()


def test_appender_flushes_on_exit(ds: Any) -> None:
    with ds.open("exit.h5").appender("data", grow_dimension=0, max_delay=10.0) as app:
        app.append(np.ones((7, 2)))
        assert app.acknowledged == 0  # not due yet: the delay is long and the batch small
    assert app.acknowledged == 7
    assert ds.get_data_shape("exit.h5", "data").shape == (7, 2)


def test_appender_raises_the_streams_error_on_the_next_call(ds: Any) -> None:
    from hoard import errors

    ds.store_data("err.h5", "data", np.zeros((2, 3)))
    app = ds.appender("err.h5", "data", grow_dimension=0)
    with pytest.raises(ValueError, match="append_row"):  # a row given as a block: said at once
        app.append(np.zeros(3))
    app.append(np.zeros((1, 5)))  # wrong width: the daemon refuses the batch
    with pytest.raises(errors.HoardError) as caught:
        app.flush()
    assert isinstance(caught.value, errors.InvalidArgumentError)
    with pytest.raises(errors.HoardError):
        app.append(np.zeros((1, 3)))
    with pytest.raises(errors.HoardError):
        app.close()


def test_appender_resumes_after_the_daemon_restarts(hoard_daemon: Any) -> None:
    import hoard

    with hoard.connect(hoard_daemon.target) as client:
        ds = client.datasets()
        app = ds.appender("resume.h5", "data", grow_dimension=0)
        app.append(np.arange(100).reshape(50, 2))
        app.flush()
        hoard_daemon.restart()
        app.append(np.arange(100, 200).reshape(50, 2))
        app.close()
        assert app.acknowledged == 100
        np.testing.assert_array_equal(
            ds.get_data("resume.h5", "data"), np.arange(200).reshape(100, 2)
        )


def test_appender_neither_loses_nor_duplicates_rows_across_a_crash(hoard_daemon: Any) -> None:
    """Whatever had landed when the daemon was killed (nothing, some batches, all), the
    appender resumes by the dataset's length: every row exactly once, in order."""
    import hoard

    rows = np.arange(20_000, dtype="<i8").reshape(10_000, 2)
    with hoard.connect(hoard_daemon.target) as client:
        ds = client.datasets()
        app = ds.appender("crash.h5", "data", grow_dimension=0, max_rows=100)
        for i in range(0, 5_000, 100):
            app.append(rows[i : i + 100])
        hoard_daemon.kill()
        hoard_daemon.start()
        for i in range(5_000, 10_000, 100):
            app.append(rows[i : i + 100])
        app.close()
        assert app.acknowledged == app.sent == 10_000
        np.testing.assert_array_equal(ds.get_data("crash.h5", "data"), rows)


def test_follow_yields_rows_as_they_land(ds: Any) -> None:
    ds.append_data("f.h5", "data", np.zeros((5, 2)), grow_dimension=0)
    seen: list[np.ndarray] = []
    stream = ds.follow("f.h5", "data", from_row=2, grow_dimension=0)
    seen.append(next(stream))
    assert sum(len(b) for b in seen) == 3

    def writer() -> None:
        ds.append_data("f.h5", "data", np.ones((4, 2)), grow_dimension=0)

    thread = threading.Thread(target=writer)
    thread.start()
    while sum(len(b) for b in seen) < 7:
        seen.append(next(stream))
    thread.join()
    stream.close()
    got = np.concatenate(seen)
    np.testing.assert_array_equal(got, np.vstack([np.zeros((3, 2)), np.ones((4, 2))]))


def test_files_export_import_snapshot(ds: Any, client: Any, tmp_path: Path) -> None:
    import h5py

    from hoard import errors

    data = np.arange(10.0)
    ds.store_data("proj/op/x.h5", "data", data)
    local = tmp_path / "x.h5"
    size = ds.export("proj/op/x.h5", local)
    assert size == local.stat().st_size
    with h5py.File(local, "r") as f:
        np.testing.assert_array_equal(f["data"][:], data)
    entry = ds.import_file(local, "proj/op/y.h5")
    assert entry.path == "proj/op/y.h5" and entry.size == size
    np.testing.assert_array_equal(ds.get_data("proj/op/y.h5", "data"), data)
    with pytest.raises(errors.FileAlreadyExistsError):
        ds.import_file(local, "proj/op/y.h5")
    (tmp_path / "not.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(errors.NotHDF5Error):
        ds.import_file(tmp_path / "not.h5", "proj/op/z.h5")
    key = ds.snapshot("proj/op/x.h5")
    assert client.repository("default").get_object_content(key) == local.read_bytes()


def test_files_list_move_remove_usage(ds: Any, tmp_path: Path) -> None:
    import zipfile

    ds.store_data("p/1/a.h5", "d", np.zeros(100))
    ds.store_data("p/2/b.h5", "d", np.zeros(100))
    ds.write_xml_metadata("p/Project.xml", {"name": "p", "id": 3})
    assert ds.read_xml_metadata("p/Project.xml") == {"name": "p", "id": "3"}
    names = [e.path for e in ds.list_files("p", recursive=True)]
    assert names == sorted(names) and "p/1/a.h5" in names and "p/Project.xml" in names
    assert [e.path for e in ds.list_files("p", recursive=True, h5_only=True)] == [
        "p/1/a.h5",
        "p/2/b.h5",
    ]
    usage = ds.disk_usage("p", h5_only=True)
    assert usage.files == 2 and usage.kib == round(usage.bytes / 1024)
    ds.rename_file("p/1/a.h5", "p/3/a.h5")
    ds.copy_file("p/3/a.h5", "p/3/c.h5")
    removed = ds.remove_files(["p/3/c.h5", "p/3/gone.h5"], ignore_errors=True)
    assert removed.removed == ["p/3/c.h5"] and removed.missing == ["p/3/gone.h5"]
    zipped = tmp_path / "p.zip"
    ds.zip_folder("p", zipped, exclude=["2"])
    assert sorted(zipfile.ZipFile(zipped).namelist()) == ["3/a.h5", "Project.xml"]
    ds.remove_folder("p")
    assert list(ds.list_files("")) == [] or all(
        not e.path.startswith("p") for e in ds.list_files("")
    )
