"""Large reads by a client on the daemon's host, through /dev/shm: the same arrays as the
stream, no segment left behind (after reads, cancellations, a client that never claims, a
killed daemon), the bound on unclaimed bytes, and the fallback to the stream."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hoard
import hoard.datasets
import hoard.shared_memory
from hoard.arrays import selection_from_key
from hoard.v1 import datasets_pb2 as pb
from hoard.v1 import datasets_pb2_grpc

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="no /dev/shm on this host")

# 64 KiB and more go through shared memory: these datasets hold 480 KiB / 1.4 MiB
SHAPES = {"f8": ((300, 200), "<f8"), "i2": ((40, 90, 200), "<i2"), "be": ((250, 300), ">f8")}


def segments(pid: int) -> list[str]:
    return sorted(p.name for p in SHM.glob(f"hoard-ds-{pid}-*"))


def wait_until(check, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


@pytest.fixture
def claims(monkeypatch) -> list[tuple[int, ...]]:
    """The shapes of the segments the SDK claimed (a spy around ``claim``)."""
    seen: list[tuple[int, ...]] = []
    real = hoard.datasets.claim

    def spy(message):
        array = real(message)
        seen.append(array.shape)
        return array

    monkeypatch.setattr(hoard.datasets, "claim", spy)
    return seen


def stored(client) -> dict[str, np.ndarray]:
    ds = client.datasets("default")
    rng = np.random.default_rng(7)
    data = {}
    for name, (shape, dtype) in SHAPES.items():
        data[name] = (rng.standard_normal(shape) * 1000).astype(dtype)
        ds.store_data("s.h5", name, data[name])
    return data


def test_fast_path_and_stream_give_the_same_arrays(hoard_daemon, claims):
    with hoard.connect(hoard_daemon.target, timeout=60) as client:
        data = stored(client)
        fast = client.datasets("default")
        slow = hoard.datasets.Datasets(client.transport, "default", shared_memory=False)
        assert fast.shared_memory  # a loopback target

        slicing = st.one_of(
            st.integers(-5, 4),
            st.builds(
                slice,
                st.none() | st.integers(-300, 300),
                st.none() | st.integers(-300, 300),
                st.none() | st.integers(-3, 3).filter(bool),
            ),
        )

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(name=st.sampled_from(sorted(SHAPES)), key=st.lists(slicing, max_size=3))
        def check(name: str, key: list) -> None:
            expected = data[name]
            ndim = expected.ndim
            key = tuple(key[:ndim])
            want = expected[key]
            got_fast = np.asarray(fast._read_whole("s.h5", name, key, "/"))
            got_slow = np.asarray(slow._read_whole("s.h5", name, key, "/"))
            np.testing.assert_array_equal(got_fast, want)
            np.testing.assert_array_equal(got_slow, want)
            assert got_fast.shape == got_slow.shape == want.shape
            blocks = list(fast.read_data("s.h5", name, key))
            joined = np.concatenate([b for _, b, _ in blocks]) if want.ndim else blocks[0][1]
            np.testing.assert_array_equal(joined, want)

        check()
        assert claims, "no read went through shared memory"
        whole = fast.get_data("s.h5", "i2", shape=fast.get_data_shape("s.h5", "i2"))
        whole[0, 0, 0] = 1  # a claimed array is writable
        np.testing.assert_array_equal(
            fast.read_data("s.h5", "be").__next__()[1], data["be"]
        )  # big-endian data arrives as little-endian numbers
    assert wait_until(lambda: not segments(hoard_daemon.pid), 5)


def test_blocks_in_segments_follow_their_consumer(hoard_daemon, claims, monkeypatch):
    monkeypatch.setattr(hoard.datasets, "SHARED_BLOCK_BYTES", 100 << 10)  # 100 KiB blocks
    with hoard.connect(hoard_daemon.target, timeout=60) as client:
        data = stored(client)
        ds = client.datasets("default")
        parts = []
        for offset, block, shape in ds.read_data("s.h5", "i2", (slice(None), slice(3, 60))):
            assert shape == (40, 57, 200)
            assert len(segments(hoard_daemon.pid)) <= 2  # at most two wait for this loop
            parts.append((offset, block))
        assert len(claims) == len(parts) > 2
        assert [o for o, _ in parts] == sorted(o for o, _ in parts)
        joined = np.concatenate([b for _, b in parts])
        np.testing.assert_array_equal(joined, data["i2"][:, 3:60])
        first = next(ds.read_data("s.h5", "f8"))  # leave after one block: nothing left
        np.testing.assert_array_equal(first[1], data["f8"][: len(first[1])])
    assert wait_until(lambda: not segments(hoard_daemon.pid))


def test_a_cancelled_read_or_a_client_that_never_claims_leaves_nothing(hoard_daemon):
    with hoard.connect(hoard_daemon.target, timeout=60) as client:
        stored(client)
    request = pb.GetDataRequest(
        node=pb.NodeRef(repository="default", path="s.h5", dataset="i2"),
        selection=selection_from_key(None),
        shared_memory=True,
    )
    with grpc.insecure_channel(hoard_daemon.target) as channel:
        stub = datasets_pb2_grpc.DatasetsStub(channel)
        call = stub.ReadData(request)
        reply = next(call)  # read the reply, never open the segment, leave
        assert reply.HasField("shared_memory")
        info = os.stat(SHM / reply.shared_memory.name, follow_symlinks=False)
        assert stat.S_IMODE(info.st_mode) == 0o600 and stat.S_ISREG(info.st_mode)
        assert info.st_uid == os.getuid()
        call.cancel()
        for _ in range(5):  # cancelled as soon as started
            stub.ReadData(request).cancel()
        assert wait_until(lambda: not segments(hoard_daemon.pid))


def test_segments_of_a_killed_daemon_are_removed_by_the_next(daemon_factory, tmp_path):
    first = daemon_factory(tmp_path / "d")
    with hoard.connect(first.target, timeout=60) as client:
        stored(client)
    request = pb.GetDataRequest(
        node=pb.NodeRef(repository="default", path="s.h5", dataset="f8"),
        selection=selection_from_key(None),
        shared_memory=True,
    )
    with grpc.insecure_channel(first.target) as channel:
        reply = next(datasets_pb2_grpc.DatasetsStub(channel).ReadData(request))
    pid = first.pid
    assert segments(pid) == [reply.shared_memory.name]
    first.kill()
    daemon_factory(tmp_path / "d")  # starts once the old one is gone
    assert segments(pid) == []


def test_the_bound_on_unclaimed_memory_holds(daemon_factory, tmp_path):
    d = daemon_factory(tmp_path / "d", "--shared-memory-bytes", str(600 << 10))
    with hoard.connect(d.target, timeout=60) as client:
        data = stored(client)
    request = pb.GetDataRequest(
        node=pb.NodeRef(repository="default", path="s.h5", dataset="f8"),
        selection=selection_from_key(None),
        shared_memory=True,
    )
    with grpc.insecure_channel(d.target) as channel:
        stub = datasets_pb2_grpc.DatasetsStub(channel)
        first = stub.ReadData(request)
        assert next(first).HasField("shared_memory")  # 480 KiB held, unclaimed: within
        second = list(stub.ReadData(request))  # would make 960 KiB: streamed
        assert not any(b.HasField("shared_memory") for b in second)
        got = np.concatenate([np.frombuffer(b.data.data, "<f8") for b in second])
        np.testing.assert_array_equal(got.reshape(data["f8"].shape), data["f8"])
        assert len(segments(d.pid)) == 1
        first.cancel()
    assert wait_until(lambda: not segments(d.pid))


def test_a_segment_this_process_cannot_open_falls_back_to_the_stream(
    hoard_daemon, monkeypatch, tmp_path
):
    monkeypatch.setattr(hoard.shared_memory, "SHM_DIR", str(tmp_path))  # "another host"
    with hoard.connect(hoard_daemon.target, timeout=60) as client:
        data = stored(client)
        ds = client.datasets("default")
        got = ds.get_data("s.h5", "f8", shape=ds.get_data_shape("s.h5", "f8"))
        np.testing.assert_array_equal(got, data["f8"])  # below 16 MiB: GetData
        blocks: Iterator = ds.read_data("s.h5", "i2", (slice(None), slice(3, 60)))
        np.testing.assert_array_equal(
            np.concatenate([b for _, b, _ in blocks]), data["i2"][:, 3:60]
        )
        assert not ds.shared_memory  # it stopped asking
    assert wait_until(lambda: not segments(hoard_daemon.pid))


def test_shared_memory_off_streams(daemon_factory, tmp_path, claims):
    d = daemon_factory(tmp_path / "d", "--no-shared-memory-reads")
    with hoard.connect(d.target, timeout=60) as client:
        data = stored(client)
        blocks = client.datasets("default").read_data("s.h5", "i2")
        np.testing.assert_array_equal(np.concatenate([b for _, b, _ in blocks]), data["i2"])
    assert claims == []
