"""The datasets engine (storage/hdf5): open handles, SWMR appends with a group commit,
crash repair, chunk shapes, node paths. Real h5py and real files, no daemon."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from harness import wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from hoard_server.errors import FailedPrecondition, InvalidArgument, NotFound
from hoard_server.storage.hdf5 import superblock
from hoard_server.storage.hdf5.appends import AppendBatch, GroupAppender
from hoard_server.storage.hdf5.chunking import MAX_BYTES, TARGET_BYTES, append_chunks
from hoard_server.storage.hdf5.files import HandleLimit, OpenFiles
from hoard_server.storage.hdf5.nodes import node_path

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def files(tmp_path: Path) -> OpenFiles:
    f = OpenFiles(str(tmp_path / "datasets"), "repo")
    yield f
    f.close_all()


def rows(start: int, n: int, width: int = 3) -> np.ndarray:
    return np.arange(start * width, (start + n) * width, dtype="<f8").reshape(n, width)


# -- node paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "name", "path"),
    [
        ("/", "data", "/data"),
        ("", "data", "/data"),
        ("/a/b", "x", "/a/b/x"),  # TVB would make "/a/bx"
        ("/a/b/", "x/y", "/a/b/x/y"),
        ("a", "", "/a"),
        ("", "", "/"),
        ("/g", "/x", "/g/x"),
    ],
)
def test_where_and_name_are_joined_as_paths(where, name, path):
    assert node_path(where, name) == path


@pytest.mark.parametrize(
    ("where", "name"), [("/a", ".."), ("/a//b", "x"), ("/", "a/./b"), ("/", "a\x00")]
)
def test_bad_node_paths_are_refused(where, name):
    with pytest.raises(InvalidArgument) as exc:
        node_path(where, name)
    assert exc.value.reason == "INVALID_PATH"


# -- chunk shapes ----------------------------------------------------------------------------


@given(
    row=st.lists(st.integers(1, 5000), min_size=1, max_size=4),
    itemsize=st.sampled_from([1, 2, 4, 8, 16]),
    data=st.data(),
)
def test_chunks_are_time_major_and_sized(row, itemsize, data):
    grow = data.draw(st.integers(0, len(row) - 1))
    chunks = append_chunks(tuple(row), grow, itemsize)
    rows_ = chunks[grow]
    assert rows_ & (rows_ - 1) == 0  # a power of two
    size = math.prod(chunks) * itemsize
    others = [d for i, d in enumerate(row) if i != grow]
    one_row = math.prod(others) * itemsize
    if one_row <= MAX_BYTES:  # the full extent of every other dimension
        assert [c for i, c in enumerate(chunks) if i != grow] == others
    else:  # one row cut down to fit
        assert rows_ == 1 and size <= MAX_BYTES
    if one_row <= TARGET_BYTES:  # as many rows as fit the target
        assert size <= TARGET_BYTES < 2 * size
    else:
        assert rows_ == 1


# -- appends ---------------------------------------------------------------------------------


def test_appends_create_an_unlimited_chunked_dataset_and_grow_it(files):
    appender = GroupAppender()
    for i in range(4):
        result = appender.append(files, "a/t.h5", [AppendBatch("/g/ts", rows(2 * i, 2), 0)])
        assert result.error is None and result.shapes["/g/ts"] == (2 * i + 2, 3)
    files.close_all()
    with h5py.File(files.resolve("a/t.h5"), "r") as f:
        ds = f["/g/ts"]
        assert ds.maxshape == (None, 3)
        assert ds.chunks is not None and ds.chunks[1] == 3
        np.testing.assert_array_equal(ds[()], rows(0, 8))


def test_a_bad_batch_is_refused_whole_and_changes_nothing(files):
    appender = GroupAppender()
    appender.append(files, "t.h5", [AppendBatch("/ts", rows(0, 4), 0)])
    cases = [
        (AppendBatch("/ts", np.zeros((2, 4)), 0), "SHAPE_MISMATCH"),
        (AppendBatch("/ts", np.zeros((2, 3), dtype="<c16"), 0), "DTYPE_MISMATCH"),
        (AppendBatch("/ts", np.zeros(3), 0), "SHAPE_MISMATCH"),
        (AppendBatch("/ts", np.zeros((2, 3)), 1), "SHAPE_MISMATCH"),  # fixed along dim 1
        (AppendBatch("/ts", np.zeros((2, 3)), 5), "SHAPE_MISMATCH"),
        (AppendBatch("/ts", rows(4, 1), 0, expected_length=3), "LENGTH_MISMATCH"),
        (AppendBatch("/new", np.zeros(()), 0), "SHAPE_MISMATCH"),
        (AppendBatch("/new", rows(0, 1), 0, expected_length=2), "LENGTH_MISMATCH"),
    ]
    for batch, reason in cases:
        result = appender.append(files, "t.h5", [batch])
        assert result.written == 0
        assert getattr(result.error, "reason", None) == reason, (batch, result.error)
    with files.reading("t.h5") as f:
        assert list(f) == ["ts"]
        np.testing.assert_array_equal(f["ts"][()], rows(0, 4))


def test_batches_before_a_bad_one_are_written(files):
    appender = GroupAppender()
    result = appender.append(
        files,
        "t.h5",
        [
            AppendBatch("/ts", rows(0, 2), 0),
            AppendBatch("/ts", rows(2, 2), 0, expected_length=2),
            AppendBatch("/ts", rows(4, 2), 0, expected_length=99),
            AppendBatch("/ts", rows(6, 2), 0),
        ],
    )
    assert result.written == 2 and result.shapes["/ts"] == (4, 3)
    assert isinstance(result.error, FailedPrecondition)
    with files.reading("t.h5") as f:
        np.testing.assert_array_equal(f["ts"][()], rows(0, 4))


def test_safe_casts_are_accepted_and_strings_append(files):
    appender = GroupAppender()
    assert (
        appender.append(files, "t.h5", [AppendBatch("/f", np.zeros((1, 2), "<f8"), 0)]).error
        is None
    )
    assert (
        appender.append(files, "t.h5", [AppendBatch("/f", np.ones((1, 2), "<i4"), 0)]).error is None
    )
    words = np.array(["a", "é", "xyz"], dtype=object)
    assert appender.append(files, "t.h5", [AppendBatch("/s", words)]).error is None
    assert appender.append(files, "t.h5", [AppendBatch("/s", words[:1])]).error is None
    with files.reading("t.h5") as f:
        assert f["f"][()].tolist() == [[0, 0], [1, 1]]
        assert list(f["s"].asstr()[()]) == ["a", "é", "xyz", "a"]


def test_concurrent_writers_to_one_file_lose_nothing(files):
    appender = GroupAppender()
    writers, batches = 8, 25

    def write(w: int) -> None:
        for i in range(batches):
            data = np.full((1, 2), w * 1000 + i, dtype="<i8")
            result = appender.append(files, "t.h5", [AppendBatch(f"/w{w % 2}", data, 0)])
            assert result.error is None

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with files.reading("t.h5") as f:
        values = np.concatenate([f["w0"][:, 0], f["w1"][:, 0]]).tolist()
    assert sorted(values) == sorted(w * 1000 + i for w in range(writers) for i in range(batches))
    for w in range(writers):  # each writer's rows in its order
        mine = [v for v in values if v // 1000 == w]
        assert mine == sorted(mine)


def test_batches_waiting_for_a_file_are_committed_together(files):
    appender = GroupAppender()
    appender.append(files, "t.h5", [AppendBatch("/ts", rows(0, 1), 0)])
    rounds = appender.rounds
    results = []

    def write(i: int) -> None:
        results.append(appender.append(files, "t.h5", [AppendBatch("/ts", rows(i, 1), 0)]))

    with files.writing("t.h5"):  # another writer holds the file meanwhile
        threads = [threading.Thread(target=write, args=(i,)) for i in range(1, 6)]
        threads[0].start()  # the leader: takes its batch, then waits for the file
        wait_until(lambda: appender.rounds == rounds + 1, what="the leader's round")
        for t in threads[1:]:
            t.start()
        wait_until(lambda: appender.waiting(files, "t.h5") == 4, what="four callers queued")
    for t in threads:
        t.join()
    assert all(r.error is None for r in results)
    assert appender.rounds == rounds + 2  # the leader's own round, then one for the four
    with files.reading("t.h5") as f:
        assert sorted(f["ts"][:, 0].tolist()) == [3.0 * i for i in range(6)]


def test_appends_leave_the_handle_in_swmr_mode_and_readers_see_rows(files, tmp_path):
    appender = GroupAppender()
    appender.append(files, "t.h5", [AppendBatch("/ts", rows(0, 2), 0)])
    appender.append(files, "t.h5", [AppendBatch("/ts", rows(2, 2), 0)])
    with files.reading("t.h5") as f:
        assert f.swmr_mode
        assert f["ts"].shape == (4, 3)
    # an external SWMR reader (another process) sees the acknowledged rows too
    path = files.resolve("t.h5")
    code = f"import h5py; print(h5py.File({path!r}, 'r', swmr=True)['ts'].shape[0])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "4"


def test_files_too_old_for_swmr_are_appended_to_without_it(files):
    os.makedirs(files.root, exist_ok=True)
    with h5py.File(files.resolve("old.h5"), "w", libver="earliest") as f:  # superblock v0
        f.create_dataset("ts", data=rows(0, 2), maxshape=(None, 3), chunks=(4, 3))
    appender = GroupAppender()
    result = appender.append(files, "old.h5", [AppendBatch("/ts", rows(2, 2), 0)])
    assert result.error is None and result.shapes["/ts"] == (4, 3)
    with files.reading("old.h5") as f:
        assert not f.swmr_mode
        np.testing.assert_array_equal(f["ts"][()], rows(0, 4))


def test_metadata_writes_leave_swmr_mode_and_appends_return_to_it(files):
    appender = GroupAppender()
    appender.append(files, "t.h5", [AppendBatch("/ts", rows(0, 2), 0)])
    with files.writing("t.h5") as f:
        assert not f.swmr_mode
        f["ts"].attrs["unit"] = "ms"
    appender.append(files, "t.h5", [AppendBatch("/ts", rows(2, 2), 0)])
    with files.reading("t.h5") as f:
        assert f.swmr_mode and f["ts"].attrs["unit"] == "ms" and f["ts"].shape == (4, 3)


# -- crash -----------------------------------------------------------------------------------

_CRASHER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from hoard_server.storage.hdf5.appends import AppendBatch, GroupAppender
    from hoard_server.storage.hdf5.files import OpenFiles
    files = OpenFiles(sys.argv[1], "repo")
    appender = GroupAppender()
    for i in range(int(sys.argv[2])):
        data = np.arange(i * 3, i * 3 + 3, dtype="<f8").reshape(1, 3)
        assert appender.append(files, "c.h5", [AppendBatch("/ts", data, 0)]).error is None
        print(i, flush=True)  # acknowledged
    with files.writing("c.h5", swmr=True) as f:  # an unacknowledged write in flight
        f["ts"].resize((10**4, 3))
        f["ts"][-1] = 7
        os.kill(os.getpid(), 9)
    """
)


def test_a_killed_writer_leaves_a_valid_file_that_opens_with_no_manual_step(tmp_path):
    root = tmp_path / "datasets"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'client'}:{ROOT / 'server'}"}
    proc = subprocess.run(
        [sys.executable, "-c", _CRASHER, str(root), "50"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == -9, proc.stderr
    acknowledged = len(proc.stdout.split())
    assert acknowledged == 50
    path = root / "c.h5"
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "r")  # plain h5py refuses a file left open for writing
    files = OpenFiles(str(root), "repo")
    try:
        with files.reading("c.h5") as f:  # repaired on opening
            got = f["ts"][:acknowledged]
        np.testing.assert_array_equal(got, np.arange(150, dtype="<f8").reshape(50, 3))
    finally:
        files.close_all()
    with h5py.File(path, "r") as f:
        assert f["ts"].shape[0] >= acknowledged
    assert superblock.status_flags(path.read_bytes()[:4096]) == 0


# -- handles, doors, watches -----------------------------------------------------------------


def test_the_handle_limit_closes_the_least_recently_used(tmp_path):
    limit = HandleLimit(2)
    files = OpenFiles(str(tmp_path), "repo", limit)
    appender = GroupAppender()
    for n in range(5):
        appender.append(files, f"f{n}.h5", [AppendBatch("/x", np.zeros(1))])
    open_now = [p for p, e in files._entries.items() if e.handle is not None]
    assert len(open_now) == 2
    for n in range(5):  # every file still readable: reopened on demand
        with files.reading(f"f{n}.h5") as f:
            assert f["x"].shape == (1,)
    files.close_all()


def test_idle_handles_are_closed_but_never_one_in_use(tmp_path):
    limit = HandleLimit(10)
    files = OpenFiles(str(tmp_path), "repo", limit)
    appender = GroupAppender()
    for name in ("busy.h5", "idle.h5"):
        appender.append(files, name, [AppendBatch("/x", rows(0, 2), 0)])
        appender.append(files, name, [AppendBatch("/x", rows(2, 2), 0)])  # SWMR: flags set

    def flags(name: str) -> int:  # the superblock's "open for writing" flags, on disk
        return superblock.status_flags((tmp_path / name).read_bytes()[:4096])

    assert flags("idle.h5") and flags("busy.h5")  # open: another process's h5py refuses
    with files.writing("busy.h5", swmr=True) as held:
        assert limit.close_idle(0) == 1  # idle.h5 only
        assert held.id.valid and held["x"].shape == (4, 3)  # the one in use stays open
    assert flags("idle.h5") == 0 and flags("busy.h5")  # clean on disk now
    with h5py.File(tmp_path / "idle.h5", "r") as f:
        np.testing.assert_array_equal(f["x"][:], rows(0, 4))
    assert limit.close_idle(3600) == 0  # busy.h5 was used just now
    assert limit.close_idle(0) == 1
    assert flags("busy.h5") == 0
    appender.append(files, "idle.h5", [AppendBatch("/x", rows(4, 1), 0)])  # reopened on demand
    with files.reading("idle.h5") as f:
        np.testing.assert_array_equal(f["x"][:], rows(0, 5))
    files.close_all()


def test_a_structural_change_is_made_on_a_copy_whole_or_not_at_all(tmp_path):
    files = OpenFiles(str(tmp_path), "repo", structural_copy_bytes=1 << 30)
    appender = GroupAppender()
    appender.append(files, "a.h5", [AppendBatch("/ts", rows(0, 3), 0)])
    appender.append(files, "a.h5", [AppendBatch("/ts", rows(3, 2), 0)])  # SWMR handle open
    inode = os.stat(tmp_path / "a.h5").st_ino
    with pytest.raises(RuntimeError), files.writing("a.h5") as f:
        f.attrs["half"] = 1
        del f["ts"]
        raise RuntimeError("the change fails midway")
    with files.reading("a.h5") as f:  # untouched
        assert "half" not in f.attrs
        np.testing.assert_array_equal(f["ts"][:], rows(0, 5))
    with files.writing("a.h5") as f:
        f.attrs["unit"] = "ms"
        f.create_dataset("extra", data=np.arange(3))
    assert os.stat(tmp_path / "a.h5").st_ino != inode  # renamed over the original
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []  # no scratch left
    appender.append(files, "a.h5", [AppendBatch("/ts", rows(5, 1), 0)])  # reopened: SWMR
    with files.reading("a.h5") as f:
        assert f.attrs["unit"] == "ms" and list(f["extra"][:]) == [0, 1, 2]
        np.testing.assert_array_equal(f["ts"][:], rows(0, 6))
    files.close_all()
    in_place = OpenFiles(str(tmp_path), "repo")  # structural_copy_bytes 0: in place
    with pytest.raises(RuntimeError), in_place.writing("a.h5") as f:
        f.attrs["half"] = 1
        raise RuntimeError("the change fails midway")
    with in_place.reading("a.h5") as f:
        assert f.attrs["half"] == 1  # what was made before the failure stays
    in_place.close_all()


def test_missing_and_foreign_files_have_their_reasons(files, tmp_path):
    with pytest.raises(NotFound) as missing, files.reading("nope.h5"):
        pass
    assert missing.value.reason == "FILE_NOT_FOUND"
    os.makedirs(files.root, exist_ok=True)
    Path(files.resolve("text.h5")).write_text("not hdf5")
    with pytest.raises(InvalidArgument) as foreign, files.reading("text.h5"):
        pass
    assert foreign.value.reason == "NOT_HDF5"
    with pytest.raises(InvalidArgument), files.writing("text.h5", create=True):
        pass
    assert Path(files.resolve("text.h5")).read_text() == "not hdf5"


def test_watchers_are_woken_by_writes_and_by_closing(files):
    appender = GroupAppender()
    appender.append(files, "t.h5", [AppendBatch("/ts", rows(0, 1), 0)])
    with files.watch("t.h5") as watch:
        seen = watch.generation
        t = threading.Thread(
            target=appender.append, args=(files, "t.h5", [AppendBatch("/ts", rows(1, 1), 0)])
        )
        t.start()
        assert watch.wait(seen, 30) != seen
        t.join()
        files.close_all()
        assert watch.closed


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(0, 5), min_size=1, max_size=8))
def test_grouped_appends_equal_one_concatenation(tmp_path_factory, sizes):
    root = tmp_path_factory.mktemp("g")
    files = OpenFiles(str(root), "repo")
    try:
        appender = GroupAppender()
        start, batches = 0, []
        for n in sizes:
            batches.append(AppendBatch("/ts", rows(start, n), 0))
            start += n
        result = appender.append(files, "t.h5", batches)
        assert result.error is None and result.written == len(sizes)
        with files.reading("t.h5") as f:
            np.testing.assert_array_equal(f["ts"][()], rows(0, start))
    finally:
        files.close_all()
