"""The storage engine on its own: formats, round trips, dedup, deletion, recovery."""

from __future__ import annotations

import hashlib
import os
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoard_server.errors import (
    DataLoss,
    InvalidArgument,
    ObjectNotFound,
    OutOfRange,
    RepositoryNotFound,
)
from hoard_server.storage.codec import FRAME_SIZE, Codec, FrameTable
from hoard_server.storage.keys import parse_key
from hoard_server.storage.pack import HEADER_SIZE, PACK_MAGIC, Encoding, RecordHeader
from hoard_server.storage.registry import RepositoryRegistry, check_repository_name
from hoard_server.storage.repository import StorageSettings


def make_data(seed: int, size: int, compressible: bool) -> bytes:
    rng = random.Random(seed)
    if not compressible:
        return rng.randbytes(size)
    words = [rng.randbytes(rng.randint(2, 8)).hex() for _ in range(200)]
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rng.choice(words) for _ in range(10)) + "\n").encode()
    return bytes(out[:size])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def registry(tmp_path):
    reg = RepositoryRegistry(str(tmp_path / "data"), StorageSettings(pack_max_bytes=8 << 20))
    yield reg
    reg.close()


@pytest.fixture
def repo(registry):
    return registry.create("test")[0]


def read_all(repo, key, offset=0, length=None) -> bytes:
    _size, chunks = repo.read(key, offset, length)
    return b"".join(chunks)


# -- formats ------------------------------------------------------------------------------


def test_record_header_round_trip():
    h = RecordHeader(Encoding.FRAMES, bytes(range(32)), 123456789012, 42)
    assert len(h.encode()) == HEADER_SIZE
    assert RecordHeader.decode(h.encode()) == h


@given(
    st.lists(
        st.tuples(st.integers(1, (1 << 31) - 1), st.booleans(), st.integers(0, 2**32 - 1)),
        max_size=50,
    ),
    st.integers(1, 1 << 24),
)
def test_frame_table_round_trip(frames, frame_size):
    table = FrameTable(
        frame_size,
        tuple(n for n, _, _ in frames),
        tuple(r for _, r, _ in frames),
        tuple(c for _, _, c in frames),
    )
    encoded = table.encode()
    n = FrameTable.trailer_length(encoded[-4:])
    assert n == len(encoded) - 4
    assert FrameTable.decode(encoded[:n]) == table
    damaged = bytearray(encoded[:n])
    damaged[len(damaged) // 2] ^= 0x01
    with pytest.raises(DataLoss):
        FrameTable.decode(bytes(damaged))


def test_frames_for_range():
    t = FrameTable(10, (5, 5, 5), (False, False, True), (0, 0, 0))
    assert list(t.frames_for(0, 0)) == []
    assert list(t.frames_for(0, 1)) == [0]
    assert list(t.frames_for(9, 2)) == [0, 1]
    assert list(t.frames_for(25, 100)) == [2]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3 * FRAME_SIZE + 1000), st.integers(0, 2**32), st.booleans())
def test_codec_round_trip(size, seed, compressible):
    codec = Codec()
    data = make_data(seed, size, compressible)
    enc, parts = codec.encode(data)
    body = b"".join(parts)
    if enc == Encoding.FRAMES:
        n = FrameTable.trailer_length(body[-4:])
        table = FrameTable.decode(body[-4 - n : -4])
        offsets = table.offsets
        out = b"".join(
            codec.decode_frame(
                body[offsets[i] : offsets[i] + table.stored[i]],
                table.raw[i],
                min(FRAME_SIZE, size - i * FRAME_SIZE),
                table.crc[i],
            )
            for i in range(len(table.stored))
        )
    else:
        out = codec.decode_small(enc, body, size)
    assert out == data


def test_incompressible_data_is_stored_raw():
    codec = Codec()
    enc, parts = codec.encode(os.urandom(200_000))
    assert enc == Encoding.RAW
    enc, parts = codec.encode(os.urandom(3 * FRAME_SIZE))
    n = FrameTable.trailer_length(parts[-1][-4:])
    assert all(FrameTable.decode(parts[-1][:n]).raw)


def test_compressible_data_is_compressed():
    codec = Codec()
    data = make_data(1, 100_000, True)
    enc, parts = codec.encode(data)
    assert enc == Encoding.ZSTD and sum(map(len, parts)) < len(data) / 2


# -- keys and names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["", "abc", "A" * 64, "g" * 64, "0" * 63, "0" * 65, " " + "0" * 63, "00 " * 21 + "0"]
)
def test_malformed_keys_are_rejected(bad):
    with pytest.raises(InvalidArgument, match="not a SHA-256 key") as caught:
        parse_key(bad)
    assert caught.value.reason == "INVALID_KEY" and "key" in caught.value.details


@pytest.mark.parametrize("bad", ["", ".hidden", "../up", "a/b", "x" * 129, "sp ace"])
def test_bad_repository_names_are_rejected(bad):
    with pytest.raises(InvalidArgument):
        check_repository_name(bad)


# -- repository behaviour ------------------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(0, 5 << 20),
    seed=st.integers(0, 2**32),
    compressible=st.booleans(),
    ranges=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), max_size=5),
    streamed=st.booleans(),
)
def test_put_read_round_trip(repo, size, seed, compressible, ranges, streamed):
    data = make_data(seed, size, compressible)
    if streamed:
        chunks = [data[i : i + 777_777] for i in range(0, len(data), 777_777)]
        key, raw_size, _ = repo.put_stream(chunks, size=len(data))
        assert raw_size == size
    else:
        ((key, _),) = repo.put_many([data])
    assert key == sha(data)
    assert read_all(repo, key) == data
    for a, b in ranges:
        offset = int(a * size)
        length = int(b * (size - offset + 10))
        assert read_all(repo, key, offset, length) == data[offset : offset + length]


def test_large_stream_goes_through_staging_and_reads_back(repo):
    data = make_data(7, 20 << 20, True) + os.urandom(3 << 20)
    chunks = [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
    key, size, created = repo.put_stream(chunks)
    assert (key, size, created) == (sha(data), len(data), True)
    (stat,) = repo.stat_many([key])
    assert stat.encoding == "zstd-frames" and stat.stored_size < len(data)
    assert read_all(repo, key, 15 << 20, 6 << 20) == data[15 << 20 : 21 << 20]
    assert read_all(repo, key) == data
    # a second upload of the same content stores nothing new
    before = repo.info().on_disk_bytes
    assert repo.put_stream(iter(chunks))[2] is False
    assert repo.info().on_disk_bytes <= before + 4096
    assert os.listdir(os.path.join(repo.path, "staging")) == []


def test_declared_large_upload_streams_straight_to_staging(repo):
    """With a declared size above the inline limit, the first chunk already goes to a
    staging file: nothing is gathered in memory first."""
    from hoard_server.storage.layout import RepositoryLayout
    from hoard_server.storage.packed import INLINE_LIMIT

    staging = RepositoryLayout(repo.path).staging_dir
    data = make_data(11, INLINE_LIMIT + (3 << 20), False)
    staged_after_first: list[list[str]] = []

    def chunks():
        for i in range(0, len(data), 1 << 20):
            yield data[i : i + (1 << 20)]
            if not staged_after_first:
                staged_after_first.append(os.listdir(staging))

    key, size, created = repo.put_stream(chunks(), expected_key=sha(data), size=len(data))
    assert (key, size, created) == (sha(data), len(data), True)
    assert len(staged_after_first[0]) == 1  # the upload was on disk after one chunk
    assert read_all(repo, key) == data
    assert os.listdir(staging) == []


def test_upload_sending_more_than_declared_fails_at_once(repo):
    consumed = []

    def chunks():
        for i in range(100):
            consumed.append(i)
            yield b"x" * 1000

    with pytest.raises(InvalidArgument, match="announced 1500 bytes") as caught:
        repo.put_stream(chunks(), size=1500)
    assert caught.value.reason == "SIZE_MISMATCH" and len(consumed) == 2
    assert repo.info().object_count == 0


def test_an_upload_is_hashed_once(repo, monkeypatch):
    from hoard_server.storage.packed import store

    calls = []
    real = store.key_of
    monkeypatch.setattr(store, "key_of", lambda data: calls.append(1) or real(data))
    data = make_data(12, 300_000, True)
    assert repo.put_stream([data[:100_000], data[100_000:]], expected_key=sha(data))[0] == sha(data)
    assert len(calls) == 1


def test_a_read_looks_the_index_up_once(repo, monkeypatch):
    from hoard_server.storage.index import ObjectIndex

    data = make_data(13, 5 * FRAME_SIZE + 123, True)
    ((key, _),) = repo.put_many([data])
    small = repo.put_many([b"small object " * 20])[0][0]
    lookups = []
    real = ObjectIndex.get_many
    monkeypatch.setattr(
        ObjectIndex, "get_many", lambda self, digests: lookups.append(1) or real(self, digests)
    )
    assert read_all(repo, key) == data
    assert (
        read_all(repo, key, FRAME_SIZE - 10, 2 * FRAME_SIZE)
        == data[FRAME_SIZE - 10 : 3 * FRAME_SIZE - 10]
    )
    assert read_all(repo, small) == b"small object " * 20
    assert dict(((k, c) for k, _, c in repo.read_many([key, small]))) == {
        key: data,
        small: b"small object " * 20,
    }
    assert len(lookups) == 4  # one per request: no pack was retired meanwhile


def test_empty_object_and_zero_length_ranges(repo):
    ((key, created),) = repo.put_many([b""])
    assert key == sha(b"") and created
    assert read_all(repo, key) == b""
    assert read_all(repo, key, 0, 0) == b""
    ((k2, _),) = repo.put_many([b"hello"])
    assert read_all(repo, k2, 5, 10) == b""
    assert read_all(repo, k2, 2, 0) == b""
    with pytest.raises(OutOfRange, match="past the end"):
        repo.read(k2, 6)
    with pytest.raises(OutOfRange):
        repo.read(key, 1)


def test_dedup_stores_each_distinct_object_once(repo):
    objs = [make_data(i % 10, 3000, True) for i in range(40)]
    results = repo.put_many(objs)
    assert sum(c for _, c in results) == 10
    assert [k for k, _ in results] == [sha(o) for o in objs]
    info = repo.info()
    assert info.object_count == 10
    assert info.raw_bytes == 10 * 3000


def test_concurrent_puts_of_overlapping_sets(repo):
    objs = [make_data(i, 2000 + i, True) for i in range(300)]

    def worker(seed):
        rng = random.Random(seed)
        batch = rng.sample(objs, 150)
        return repo.put_many(batch)

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(worker, range(16)) for r in rs]
    created = {}
    for key, c in results:
        created[key] = created.get(key, 0) + c
    assert all(v <= 1 for v in created.values())
    assert repo.info().object_count == len(created)
    for o in objs:
        if sha(o) in created:
            assert read_all(repo, sha(o)) == o


def test_hash_mismatch_and_size_mismatch_store_nothing(repo):
    with pytest.raises(InvalidArgument, match="not the expected key") as caught:
        repo.put_stream([b"abc"], expected_key="0" * 64)
    assert caught.value.reason == "HASH_MISMATCH"
    with pytest.raises(InvalidArgument, match="announced 10 bytes") as caught:
        repo.put_stream([b"abc"], size=10)
    assert caught.value.reason == "SIZE_MISMATCH"
    with pytest.raises(OutOfRange) as out_of_range:
        repo.read(repo.put_many([b"abc"])[0][0], 4)
    assert out_of_range.value.reason == "OFFSET_OUT_OF_RANGE"
    repo.delete_many([sha(b"abc")])
    big = make_data(3, 10 << 20, False)
    with pytest.raises(InvalidArgument, match="not the expected key"):
        repo.put_stream(
            [big[i : i + (1 << 20)] for i in range(0, len(big), 1 << 20)], expected_key="0" * 64
        )
    assert repo.info().object_count == 0
    assert os.listdir(os.path.join(repo.path, "staging")) == []


def test_has_stat_list_and_paging(repo):
    objs = [make_data(i, 100 + i, True) for i in range(250)]
    keys = [k for k, _ in repo.put_many(objs)]
    missing = [sha(b"missing %d" % i) for i in range(5)]
    assert repo.has_many(keys[:3] + missing + keys[3:6]) == [True] * 3 + [False] * 5 + [True] * 3
    assert sorted(repo.list_keys()) == sorted(keys)
    paged, token = [], ""
    while True:
        page = list(repo.list_keys(token, 100))
        paged += page
        if len(page) < 100:
            break
        token = page[-1]
    assert paged == sorted(keys)
    stats = repo.stat_many([keys[0], missing[0]])
    assert stats[0].exists and stats[0].raw_size == 100 and not stats[1].exists
    with pytest.raises(InvalidArgument, match="page token"):
        list(repo.list_keys("nonsense", 10))


def test_delete_is_logical_and_accounted(repo):
    objs = [make_data(i, 5000, True) for i in range(20)]
    keys = [k for k, _ in repo.put_many(objs)]
    ghost = sha(b"ghost")
    deleted, missing = repo.delete_many([*keys[:5], ghost], require_all=True)
    assert (deleted, missing) == ([], [ghost])
    assert repo.info().object_count == 20
    deleted, missing = repo.delete_many([*keys[:5], ghost])
    assert deleted == keys[:5] and missing == [ghost]
    info = repo.info()
    assert info.object_count == 15 and info.reclaimable_bytes > 0
    assert repo.has_many(keys[:6]) == [False] * 5 + [True]
    with pytest.raises(ObjectNotFound):
        repo.read(keys[0])
    with pytest.raises(ObjectNotFound) as exc:
        repo.read_many(keys[:2] + keys[10:12])
    assert set(exc.value.keys) == set(keys[:2])
    # a deleted object can be stored again
    assert repo.put_many([objs[0]])[0][1] is True
    assert read_all(repo, keys[0]) == objs[0]


def test_read_many_is_in_storage_order_and_complete(repo):
    objs = [make_data(i, 500 + 37 * i, i % 2 == 0) for i in range(200)]
    objs.append(make_data(999, 3 << 20, True))  # a framed one, inlined
    keys = [k for k, _ in repo.put_many(objs)]
    wanted = list(reversed(keys))
    got = list(repo.read_many(wanted, inline_limit=8 << 20))
    assert sorted(k for k, _, _ in got) == sorted(wanted)
    by_key = dict(zip(keys, objs, strict=True))
    assert all(data == by_key[k] for k, _, data in got)
    locations = [(s.pack_id,) for s in repo.stat_many([k for k, _, _ in got])]
    assert locations == sorted(locations)
    big = list(repo.read_many([keys[-1]], inline_limit=1 << 20))
    assert big == [(keys[-1], 3 << 20, None)]


def test_packs_roll_over(registry):
    repo = registry.create("small-packs")[0]
    objs = [os.urandom(300_000) for _ in range(60)]  # ~18 MiB, packs of 8 MiB
    for i in range(0, 60, 10):
        repo.put_many(objs[i : i + 10])
    info = repo.info()
    assert info.pack_count >= 3
    assert all(p.size <= (8 << 20) + 400_000 for p in info.packs)
    for o in objs:
        assert read_all(repo, sha(o)) == o


def test_dictionary_is_trained_and_used(registry):
    repo = registry.create("dict")[0]
    rng = random.Random(5)
    vocab = [rng.randbytes(4).hex() for _ in range(500)]

    def doc(i):
        return (" ".join(rng.choice(vocab) for _ in range(120)) + f" {i}").encode()

    first = [doc(i) for i in range(2500)]
    repo.put_many(first)
    from harness import wait_until

    wait_until(lambda: repo.info().has_dictionary, timeout=20, what="a trained dictionary")
    later = [doc(i) for i in range(2500, 2600)]
    keys = [k for k, _ in repo.put_many(later)]
    assert {s.encoding for s in repo.stat_many(keys)} == {"zstd-dict"}
    for k, o in zip(keys, later, strict=True):
        assert read_all(repo, k) == o
    # and after a restart the dictionary is loaded again
    path = repo.path
    registry.close()
    reg2 = RepositoryRegistry(os.path.dirname(os.path.dirname(path)))
    try:
        r2 = reg2.get("dict")
        assert all(read_all(r2, k) == o for k, o in zip(keys, later, strict=True))
    finally:
        reg2.close()


# -- recovery -----------------------------------------------------------------------------


def test_recovery_cuts_uncommitted_bytes_and_orphans(tmp_path):
    data_dir = str(tmp_path / "data")
    reg = RepositoryRegistry(data_dir)
    repo = reg.create("r")[0]
    objs = [make_data(i, 4000, True) for i in range(50)]
    keys = [k for k, _ in repo.put_many(objs)]
    pack = os.path.join(repo.path, "packs", "00000001.pack")
    committed = os.path.getsize(pack)
    reg.close()
    # what a crash mid-group leaves: bytes past the committed end, an unregistered pack,
    # a half-written upload in staging
    with open(pack, "ab") as fh:
        fh.write(RecordHeader(Encoding.RAW, b"\1" * 32, 10, 10).encode() + b"partial")
    orphan = os.path.join(repo.path, "packs", "00000009.pack")
    with open(orphan, "wb") as fh:
        fh.write(PACK_MAGIC + b"junk")
    with open(os.path.join(repo.path, "staging", "x.upload"), "wb") as fh:
        fh.write(b"half")
    reg = RepositoryRegistry(data_dir)
    try:
        repo = reg.get("r")
        assert os.path.getsize(pack) == committed
        assert not os.path.exists(orphan)
        assert os.listdir(os.path.join(repo.path, "staging")) == []
        assert all(read_all(repo, k) == o for k, o in zip(keys, objs, strict=True))
        assert repo.info().object_count == 50
        more = repo.put_many([b"after the crash"])
        assert read_all(repo, more[0][0]) == b"after the crash"
    finally:
        reg.close()


def test_erase_removes_everything(registry):
    repo, created = registry.create("gone")
    assert created and registry.create("gone")[1] is False
    repo.put_many([b"x" * 100])
    path = repo.path
    registry.erase("gone")
    assert not os.path.exists(path)
    assert "gone" not in registry.names()
    with pytest.raises(RepositoryNotFound):
        registry.get("gone")
    with pytest.raises(RepositoryNotFound):
        repo.put_many([b"y"])


def test_concurrent_submissions_share_group_commits():
    """Group commit on its own: many callers, few commits, each caller its own results."""
    import threading
    import time

    from hoard_server.storage.group_commit import GroupCommit

    groups: list[list[int]] = []

    def commit(items: list[int]) -> list[int]:
        time.sleep(0.01)  # an fsync
        groups.append(items)
        return [i * 2 for i in items]

    gc_ = GroupCommit(commit, name="test-group-commit")
    try:
        futures = [gc_.submit([i, i + 1000]) for i in range(50)]
        assert [f.result() for f in futures] == [[2 * i, 2 * (i + 1000)] for i in range(50)]
        assert gc_.groups_committed == len(groups) < 10, groups  # one commit per group
        # ``then`` runs on the writer thread after its group committed, and ends the group
        seen = []
        gc_.submit([1], then=lambda: seen.append(threading.current_thread().name)).result()
        assert seen == ["test-group-commit"]
        assert groups[-1] == [1]
    finally:
        gc_.close()
    with pytest.raises(RuntimeError):
        gc_.submit([1])


def test_concurrent_puts_are_all_durable(repo):
    datas = [b"object %d" % i for i in range(50)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda d: repo.put_many([d]), datas))
    assert [k for ((k, _),) in results] == [sha(d) for d in datas]
    assert repo.info().object_count == 50


def test_read_many_inlines_no_object_above_the_limit(repo):
    """``inline_limit`` holds for every encoding: a small object above it is not inlined
    either (the caller reads it on its own), as the protocol says."""
    small, tiny = b"s" * 5000, b"t" * 50
    keys = [k for k, _ in repo.put_many([small, tiny])]
    got = {k: (size, data) for k, size, data in repo.read_many(keys, inline_limit=100)}
    assert got[keys[0]] == (5000, None)
    assert got[keys[1]] == (50, tiny)
