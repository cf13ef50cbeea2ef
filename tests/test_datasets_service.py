"""DatasetService without a network: TVB's operations and their fixed defects, wire arrays,
numpy selections, metadata conventions, appends, streamed reads and followers."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hoard_server.errors import (
    FailedPrecondition,
    HoardError,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    OutOfRange,
)
from hoard_server.services.batching import ResponseBudget
from hoard_server.services.datasets import arrays, metadata
from hoard_server.services.datasets.arrays import WireArray, decode, encode
from hoard_server.services.datasets.service import (
    AppendPart,
    DatasetService,
    DatasetSettings,
    NodeRef,
)
from hoard_server.storage.registry import RepositoryRegistry
from tests.harness.tvb import TVB_PYTHON, needs_tvb

FILE = "p/7/TimeSeries.h5"


@pytest.fixture
def registry(tmp_path: Path):
    reg = RepositoryRegistry(str(tmp_path / "data"))
    reg.create("r")
    yield reg
    reg.close()


@pytest.fixture
def service(registry) -> DatasetService:
    return DatasetService(registry, ResponseBudget(64 << 20))


def ref(dataset: str = "", where: str = "", path: str = FILE) -> NodeRef:
    return NodeRef("r", path, where, dataset)


def full_path(registry, path: str = FILE) -> str:
    return registry.get("r").files.resolve(path)


def reason_of(call) -> str:
    with pytest.raises(HoardError) as exc:
        result = call()
        if hasattr(result, "__next__"):
            list(result)
    return exc.value.reason


def snapshot(registry, path: str = FILE) -> dict:
    """What the file holds, node by node (data and attributes), read with plain h5py."""
    registry.get("r").files.close(path)
    out: dict = {}
    with h5py.File(full_path(registry, path), "r") as f:

        def visit(name, obj):
            attrs = {k: repr(v) for k, v in obj.attrs.items()}
            data = (
                obj[()].tobytes()
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind != "O"
                else None
            )
            out[name] = (attrs, data)

        visit("/", f)
        f.visititems(visit)
    return out


# -- store and get ---------------------------------------------------------------------------

DTYPES = ["<f8", "<f4", "<i1", "<i4", "<i8", "<u2", "|b1", "<c16", "|S5"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    array=st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0))
    )
)
def test_store_then_get_round_trips_every_dtype_and_shape(service, array):
    shape = service.store_data(ref("x"), encode(array))
    assert shape.shape == array.shape and shape.dtype == array.dtype.str
    got = decode(service.get_data(ref("x")))
    assert got.dtype == array.dtype and got.shape == array.shape
    assert got.tobytes() == array.tobytes()


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    words=st.lists(
        st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=8),
        max_size=6,
    )
)
def test_text_round_trips_as_strings(service, words):
    array = np.array(words, dtype=object)
    service.store_data(ref("s"), encode(array))
    got = service.get_data(ref("s"))
    assert got.dtype == "str" and list(got.strings) == words


def test_text_that_is_not_unicode_is_refused(service):
    with pytest.raises(InvalidArgument) as caught:
        service.store_data(ref("s"), encode(np.array(["ok", "\ud800"], dtype=object)))
    assert caught.value.reason == "INVALID_TEXT"


def test_a_0d_array_is_a_scalar_dataset(service, registry):
    service.store_data(ref("pi"), encode(np.array(3.25)))
    got = service.get_data(ref("pi"))
    assert got.shape == () and decode(got)[()] == 3.25
    with h5py.File(full_path(registry), "r", swmr=True) as f:  # TVB would have made it empty
        assert f["pi"].shape == () and f["pi"][()] == 3.25


def test_store_replaces_and_where_is_joined_as_a_path(service, registry):
    service.store_data(ref("x", "/a/b"), encode(np.arange(4)))
    service.store_data(ref("x", "/a/b"), encode(np.arange(6.0).reshape(2, 3)))
    assert service.get_data_shape(ref("x", "/a/b")).shape == (2, 3)
    registry.get("r").files.close(FILE)
    with h5py.File(full_path(registry), "r") as f:
        assert "/a/b/x" in f and "/a/bx" not in f
        assert f.attrs["TVB_Data_version"] == 5  # TVB's data version on every new file


def test_get_data_shape_describes_the_dataset(service):
    service.append_data(ref("ts"), encode(np.zeros((3, 4), "<f4")), 0)
    shape = service.get_data_shape(ref("ts"))
    assert shape.shape == (3, 4) and shape.dtype == "<f4"
    assert shape.maxshape == (0, 4) and shape.chunks[1] == 4 and shape.compression == ""


# -- selections ------------------------------------------------------------------------------


@st.composite
def selections(draw):
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=1, max_size=3)))
    items: list = []
    # numpy broadcasts ints together with a list (its mixed advanced indexing); hoard, like
    # h5py, indexes each axis on its own: the two agree when a list comes without ints
    listed = draw(st.booleans())
    for n in shape:
        kinds = (
            ["slice", "all"] + (["int"] if n and not listed else []) + (["list"] if listed else [])
        )
        kind = draw(st.sampled_from(kinds))
        if kind == "int":
            items.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            bound = st.none() | st.integers(-8, 8)
            step = draw(st.none() | st.integers(-4, 4).filter(bool))
            items.append(slice(draw(bound), draw(bound), step))
        elif kind == "list":
            listed = False  # one list at most
            chosen = (
                draw(st.lists(st.integers(0, max(0, n - 1)), unique=True, max_size=n)) if n else []
            )
            items.append(sorted(chosen))
        else:
            items.append(slice(None))
    shorthand = draw(st.sampled_from(["none", "ellipsis", "trailing"]))
    if shorthand == "ellipsis":  # an ellipsis standing for a run of full slices
        at = draw(st.integers(0, len(items)))
        run = draw(st.integers(0, len(items) - at))
        if all(i == slice(None) for i in items[at : at + run]):
            items[at : at + run] = [Ellipsis]
    elif shorthand == "trailing":  # trailing full slices may be left out
        while items and items[-1] == slice(None):
            items.pop()
    return shape, items


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=selections())
def test_selections_mean_what_they_mean_to_numpy(service, case):
    shape, items = case
    array = np.arange(int(np.prod(shape)), dtype="<i4").reshape(shape)
    service.store_data(ref("a"), encode(array))
    expected = array[tuple(items)]
    got = decode(service.get_data(ref("a"), items))
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    blocks = list(service.read_data(ref("a"), items))
    for _, reserved in blocks:
        service._budget.release(reserved)
    if expected.ndim:
        joined = np.concatenate([decode(b.data) for b, _ in blocks]) if blocks else expected[:0]
        np.testing.assert_array_equal(joined.reshape(expected.shape), expected)


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        ([5], "SELECTION_OUT_OF_RANGE"),
        ([-6], "SELECTION_OUT_OF_RANGE"),
        ([0, 3], "SELECTION_OUT_OF_RANGE"),
        ([[0, 7]], "SELECTION_OUT_OF_RANGE"),
        ([0, 0, 0], "INVALID_SELECTION"),
        ([Ellipsis, Ellipsis], "INVALID_SELECTION"),
        ([slice(0, 3, 0)], "INVALID_SELECTION"),
        ([[2, 1]], "INVALID_SELECTION"),
        ([[1, 1]], "INVALID_SELECTION"),
        ([[0, 1], [0, 1]], "INVALID_SELECTION"),
    ],
)
def test_bad_selections(service, items, reason):
    service.store_data(ref("a"), encode(np.zeros((5, 3))))
    with pytest.raises(HoardError) as exc:
        service.get_data(ref("a"), items)
    assert exc.value.reason == reason
    if reason == "SELECTION_OUT_OF_RANGE":
        assert isinstance(exc.value, OutOfRange) and "(5, 3)" in str(exc.value)


def test_a_reply_above_the_limit_is_refused_and_read_data_streams_it(registry):
    service = DatasetService(
        registry, ResponseBudget(64 << 20), DatasetSettings(max_reply_bytes=4096)
    )
    big = np.arange(1_200_000, dtype="<f8").reshape(400_000, 3)  # 9.6 MB: 3 blocks
    service.store_data(ref("big"), encode(big))
    with pytest.raises(LimitExceeded) as exc:
        service.get_data(ref("big"))
    assert exc.value.reason == "REPLY_TOO_LARGE" and "ReadData" in str(exc.value)
    assert decode(service.get_data(ref("big"), [slice(0, 10)])).shape == (10, 3)
    blocks = list(service.read_data(ref("big")))
    assert len(blocks) > 1 and all(b.shape == (400_000, 3) for b, _ in blocks)
    for _, reserved in blocks:
        service._budget.release(reserved)
    np.testing.assert_array_equal(np.concatenate([decode(b.data) for b, _ in blocks]), big)
    assert service._budget.in_use == 0


# -- errors, and the file unchanged ----------------------------------------------------------


def test_missing_things_are_not_found_with_their_reasons(service):
    assert reason_of(lambda: service.get_data(ref("x"))) == "FILE_NOT_FOUND"
    service.store_data(ref("x"), encode(np.zeros(2)))
    assert reason_of(lambda: service.get_data(ref("y"))) == "DATASET_NOT_FOUND"
    assert reason_of(lambda: service.get_data_shape(ref("y", "/g"))) == "DATASET_NOT_FOUND"
    assert reason_of(lambda: service.remove_data(ref("y"))) == "DATASET_NOT_FOUND"
    assert reason_of(lambda: service.get_metadata(ref("y"))) == "DATASET_NOT_FOUND"
    assert reason_of(lambda: service.get_data(ref("x", path="other.h5"))) == "FILE_NOT_FOUND"
    assert reason_of(lambda: service.get_data(ref("x", path="../x.h5"))) == "INVALID_PATH"
    service.store_data(ref("x", "/g"), encode(np.zeros(2)))
    assert reason_of(lambda: service.get_data(ref("g"))) == "NOT_A_DATASET"
    assert reason_of(lambda: service.store_data(ref("x/y"), encode(np.zeros(2)))) == "NOT_A_GROUP"


BAD_ARRAYS = [
    (WireArray("<f8", (3,), bytes(16)), "SHAPE_MISMATCH"),  # 16 bytes, not 24
    (WireArray("<f8", (2,), bytes(16), ("a",)), "SHAPE_MISMATCH"),
    (WireArray("str", (2,), b"", ("a",)), "SHAPE_MISMATCH"),
    (WireArray("|O", (1,), bytes(8)), "INVALID_DTYPE"),
    (WireArray("<M8[s]", (1,), bytes(8)), "INVALID_DTYPE"),
    (WireArray("f8,i4", (1,), bytes(12)), "INVALID_DTYPE"),
    (WireArray("nonsense", (1,), bytes(8)), "INVALID_DTYPE"),
    (WireArray("", (1,), bytes(8)), "INVALID_DTYPE"),
    (WireArray("|S0", (1,), b""), "INVALID_DTYPE"),
    (WireArray("<f8", (1,) * 33, bytes(8)), "SHAPE_MISMATCH"),
    (WireArray("<f8", (0, 2**63), b""), "SHAPE_MISMATCH"),
    (WireArray("str", (0, 2**40, 2**40), b""), "SHAPE_MISMATCH"),
    (WireArray("<f8", (2**64 - 1,), b""), "SHAPE_MISMATCH"),
]


@pytest.mark.parametrize(("array", "reason"), BAD_ARRAYS)
def test_bad_arrays_are_refused_and_change_nothing(service, registry, array, reason):
    service.append_data(ref("ts"), encode(np.zeros((2, 3))), 0)
    service.set_metadata(ref(), {"k": 1})
    before = snapshot(registry)
    assert reason_of(lambda: service.store_data(ref("ts"), array)) == reason
    assert reason_of(lambda: service.append_data(ref("ts"), array, 0)) == reason
    assert reason_of(lambda: service.append_data(ref("new"), array, 0)) == reason
    assert snapshot(registry) == before


@pytest.mark.parametrize(
    ("data", "grow", "expected", "reason"),
    [
        (np.zeros((2, 4)), 0, None, "SHAPE_MISMATCH"),
        (np.zeros((2, 3), "<c8"), 0, None, "DTYPE_MISMATCH"),
        (np.array(["a", "b", "c"], dtype=object).reshape(1, 3), 0, None, "DTYPE_MISMATCH"),
        (np.zeros((2, 3)), 1, None, "SHAPE_MISMATCH"),
        (np.zeros((2, 3)), 0, 5, "LENGTH_MISMATCH"),
        (np.zeros(3), 0, None, "SHAPE_MISMATCH"),
    ],
)
def test_appends_that_do_not_fit_change_nothing(service, registry, data, grow, expected, reason):
    service.append_data(ref("ts"), encode(np.ones((2, 3), "<f4")), 0)
    before = snapshot(registry)
    assert (
        reason_of(lambda: service.append_data(ref("ts"), encode(data), grow, False, expected))
        == reason
    )
    assert snapshot(registry) == before


def test_is_valid_file_is_never_an_error_for_a_missing_file(service, registry):
    assert service.is_valid_file(ref()) is False
    os.makedirs(os.path.dirname(full_path(registry, "p/x.h5")), exist_ok=True)
    Path(full_path(registry, "p/x.h5")).write_bytes(b"not hdf5 at all")
    assert service.is_valid_file(ref(path="p/x.h5")) is False
    service.store_data(ref("x"), encode(np.zeros(1)))
    assert service.is_valid_file(ref()) is True
    assert reason_of(lambda: service.get_data(ref("x", path="p/x.h5"))) == "NOT_HDF5"


# -- metadata --------------------------------------------------------------------------------

WHEN = datetime(2024, 2, 29, 13, 14, 15, 161718)
VALUES = {
    "none": None,
    "yes": True,
    "no": False,
    "when": WHEN,
    "n": -(2**40),
    "x": 2.5,
    "text": "Grüße",
    "empty": "",
    "raw": b"\x00\x01\xff",
    "noraw": b"",
    "vector": np.arange(5, dtype="<f8"),
    "words": np.array(["a", "bc"], dtype=object),
}


def same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.tolist() == b.tolist()
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("node", ["", "ts", "grp"])
def test_metadata_round_trips_with_tvb_conventions_on_disk(service, registry, node):
    service.append_data(ref("ts"), encode(np.zeros((1, 2))), 0)
    service.store_data(ref("inner", "/grp"), encode(np.zeros(1)))
    target = ref(node)
    service.set_metadata(target, VALUES)
    service.set_metadata(target, {"plain": 7}, tvb_specific=False)
    got = service.get_metadata(target)
    for key, value in VALUES.items():
        assert same(got[key], value), (key, got[key], value)
    assert got["plain"] == 7
    registry.get("r").files.close(FILE)
    with h5py.File(full_path(registry), "r") as f:
        attrs = f[target.node].attrs
        assert attrs["TVB_yes"] == "bool:True" and attrs["TVB_no"] == "bool:False"
        assert attrs["TVB_when"] == "datetime:2024-02-29 13:14:15.161718"
        assert isinstance(attrs["TVB_none"], h5py.Empty)
        assert attrs["plain"] == 7 and "TVB_plain" not in attrs


@needs_tvb
def test_tvb_reads_what_hoard_writes(service, registry):
    service.store_data(ref("data"), encode(np.arange(6.0).reshape(2, 3)))
    service.set_metadata(ref(), {"yes": True, "when": WHEN, "title": "t", "n": 3})
    service.close_file(ref())
    script = (
        "import json, sys\n"
        "from tvb.storage.h5.file.hdf5_storage_manager import HDF5StorageManager\n"
        "m = HDF5StorageManager(sys.argv[1])\n"
        "meta = m.get_metadata()\n"
        "print(json.dumps({k: repr(v) for k, v in meta.items()}))\n"
        "print(json.dumps(m.get_data('data').tolist()))\n"
    )
    out = subprocess.run(
        [str(TVB_PYTHON), "-c", script, full_path(registry)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    meta, data = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert meta["yes"] == "True" and meta["when"] == repr(WHEN)
    assert meta["title"] == "'t'" and meta["Data_version"] in ("5", "np.int64(5)")
    assert data == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_set_metadata_never_creates_a_dataset(service, registry):
    service.store_data(ref("x"), encode(np.zeros(1)))
    before = snapshot(registry)
    assert reason_of(lambda: service.set_metadata(ref("missing"), {"a": 1})) == "DATASET_NOT_FOUND"
    assert reason_of(lambda: service.set_metadata(ref("x"), {"": 1})) == "INVALID_METADATA"
    assert (
        reason_of(lambda: service.set_metadata(ref("x"), {"a": 1, "b": object()}))
        == "INVALID_METADATA"
    )
    assert snapshot(registry) == before


def test_metadata_keys_are_bounded_and_the_node_stays_readable(service):
    """HDF5 takes an attribute name of 64 KiB or more into a "latest" file and can never read
    that node's attributes again: keys are bounded (the limit counts UTF-8 bytes with the
    TVB_ prefix), and a refused key leaves the node as it was."""
    limit = metadata.MAX_KEY_BYTES
    service.store_data(ref("x"), encode(np.zeros(1)))
    service.set_metadata(ref("x"), {"k" * limit: 1}, tvb_specific=False)
    service.set_metadata(ref("x"), {"é" * ((limit - 4) // 2): 2}, tvb_specific=True)
    too_long = [("k" * (limit + 1), False), ("k" * (limit - 3), True), ("é" * 70_000, False)]
    for key, tvb in too_long:
        setting = lambda k=key, t=tvb: service.set_metadata(ref("x"), {k: 3}, t)  # noqa: E731
        removing = lambda k=key, t=tvb: service.remove_metadata(ref("x"), k, t)  # noqa: E731
        assert reason_of(setting) == reason_of(removing) == "INVALID_METADATA"
    assert service.get_metadata(ref("x")) == {"k" * limit: 1, "é" * ((limit - 4) // 2): 2}


def test_remove_metadata_names_a_missing_key(service):
    service.store_data(ref("x"), encode(np.zeros(1)))
    service.set_metadata(ref("x"), {"a": 1})
    with pytest.raises(NotFound) as exc:
        service.remove_metadata(ref("x"), "zz", check_existence=True)
    assert exc.value.reason == "METADATA_NOT_FOUND" and "'zz'" in str(exc.value)
    assert exc.value.details["key"] == "zz"
    assert service.remove_metadata(ref("x"), "zz") is False
    assert service.remove_metadata(ref("x"), "a") is True
    assert "a" not in service.get_metadata(ref("x"))


def test_remove_data_and_describe(service, registry):
    service.store_data(ref("b", "/g"), encode(np.zeros((2, 2), "<i2")))
    service.store_data(ref("a", "/g"), encode(np.zeros(1)))
    service.append_data(ref("ts"), encode(np.zeros((1, 3))), 0)
    service.set_metadata(ref("ts"), {"unit": "ms"})
    described = service.describe(ref())
    assert [n.node for n in described.nodes] == ["/", "/g", "/g/a", "/g/b", "/ts"]
    kinds = {n.node: n.kind for n in described.nodes}
    assert kinds["/g"] == "group" and kinds["/ts"] == "dataset"
    ts = next(n for n in described.nodes if n.node == "/ts")
    assert ts.attributes == {"TVB_unit": "ms"} and ts.shape is not None and ts.shape.shape == (1, 3)
    assert described.size == os.path.getsize(full_path(registry))
    service.remove_data(ref("a", "/g"))
    assert [n.node for n in service.describe(ref()).nodes] == ["/", "/g", "/g/b", "/ts"]
    assert reason_of(lambda: service.remove_data(ref())) == "INVALID_PATH"


# -- append streams and followers ------------------------------------------------------------


def part(data, dataset="ts", seq=0, expected=None, first=True) -> AppendPart:
    node = NodeRef("r", FILE, "", dataset) if first else NodeRef("", "", "", "")
    return AppendPart(node, encode(data), 0, seq, expected)


def test_an_append_stream_acks_and_resumes_without_duplicates(service):
    parts = [part(np.full((1, 2), i), seq=i, first=(i == 1)) for i in range(1, 6)]
    acks = list(service.append_stream(iter(parts)))
    assert acks and acks[-1].sequence == 5 and acks[-1].shape == (5, 2)
    # a client resuming with what it believes the length is
    again = [part(np.full((1, 2), 6), seq=6, expected=5)]
    assert list(service.append_stream(iter(again)))[-1].shape == (6, 2)
    duplicate = [part(np.full((1, 2), 6), seq=6, expected=5)]
    with pytest.raises(FailedPrecondition) as exc:
        list(service.append_stream(iter(duplicate)))
    assert exc.value.reason == "LENGTH_MISMATCH"
    assert decode(service.get_data(ref("ts")))[:, 0].tolist() == [1, 2, 3, 4, 5, 6]


def test_an_append_stream_acks_what_it_wrote_before_an_error(service):
    parts = [part(np.zeros((1, 2)), seq=1), part(np.zeros((1, 2)), seq=2, first=False)]
    parts.append(part(np.zeros((1, 5)), seq=3, first=False))
    stream = service.append_stream(iter(parts))
    acks = []
    with pytest.raises(InvalidArgument) as exc:
        for ack in stream:
            acks.append(ack)
    assert exc.value.reason == "SHAPE_MISMATCH"
    assert acks[-1].sequence == 2 and acks[-1].shape == (2, 2)


def test_an_append_stream_writes_one_file(service):
    parts = [
        part(np.zeros((1, 2)), seq=1),
        AppendPart(NodeRef("r", "other.h5"), encode(np.zeros((1, 2))), 0, 2, None),
    ]
    with pytest.raises(InvalidArgument):
        list(service.append_stream(iter(parts)))
    first = [AppendPart(NodeRef("", FILE, "", "x"), encode(np.zeros(1)), 0, 1, None)]
    assert reason_of(lambda: service.append_stream(iter(first))) == "INVALID_REPOSITORY_NAME"


def test_a_follower_sees_rows_as_they_are_acknowledged(service, registry):
    service.append_data(ref("ts"), encode(np.zeros((2, 2))), 0)
    seen: list[float] = []
    done = threading.Event()

    def follow() -> None:
        for block, reserved in service.follow(ref("ts"), 1, 0):
            service._budget.release(reserved)
            seen.extend(decode(block.data)[:, 0].tolist())
            if len(seen) >= 4:
                break
        done.set()

    t = threading.Thread(target=follow)
    t.start()
    for i in (1, 2, 3):
        service.append_data(ref("ts"), encode(np.full((1, 2), float(i))), 0)
    assert done.wait(30)
    assert seen == [0.0, 1.0, 2.0, 3.0]
    t.join()


def test_followers_end_when_the_repository_closes_and_at_shutdown(service, registry):
    service.append_data(ref("ts"), encode(np.zeros((1, 2))), 0)
    ended = []

    def follow() -> None:
        for _, reserved in service.follow(ref("ts"), 1, 0):
            service._budget.release(reserved)
        ended.append(True)

    threads = [threading.Thread(target=follow) for _ in range(2)]
    threads[0].start()
    threads[0].join(0.2)
    registry.get("r").files.close_all()  # what erasing the repository does
    threads[0].join(30)
    assert ended == [True]
    threads[1].start()
    threads[1].join(0.2)
    service.stop()
    threads[1].join(30)
    assert ended == [True, True]


def test_follow_of_a_missing_dataset_is_not_found(service):
    assert reason_of(lambda: service.follow(ref("ts"))) == "FILE_NOT_FOUND"
    service.store_data(ref("s"), encode(np.array(1.0)))
    assert reason_of(lambda: service.follow(ref("s"))) == "INVALID_SELECTION"


def test_wire_arrays_are_little_endian_and_c_order():
    big = np.arange(6, dtype=">i4").reshape(2, 3).T  # big-endian, Fortran order
    wire = encode(big)
    assert wire.dtype == "<i4" and wire.shape == (3, 2)
    np.testing.assert_array_equal(decode(wire), big)
    assert arrays.nbytes(np.array(["é"], dtype=object)) == 2
