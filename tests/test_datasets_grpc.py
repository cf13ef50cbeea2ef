"""hoard.v1.Datasets against the real daemon (a subprocess), through the generated stubs:
the wire forms, the statuses and reasons, a kill -9 in the middle of an Append stream,
followers, concurrent writers and readers, many processes appending at once.

``python tests/test_datasets_grpc.py append TARGET PATH ROWS`` is the client process of the
multi-process test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import h5py
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from harness import wait_until

from hoard.v1 import datasets_pb2 as pb
from hoard.v1 import datasets_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
FILE = "sim/TimeSeries.h5"


def to_wire(a: np.ndarray) -> pb.Array:
    a = np.asarray(a)
    if a.dtype.kind == "O":
        return pb.Array(dtype="str", shape=a.shape, strings=[str(x) for x in a.reshape(-1)])
    return pb.Array(dtype=a.dtype.str, shape=a.shape, data=np.ascontiguousarray(a).tobytes())


def from_wire(m: pb.Array) -> np.ndarray:
    if m.dtype == "str":
        return np.array(list(m.strings), dtype=object).reshape(tuple(m.shape))
    return np.frombuffer(m.data, dtype=np.dtype(m.dtype)).reshape(tuple(m.shape))


def node(dataset: str = "", where: str = "", path: str = FILE, repo: str = "default"):
    return pb.NodeRef(repository=repo, path=path, where=where, dataset=dataset)


def rows(start: int, n: int, width: int = 4) -> np.ndarray:
    return np.arange(start * width, (start + n) * width, dtype="<f8").reshape(n, width)


def failure(call) -> tuple[grpc.StatusCode, str, error_details_pb2.ErrorInfo]:
    with pytest.raises(grpc.RpcError) as exc:
        result = call()
        if hasattr(result, "__iter__") and not isinstance(result, pb.Array):
            list(result)
    err = exc.value
    status = rpc_status.from_call(err)
    info = error_details_pb2.ErrorInfo()
    assert status is not None and status.details[0].Unpack(info)
    return err.code(), err.details(), info


def file_on_disk(daemon, path: str = FILE, repo: str = "default") -> Path:
    return Path(daemon.data_dir) / "repositories" / repo / "datasets" / path


@pytest.fixture
def stub(hoard_daemon) -> Iterator[datasets_pb2_grpc.DatasetsStub]:
    with grpc.insecure_channel(hoard_daemon.target) as channel:
        yield datasets_pb2_grpc.DatasetsStub(channel)


def appends(
    dataset: str, batches: list[np.ndarray], path: str = FILE, pause: float = 0.0
) -> Iterator[pb.AppendRequest]:
    for seq, data in enumerate(batches, 1):
        first = seq == 1
        yield pb.AppendRequest(
            node=node(dataset, path=path) if first else None,
            data=to_wire(data),
            grow_dimension=0,
            sequence=seq,
        )
        if pause:
            time.sleep(pause)  # so the daemon commits the stream in several groups


# -- the wire --------------------------------------------------------------------------------


def test_store_get_shape_describe_through_the_wire(stub):
    data = np.arange(12, dtype="<i4").reshape(3, 4)
    shape = stub.StoreData(pb.StoreDataRequest(node=node("x", "/g"), data=to_wire(data)))
    assert list(shape.shape) == [3, 4] and shape.dtype == "<i4"
    sel = pb.Selection(
        items=[
            pb.SelectionItem(slice=pb.Slice(step=-1)),
            pb.SelectionItem(indices=pb.IndexList(values=[0, 2])),
        ]
    )
    got = from_wire(stub.GetData(pb.GetDataRequest(node=node("x", "/g"), selection=sel)))
    np.testing.assert_array_equal(got, data[::-1, [0, 2]])
    one = stub.GetData(
        pb.GetDataRequest(
            node=node("x", "/g"),
            selection=pb.Selection(
                items=[pb.SelectionItem(index=-1), pb.SelectionItem(ellipsis=True)]
            ),
        )
    )
    np.testing.assert_array_equal(from_wire(one), data[-1])
    stub.StoreData(pb.StoreDataRequest(node=node("scalar"), data=to_wire(np.array(2.5))))
    assert from_wire(stub.GetData(pb.GetDataRequest(node=node("scalar"))))[()] == 2.5
    words = np.array(["é", "b"], dtype=object)
    stub.StoreData(pb.StoreDataRequest(node=node("words"), data=to_wire(words)))
    assert list(stub.GetData(pb.GetDataRequest(node=node("words"))).strings) == ["é", "b"]
    described = stub.Describe(node())
    assert [n.node for n in described.nodes] == ["/", "/g", "/g/x", "/scalar", "/words"]
    # attributes by their names in the file (GetMetadata is where TVB's prefix goes)
    assert described.nodes[0].attributes["TVB_Data_version"].int_value == 5
    assert "Data_version" not in described.nodes[0].attributes
    assert stub.IsValidFile(node()).valid and not stub.IsValidFile(node(path="no.h5")).valid
    stub.RemoveData(node("words"))
    assert "/words" not in [n.node for n in stub.Describe(node()).nodes]
    stub.CloseFile(node())


def test_metadata_through_the_wire(stub, hoard_daemon):
    stub.StoreData(pb.StoreDataRequest(node=node("x"), data=to_wire(np.zeros(2))))
    values = {
        "none": pb.Value(none=True),
        "flag": pb.Value(bool_value=True),
        "n": pb.Value(int_value=-3),
        "x": pb.Value(float_value=0.5),
        "s": pb.Value(string_value="hé"),
        "when": pb.Value(datetime_value="2020-01-02 03:04:05.000006"),
        "raw": pb.Value(bytes_value=b"\x00\x01"),
        "vec": pb.Value(array_value=to_wire(np.arange(3, dtype="<i8"))),
    }
    stub.SetMetadata(
        pb.SetMetadataRequest(node=node("x"), metadata=values, tvb_specific_metadata=True)
    )
    got = stub.GetMetadata(node("x")).metadata
    assert dict(got) == values
    assert stub.RemoveMetadata(
        pb.RemoveMetadataRequest(node=node("x"), key="n", tvb_specific_metadata=True)
    ).removed
    stub.CloseFile(node())
    with h5py.File(file_on_disk(hoard_daemon), "r") as f:
        attrs = f["x"].attrs
        assert (
            attrs["TVB_flag"] == "bool:True"
            and attrs["TVB_when"] == "datetime:2020-01-02 03:04:05.000006"
        )
        assert isinstance(attrs["TVB_none"], h5py.Empty) and "TVB_n" not in attrs


def test_every_mistake_has_its_status_and_reason(stub, hoard_daemon):
    stub.AppendData(
        pb.AppendDataRequest(node=node("ts"), data=to_wire(rows(0, 2)), grow_dimension=0)
    )
    stub.CloseFile(node())
    before = file_on_disk(hoard_daemon).read_bytes()
    C = grpc.StatusCode
    cases = [
        (
            lambda: stub.GetData(pb.GetDataRequest(node=node("ts", path="none.h5"))),
            C.NOT_FOUND,
            "FILE_NOT_FOUND",
        ),
        (
            lambda: stub.GetData(pb.GetDataRequest(node=node("nope"))),
            C.NOT_FOUND,
            "DATASET_NOT_FOUND",
        ),
        (
            lambda: stub.GetDataShape(node("ts", path="../up.h5")),
            C.INVALID_ARGUMENT,
            "INVALID_PATH",
        ),
        (
            lambda: stub.GetData(
                pb.GetDataRequest(
                    node=node("ts"), selection=pb.Selection(items=[pb.SelectionItem(index=9)])
                )
            ),
            C.OUT_OF_RANGE,
            "SELECTION_OUT_OF_RANGE",
        ),
        (
            lambda: stub.AppendData(
                pb.AppendDataRequest(
                    node=node("ts"), data=to_wire(rows(0, 1).astype("<c16")), grow_dimension=0
                )
            ),
            C.INVALID_ARGUMENT,
            "DTYPE_MISMATCH",
        ),
        (
            lambda: stub.AppendData(
                pb.AppendDataRequest(
                    node=node("ts"), data=to_wire(np.zeros((1, 5))), grow_dimension=0
                )
            ),
            C.INVALID_ARGUMENT,
            "SHAPE_MISMATCH",
        ),
        (
            lambda: stub.AppendData(
                pb.AppendDataRequest(
                    node=node("ts"), data=pb.Array(dtype="<f8", shape=[1, 4], data=b"x")
                )
            ),
            C.INVALID_ARGUMENT,
            "SHAPE_MISMATCH",
        ),
        (
            lambda: stub.StoreData(
                pb.StoreDataRequest(node=node("ts"), data=pb.Array(dtype="object", shape=[1]))
            ),
            C.INVALID_ARGUMENT,
            "INVALID_DTYPE",
        ),
        (
            lambda: list(
                stub.Append(
                    iter(
                        [
                            pb.AppendRequest(
                                node=node("ts"),
                                data=to_wire(rows(0, 1)),
                                grow_dimension=0,
                                expected_length=7,
                            )
                        ]
                    )
                )
            ),
            C.FAILED_PRECONDITION,
            "LENGTH_MISMATCH",
        ),
        (
            lambda: stub.SetMetadata(
                pb.SetMetadataRequest(node=node("ghost"), metadata={"a": pb.Value(int_value=1)})
            ),
            C.NOT_FOUND,
            "DATASET_NOT_FOUND",
        ),
        (
            lambda: stub.SetMetadata(
                pb.SetMetadataRequest(
                    node=node("ts"), metadata={"a": pb.Value(datetime_value="yesterday")}
                )
            ),
            C.INVALID_ARGUMENT,
            "INVALID_METADATA",
        ),
        (
            lambda: stub.RemoveMetadata(
                pb.RemoveMetadataRequest(node=node("ts"), key="zz", check_existence=True)
            ),
            C.NOT_FOUND,
            "METADATA_NOT_FOUND",
        ),
        (
            lambda: stub.GetData(pb.GetDataRequest(node=node())),
            C.FAILED_PRECONDITION,
            "NOT_A_DATASET",
        ),
    ]
    for call, code, reason in cases:
        got_code, message, info = failure(call)
        assert (got_code, info.reason) == (code, reason), message
        assert info.domain == "hoard" and message
        assert info.metadata["repository"] == "default"
    assert stub.GetDataShape(node("ts")).shape == [2, 4]
    stub.CloseFile(node())
    assert file_on_disk(hoard_daemon).read_bytes() == before


def test_a_reply_too_large_is_refused_without_retry_and_read_data_streams_it(daemon_factory):
    daemon = daemon_factory(None, "--max-reply-bytes", "4096")
    with grpc.insecure_channel(daemon.target) as channel:
        stub = datasets_pb2_grpc.DatasetsStub(channel)
        big = rows(0, 200_000)  # 6.4 MB: two ReadData blocks of 4 MiB
        stub.StoreData(pb.StoreDataRequest(node=node("big"), data=to_wire(big)))
        with pytest.raises(grpc.RpcError) as exc:
            stub.GetData(pb.GetDataRequest(node=node("big")))
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "ReadData" in exc.value.details()
        trailers = dict(exc.value.trailing_metadata())
        assert trailers.get("grpc-retry-pushback-ms") == "-1"
        blocks = list(stub.ReadData(pb.GetDataRequest(node=node("big"))))
        assert len(blocks) > 1 and [b.offset for b in blocks] == sorted(b.offset for b in blocks)
        np.testing.assert_array_equal(np.concatenate([from_wire(b.data) for b in blocks]), big)


# -- durability ------------------------------------------------------------------------------


def test_kill_9_mid_append_stream_keeps_every_acknowledged_row(daemon_factory, tmp_path):
    daemon = daemon_factory(tmp_path / "data")
    acked: list[int] = []  # shapes along the grow dimension the daemon acknowledged
    killed = threading.Event()

    def endless() -> Iterator[pb.AppendRequest]:
        seq = 0
        while not killed.is_set() and seq < 100_000:
            seq += 1
            yield pb.AppendRequest(
                node=node("ts") if seq == 1 else None,
                data=to_wire(rows(10 * (seq - 1), 10)),
                grow_dimension=0,
                sequence=seq,
            )

    channel = grpc.insecure_channel(daemon.target)
    stub = datasets_pb2_grpc.DatasetsStub(channel)
    try:
        for ack in stub.Append(endless()):
            acked.append(ack.shape[0])
            if len(acked) == 40:
                daemon.proc.send_signal(signal.SIGKILL)  # in the middle of the stream
                killed.set()
    except grpc.RpcError:
        pass
    channel.close()
    daemon.wait()
    assert len(acked) >= 40
    length = acked[-1]
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(file_on_disk(daemon), "r")  # left open for writing: plain h5py refuses
    daemon.start()  # the same data directory: no manual step
    with grpc.insecure_channel(daemon.target) as channel:
        stub = datasets_pb2_grpc.DatasetsStub(channel)
        assert stub.IsValidFile(node()).valid
        shape = stub.GetDataShape(node("ts")).shape
        assert shape[0] >= length
        got = from_wire(
            stub.GetData(
                pb.GetDataRequest(
                    node=node("ts"),
                    selection=pb.Selection(items=[pb.SelectionItem(slice=pb.Slice(stop=length))]),
                )
            )
        )
        np.testing.assert_array_equal(got, rows(0, length))
        with h5py.File(file_on_disk(daemon), "r") as f:  # the daemon repaired and opened it
            np.testing.assert_array_equal(f["ts"][:length], rows(0, length))
        # and it takes appends again, resuming where the file is
        ack = stub.AppendData(
            pb.AppendDataRequest(node=node("ts"), data=to_wire(rows(shape[0], 1)), grow_dimension=0)
        )
        assert ack.shape[0] == shape[0] + 1


# -- streams: groups, followers, concurrency -------------------------------------------------


def test_an_append_stream_in_several_groups_continues_its_dataset(stub):
    batches = [rows(i, 1) for i in range(6)]
    acks = list(stub.Append(appends("ts", batches, pause=0.05)))
    assert acks[-1].sequence == 6 and list(acks[-1].shape) == [6, 4]
    assert all(a.dataset == "/ts" for a in acks)
    np.testing.assert_array_equal(
        from_wire(stub.GetData(pb.GetDataRequest(node=node("ts")))), rows(0, 6)
    )


def test_a_follower_sees_rows_as_they_are_acknowledged(stub):
    stub.AppendData(
        pb.AppendDataRequest(node=node("ts"), data=to_wire(rows(0, 2)), grow_dimension=0)
    )
    follower = stub.Follow(pb.FollowRequest(node=node("ts"), from_row=1, grow_dimension=0))
    seen: list[np.ndarray] = []
    first = next(follower)
    assert first.offset == 1 and list(first.shape) == [2, 4]
    seen.append(from_wire(first.data))
    for i in range(2, 5):
        stub.AppendData(
            pb.AppendDataRequest(node=node("ts"), data=to_wire(rows(i, 1)), grow_dimension=0)
        )
        block = next(follower)
        assert block.offset == sum(len(s) for s in seen) + 1
        seen.append(from_wire(block.data))
    follower.cancel()
    np.testing.assert_array_equal(np.concatenate(seen), rows(1, 4))


def test_a_quiet_follower_is_not_a_stalled_client(daemon_factory):
    daemon = daemon_factory(None, "--stream-idle-timeout", "1")
    with grpc.insecure_channel(daemon.target) as channel:
        stub = datasets_pb2_grpc.DatasetsStub(channel)
        stub.AppendData(
            pb.AppendDataRequest(node=node("ts"), data=to_wire(rows(0, 1)), grow_dimension=0)
        )
        follower = stub.Follow(pb.FollowRequest(node=node("ts"), from_row=1, grow_dimension=0))
        time.sleep(3)  # three idle timeouts with nothing to send
        stub.AppendData(
            pb.AppendDataRequest(node=node("ts"), data=to_wire(rows(1, 1)), grow_dimension=0)
        )
        assert next(follower).offset == 1
        follower.cancel()


def test_follow_streams_are_bounded_and_end_with_their_repository(daemon_factory):
    daemon = daemon_factory(None, "--follow-streams", "1")
    from hoard.v1 import repositories_pb2 as rpb
    from hoard.v1 import repositories_pb2_grpc

    with grpc.insecure_channel(daemon.target) as channel:
        stub = datasets_pb2_grpc.DatasetsStub(channel)
        repos = repositories_pb2_grpc.RepositoriesStub(channel)
        repos.CreateRepository(rpb.CreateRepositoryRequest(repository="live"))
        ref = node("ts", repo="live")
        stub.AppendData(pb.AppendDataRequest(node=ref, data=to_wire(rows(0, 1)), grow_dimension=0))
        follower = stub.Follow(pb.FollowRequest(node=ref, grow_dimension=0))
        assert next(follower).offset == 0
        code, message, info = failure(lambda: stub.Follow(pb.FollowRequest(node=ref)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and info.reason == "OVERLOADED"
        assert "follow_streams" in message
        repos.EraseRepository(rpb.EraseRepositoryRequest(repository="live"))
        assert list(follower) == []  # ended cleanly
        # the slot is free again
        stub.AppendData(
            pb.AppendDataRequest(node=node("ts"), data=to_wire(rows(0, 1)), grow_dimension=0)
        )
        again = stub.Follow(pb.FollowRequest(node=node("ts"), grow_dimension=0))
        assert next(again).offset == 0
        again.cancel()


def test_a_follower_ends_when_its_file_is_deleted(stub, hoard_daemon):
    stub.AppendData(
        pb.AppendDataRequest(node=node("ts"), data=to_wire(rows(0, 1)), grow_dimension=0)
    )
    follower = stub.Follow(pb.FollowRequest(node=node("ts"), grow_dimension=0))
    assert next(follower).offset == 0
    with grpc.insecure_channel(hoard_daemon.target) as channel:
        files = datasets_pb2_grpc.DatasetFilesStub(channel)
        files.DeleteFile(pb.FileRequest(repository="default", path=FILE))
    assert list(follower) == []  # ended cleanly
    assert not file_on_disk(hoard_daemon).exists()


def test_a_follower_whose_client_stops_reading_is_cancelled(daemon_factory):
    daemon = daemon_factory(None, "--stream-idle-timeout", "1", "--follow-streams", "1")
    with grpc.insecure_channel(daemon.target) as channel:
        stub = datasets_pb2_grpc.DatasetsStub(channel)
        for i in range(8):  # far more than grpc's flow-control windows hold
            big = rows(i * 65536, 65536)
            stub.AppendData(
                pb.AppendDataRequest(node=node("ts"), data=to_wire(big), grow_dimension=0)
            )
        stalled = stub.Follow(pb.FollowRequest(node=node("ts"), grow_dimension=0))
        next(stalled)  # admitted (it holds the one slot before any probe), then never read

        def slot_free() -> bool:
            try:
                again = stub.Follow(pb.FollowRequest(node=node("ts"), grow_dimension=0))
                next(again)
                again.cancel()
                return True
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                return False

        wait_until(slot_free, 60, "the watchdog to cancel the follower that stopped reading")
        with pytest.raises(grpc.RpcError) as exc:
            for _ in stalled:  # what was buffered, then the daemon's cancellation
                pass
        assert exc.value.code() == grpc.StatusCode.CANCELLED


def test_followers_end_when_the_daemon_stops(hoard_daemon, stub):
    stub.AppendData(
        pb.AppendDataRequest(node=node("ts"), data=to_wire(rows(0, 1)), grow_dimension=0)
    )
    follower = stub.Follow(pb.FollowRequest(node=node("ts"), grow_dimension=0))
    assert next(follower).offset == 0
    assert hoard_daemon.stop() == 0  # the follower did not hold the shutdown up
    code, _, info = failure(lambda: list(follower))  # not a clean end: follow again
    assert code == grpc.StatusCode.UNAVAILABLE and info.reason == "SHUTTING_DOWN"


def _hold_open(stop: threading.Event, first: pb.AppendRequest | None = None):
    """An Append request stream that sends ``first`` (if any), then nothing until ``stop``."""
    if first is not None:
        yield first
    stop.wait()


def _ended(call, within: float = 60.0) -> bool:
    done = threading.Event()
    call.add_done_callback(lambda _: done.set())
    return done.wait(within)


def test_an_append_stream_whose_client_sends_nothing_is_cancelled(daemon_factory):
    daemon = daemon_factory(None, "--stream-idle-timeout", "1")
    release = threading.Event()
    with grpc.insecure_channel(daemon.target) as channel:
        stub = datasets_pb2_grpc.DatasetsStub(channel)
        silent = stub.Append(_hold_open(release))  # opens the stream, never sends
        try:
            assert _ended(silent), "the idle Append stream was never cancelled"
            assert silent.code() == grpc.StatusCode.CANCELLED
            # one that sent a batch, was acknowledged, then fell silent: idle as well
            first = pb.AppendRequest(
                node=node("ts"), data=to_wire(rows(0, 1)), grow_dimension=0, sequence=1
            )
            quiet = stub.Append(_hold_open(release, first))
            assert next(quiet).sequence == 1
            assert _ended(quiet), "the Append stream idle after its ack was never cancelled"
            assert quiet.code() == grpc.StatusCode.CANCELLED
        finally:
            release.set()


def test_an_append_stream_that_keeps_sending_is_not_idle(daemon_factory):
    daemon = daemon_factory(None, "--stream-idle-timeout", "1")
    with grpc.insecure_channel(daemon.target) as channel:
        stub = datasets_pb2_grpc.DatasetsStub(channel)
        batches = [rows(i, 1) for i in range(12)]  # 12 * 0.3 s: several idle timeouts in all
        acks = list(stub.Append(appends("ts", batches, pause=0.3)))
        assert acks[-1].sequence == 12 and list(acks[-1].shape) == [12, 4]


def test_a_graceful_stop_ends_append_and_follow_streams_at_once(daemon_factory, tmp_path):
    import hoard

    daemon = daemon_factory(tmp_path / "data", "--grace-period", "30")
    with hoard.connect(daemon.target, timeout=30) as client:
        ds = client.datasets()
        app = ds.appender(FILE, "ts", grow_dimension=0, idle_close=600, resume_timeout=60)
        app.append(rows(0, 5))
        app.flush()  # acknowledged: the stream stays open, idle
        assert app.acknowledged == 5
        with grpc.insecure_channel(daemon.target) as channel:
            stub = datasets_pb2_grpc.DatasetsStub(channel)
            follower = stub.Follow(pb.FollowRequest(node=node("ts"), grow_dimension=0))
            assert next(follower).offset == 0
            # far less than the grace period: the open streams did not hold the stop up
            assert daemon.stop(timeout=10) == 0
            with pytest.raises(grpc.RpcError) as exc:
                list(follower)
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
            info = error_details_pb2.ErrorInfo()
            rpc_status.from_call(exc.value).details[0].Unpack(info)
            assert info.reason == "SHUTTING_DOWN"
        with h5py.File(file_on_disk(daemon), "r") as f:  # closed cleanly: plain h5py opens it
            np.testing.assert_array_equal(f["ts"][:], rows(0, 5))
        app.append(rows(5, 3))  # while the daemon is down: the appender resumes once it is up
        daemon.start()
        app.append(rows(8, 2))
        app.close()
        assert app.acknowledged == 10
        np.testing.assert_array_equal(ds.get_data(FILE, "ts"), rows(0, 10))


def test_a_file_nobody_uses_is_closed_and_clean_on_disk_while_the_daemon_runs(daemon_factory):
    import hoard

    daemon = daemon_factory(None, "--handle-idle-seconds", "1")
    path = file_on_disk(daemon)

    def plain_h5py_opens() -> bool:
        try:
            with h5py.File(path, "r") as f:
                return f["ts"].shape[0] == 4
        except OSError as exc:
            assert "already open for write" in str(exc)
            return False

    with (
        hoard.connect(daemon.target, timeout=30) as client,
        grpc.insecure_channel(daemon.target) as channel,
    ):
        stub = datasets_pb2_grpc.DatasetsStub(channel)
        app = client.datasets().appender(FILE, "ts", grow_dimension=0, idle_close=600)
        app.append(rows(0, 2))
        app.flush()
        app.append(rows(2, 2))  # in SWMR mode: the file's flags say "open for writing"
        app.flush()
        follower = stub.Follow(pb.FollowRequest(node=node("ts"), grow_dimension=0))
        assert next(follower).offset == 0
        wait_until(plain_h5py_opens, 60, "the daemon to close the idle file")
        # the open appender and follower carry on: the daemon reopens the file
        app.append(rows(4, 1))
        app.flush()
        assert app.acknowledged == 5
        assert next(follower).offset == 4
        follower.cancel()
        app.close()
        np.testing.assert_array_equal(client.datasets().get_data(FILE, "ts"), rows(0, 5))


def test_two_writers_to_one_file_lose_no_rows(stub):
    def write(w: int) -> None:
        batches = [np.full((2, 4), w * 1000 + i, dtype="<f8") for i in range(30)]
        assert list(stub.Append(appends("ts", batches)))[-1].sequence == 30

    threads = [threading.Thread(target=write, args=(w,)) for w in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = from_wire(stub.GetData(pb.GetDataRequest(node=node("ts"))))[:, 0]
    assert sorted(data.tolist()) == sorted(
        float(w * 1000 + i) for w in (1, 2) for i in range(30) for _ in range(2)
    )
    for w in (1, 2):
        mine = [v for v in data.tolist() if v // 1000 == w]
        assert mine == sorted(mine)


def test_a_reader_keeps_getting_answers_while_a_writer_appends(stub):
    stub.AppendData(
        pb.AppendDataRequest(node=node("ts"), data=to_wire(rows(0, 1)), grow_dimension=0)
    )
    done = threading.Event()

    def writer() -> None:
        list(stub.Append(appends("ts", [rows(1 + i, 5) for i in range(0, 1000, 5)])))
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    lengths = []
    while not done.is_set() or len(lengths) < 5:
        shape = stub.GetDataShape(node("ts")).shape
        got = from_wire(
            stub.GetData(
                pb.GetDataRequest(
                    node=node("ts"),
                    selection=pb.Selection(items=[pb.SelectionItem(slice=pb.Slice(stop=shape[0]))]),
                )
            )
        )
        np.testing.assert_array_equal(got, rows(0, shape[0]))  # every row complete and right
        lengths.append(shape[0])
    t.join()
    # the last reading in the loop may predate the writer's last ack: one more, after it
    lengths.append(stub.GetDataShape(node("ts")).shape[0])
    assert lengths == sorted(lengths) and lengths[-1] == 1001


def _processes_append(daemon, count: int) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'client'}:{ROOT / 'server'}"}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "append", daemon.target, f"many/{n}.h5", "200"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        assert out.strip() == "200"
    with grpc.insecure_channel(daemon.target) as channel:
        stub = datasets_pb2_grpc.DatasetsStub(channel)
        for n in range(count):
            got = from_wire(stub.GetData(pb.GetDataRequest(node=node("ts", path=f"many/{n}.h5"))))
            np.testing.assert_array_equal(got, rows(0, 200))


def test_sixteen_processes_appending_to_sixteen_files_all_succeed(hoard_daemon):
    _processes_append(hoard_daemon, 16)


def _append_worker(target: str, path: str, count: int) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = datasets_pb2_grpc.DatasetsStub(channel)
        acks = list(stub.Append(appends("ts", [rows(i, 1) for i in range(count)], path=path)))
        print(acks[-1].shape[0])


if __name__ == "__main__":
    if sys.argv[1] == "append":
        _append_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
