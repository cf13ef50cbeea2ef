"""The SDK against a real daemon subprocess: AiiDA's repository-backend contract, the
extensions, the reader's cost per read, retries, and the CLI."""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
import threading

import grpc
import pytest

import hoard
from hoard.transport import channel_options

MiB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def sdk_client(hoard_daemon):
    with hoard.connect(hoard_daemon.target, timeout=30) as client:
        yield client


@pytest.fixture
def sdk_repo(sdk_client):
    repo = sdk_client.repository("default")
    repo.initialise()
    return repo


class CallLog(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
):
    """Records every RPC the SDK makes: (method name, request)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def _record(self, details, request) -> None:
        self.calls.append((details.method.rsplit("/", 1)[-1], request))

    def intercept_unary_unary(self, continuation, details, request):
        self._record(details, request)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation, details, request):
        self._record(details, request)
        return continuation(details, request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        self._record(details, None)
        return continuation(details, request_iterator)

    def take(self) -> list[tuple[str, object]]:
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture
def logged(hoard_daemon):
    """A repository whose client records its calls."""
    log = CallLog()
    channel = grpc.intercept_channel(
        grpc.insecure_channel(hoard_daemon.target, options=channel_options(5)), log
    )
    client = hoard.Client(channel, target=hoard_daemon.target)
    try:
        yield client.repository("default"), log
    finally:
        client.close()


# -- the repository --------------------------------------------------------------------------


def test_repository_lifecycle(sdk_client):
    repo = sdk_client.repository("lab")
    assert repo.uuid is None and not repo.is_initialised
    with pytest.raises(hoard.RepositoryNotFoundError):
        repo.put_object(b"x")
    repo.initialise()
    uuid = repo.uuid
    assert uuid and repo.is_initialised and repo.key_format == "sha256"
    repo.initialise()  # idempotent
    assert repo.uuid == uuid
    assert "lab" in {r.name for r in sdk_client.list_repositories()}
    assert sdk_client.get_repository("lab").uuid == uuid
    repo.put_object(b"x")
    repo.erase()
    assert repo.uuid is None
    repo.erase()  # erasing what is gone is fine
    with pytest.raises(hoard.RepositoryNotFoundError):
        sdk_client.erase_repository("lab")
    with pytest.raises(FileNotFoundError):
        sdk_client.get_repository("lab")


# -- writing and reading -----------------------------------------------------------------------


def test_put_and_get_round_trip_with_sha256_keys(sdk_repo, tmp_path):
    data = os.urandom(3 * MiB + 17)
    key = sdk_repo.put_object_from_filelike(io.BytesIO(data))
    assert key == sha(data)
    assert sdk_repo.get_object_content(key) == data
    assert sdk_repo.get_object_hash(key) == key
    path = tmp_path / "f.bin"
    path.write_bytes(b"file content")
    assert sdk_repo.put_object_from_file(path) == sha(b"file content")
    with open(path, "rb") as handle:
        handle.seek(5)
        assert sdk_repo.put_object_from_filelike(handle) == sha(b"content")
    with open(path, "rb", buffering=0) as raw:
        assert sdk_repo.put_object_from_filelike(raw) == sha(b"file content")
    assert sdk_repo.put_object(b"") == sha(b"")
    assert sdk_repo.get_object_content(sha(b"")) == b""
    assert sdk_repo.has_objects([key, sha(b"nope"), sha(b"")]) == [True, False, True]
    assert sdk_repo.has_object(key) and not sdk_repo.has_object(sha(b"nope"))


def test_put_objects_keeps_input_order_across_batches_and_big_objects(sdk_repo):
    rng = random.Random(7)
    contents = [rng.randbytes(rng.randint(0, 4000)) for _ in range(5000)]
    contents[10:10] = [os.urandom(5 * MiB)]  # streamed alone, between batched ones
    contents.append(contents[3])  # a duplicate
    contents.append(os.urandom(int(3.9 * MiB)))  # fills a batch on its own
    keys = sdk_repo.put_objects(iter(contents))
    assert keys == [sha(c) for c in contents]
    assert all(sdk_repo.has_objects(keys))


def test_read_ranges_and_errors(sdk_repo):
    data = os.urandom(2 * MiB + 5)
    key = sdk_repo.put_object(data)
    assert sdk_repo.read(key) == data
    assert sdk_repo.read(key, 100, 50) == data[100:150]
    assert sdk_repo.read(key, len(data) - 3, 100) == data[-3:]  # cut short, like a file
    with pytest.raises(hoard.OutOfRangeError) as caught:
        sdk_repo.read(key, len(data) + 1)
    assert isinstance(caught.value, ValueError)
    assert sdk_repo.has_object("not-a-key") is False  # AiiDA: any string may be asked about
    with pytest.raises(TypeError):
        sdk_repo.has_object(b"0" * 64)


def test_missing_objects_raise_file_not_found_in_aiida_words(sdk_repo):
    key = sha(b"never stored")
    message = f"object with key `{key}` does not exist."
    for call in (
        sdk_repo.get_object_content,
        sdk_repo.get_object_hash,
        sdk_repo.stat,
        sdk_repo.delete_object,
    ):
        with pytest.raises(FileNotFoundError) as caught:
            call(key)
        assert str(caught.value) == message
    with pytest.raises(FileNotFoundError, match=message), sdk_repo.open(key):
        pass


def test_open_is_a_seekable_buffered_reader(sdk_repo):
    data = os.urandom(5 * MiB) + b"line one\nline two\n"
    key = sdk_repo.put_object(data)
    with sdk_repo.open(key) as handle:
        assert isinstance(handle, io.BufferedReader)
        assert handle.seekable()
        assert handle.seek(0, io.SEEK_END) == len(data)
        handle.seek(-18, io.SEEK_END)
        assert handle.readline() == b"line one\n"
        assert handle.read() == b"line two\n"
        handle.seek(1000)
        handle.seek(24, io.SEEK_CUR)
        assert handle.read(4096) == data[1024:5120]
        assert handle.tell() == 5120
        handle.seek(0)
        assert handle.read() == data
        handle.seek(3 * MiB)
        buffer = bytearray(MiB)
        assert handle.readinto(buffer) == MiB and bytes(buffer) == data[3 * MiB : 4 * MiB]
        handle.seek(len(data) - 10)
        assert handle.read(100) == data[-10:]
        assert handle.read(1) == b""


def test_reader_fetches_about_what_is_read(logged):
    repo, log = logged
    data = os.urandom(16 * MiB)
    key = repo.put_object(data)
    log.take()
    with repo.open(key) as handle:
        (call,) = log.take()  # opening reads the head, which also says the size (and that
        assert call[0] == "ReadRange" and call[1].offset == 0  # the object exists)
        handle.seek(0, io.SEEK_END)
        handle.seek(-100, io.SEEK_CUR)
        handle.seek(9_000_001)
        assert log.take() == []  # seeking downloads nothing
        assert handle.read(4096) == data[9_000_001:9_004_097]
        (call,) = log.take()  # a random 4 KiB read is one unary ranged read ...
        assert call[0] == "ReadRange" and call[1].offset == 9_000_001
        assert call[1].length <= 8192  # ... of about the size asked for
        handle.seek(0)
        assert handle.read() == data
        (call,) = log.take()  # the rest, in one streaming Read
        assert call[0] == "Read" and not call[1].HasField("length")
        handle.seek(0)
        while handle.read(64 << 10):
            pass
        assert len(log.take()) < 20  # sequential reads are read ahead, not one call each


def test_a_ranged_read_is_one_round_trip(logged):
    from hoard.io import open_object

    repo, log = logged
    data = os.urandom(2 * MiB)
    key = repo.put_object(data)
    log.take()
    assert repo.read(key, 1_000_000, 100) == data[1_000_000:1_000_100]
    assert [name for name, _ in log.take()] == ["ReadRange"]
    # the objects API's reader opens without a call: a seek and a small read are one call
    with open_object(repo.objects, key) as handle:
        handle.seek(1_500_000)
        assert handle.read(10) == data[1_500_000:1_500_010]
        assert [name for name, _ in log.take()] == ["ReadRange"]
        assert handle.seek(0, io.SEEK_END) == len(data)  # the reply told the size
        assert log.take() == []


def test_the_lazy_reader_reports_a_missing_object_at_its_first_read(sdk_repo):
    from hoard.io import open_object

    with open_object(sdk_repo.objects, "0" * 64) as handle, pytest.raises(FileNotFoundError):
        handle.read(1)


def test_errors_carry_the_daemons_reason_and_details(sdk_client, sdk_repo):
    with pytest.raises(hoard.RepositoryNotFoundError) as caught:
        sdk_client.repository("nowhere").objects.has(["0" * 64])
    assert caught.value.reason == "REPOSITORY_NOT_FOUND"
    assert caught.value.details["repository"] == "nowhere"
    with pytest.raises(hoard.ObjectNotFoundError) as caught:
        sdk_repo.objects.read("0" * 64, 0, 1)
    assert caught.value.reason == "OBJECT_NOT_FOUND" and caught.value.keys == ["0" * 64]
    with pytest.raises(hoard.InvalidArgumentError) as caught:
        sdk_repo.objects.has(["not a key"])
    assert caught.value.reason and caught.value.reason != "OBJECT_NOT_FOUND"


def test_get_object_content_is_one_call(logged):
    repo, log = logged
    key = repo.put_object(os.urandom(3 * MiB))
    log.take()
    repo.get_object_content(key)
    assert [name for name, _ in log.take()] == ["Read"]


def test_iter_object_streams_yields_every_key_once_with_valid_handles(sdk_repo):
    small = [os.urandom(n) for n in (0, 1, 100, 70_000)]
    big = os.urandom(9 * MiB)  # over the default inline limit: read lazily
    keys = sdk_repo.put_objects([*small, big])
    seen = {}
    handles = []
    for key, handle in sdk_repo.iter_object_streams([*keys, keys[0]]):
        assert isinstance(handle, io.BufferedReader) and handle.seekable()
        handle.seek(0, io.SEEK_END)
        handle.seek(0)
        seen[key] = handle.read()
        handles.append(handle)
    assert seen == dict(zip(keys, [*small, big], strict=True))
    assert all(h.closed for h in handles)  # valid only during their step
    assert sdk_repo.get_objects_content(keys) == seen


def test_iter_object_streams_with_a_missing_key_raises(sdk_repo):
    key = sdk_repo.put_object(b"here")
    with pytest.raises(FileNotFoundError):
        for _ in sdk_repo.iter_object_streams([key, sha(b"missing")]):
            pass


def test_list_objects_streamed_and_paged(sdk_repo):
    keys = sorted(sdk_repo.put_objects([str(i).encode() for i in range(25)]))
    assert list(sdk_repo.list_objects()) == keys
    listed, token = [], ""
    while True:
        page, token = sdk_repo.list_objects_page(10, token)
        assert len(page) <= 10
        listed += page
        if not token:
            break
    assert listed == keys


def test_delete_objects_names_every_missing_key_and_deletes_nothing(sdk_repo):
    keys = sdk_repo.put_objects([b"a", b"b", b"c"])
    ghosts = [sha(b"ghost1"), sha(b"ghost2")]
    with pytest.raises(FileNotFoundError) as caught:
        sdk_repo.delete_objects([keys[0], *ghosts])
    assert all(g in str(caught.value) for g in ghosts)
    assert sorted(caught.value.keys) == sorted(ghosts)
    assert all(sdk_repo.has_objects(keys))
    assert sdk_repo.delete_objects(keys[:2]) == keys[:2]
    sdk_repo.delete_object(keys[2])
    assert sdk_repo.has_objects(keys) == [False, False, False]
    assert list(sdk_repo.list_objects()) == []


def test_stat_info_and_maintain(sdk_repo):
    text = b"compressible text " * 50_000
    key = sdk_repo.put_object(text)
    st = sdk_repo.stat(key)
    assert st.key == key and st.raw_size == len(text) and 0 < st.stored_size < len(text)
    assert sdk_repo.stat_many([key, sha(b"no")]) == [st, None]
    info = sdk_repo.get_info()
    for name in ("objects", "raw_bytes", "stored_bytes", "on_disk_bytes", "packs"):
        assert isinstance(info[name], int)
    assert info["objects"] == 1 and info["raw_bytes"] == len(text)
    assert info["compression_ratio"] > 1 and info["key_format"] == "sha256"
    assert info["uuid"] == sdk_repo.uuid
    assert isinstance(sdk_repo.get_info(detailed=True)["pack_details"], list)
    assert type(sdk_repo.get_info()) is dict  # AiiDA's contract
    reports = []
    last = sdk_repo.maintain(dry_run=True, live=True, progress=reports.append)
    assert reports and last == reports[-1] and "stage" in last
    assert isinstance(last, hoard.reports.MaintainProgress) and last.stage == last["stage"]
    typed = sdk_repo.admin.info(detailed=True)
    assert typed.object_count == 1 and typed.packs and typed.packs[0].live_bytes > 0
    assert typed.packs[0]["pack_id"] == typed.packs[0].pack_id


# -- retries -----------------------------------------------------------------------------------


class _PausingStream(io.RawIOBase):
    """A seekable binary stream that stops at ``pause_at`` bytes, the first time, until
    ``resume`` is set: the daemon can be killed while a put is surely in the middle."""

    def __init__(self, data: bytes, pause_at: int) -> None:
        self._data = io.BytesIO(data)
        self._pause_at = pause_at
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.seeks = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.seeks += 1
        return self._data.seek(offset, whence)

    def tell(self) -> int:
        return self._data.tell()

    def readinto(self, buffer) -> int:
        if self._data.tell() >= self._pause_at and not self.resume.is_set():
            self.paused.set()
            assert self.resume.wait(30), "the test never resumed the stream"
        return self._data.readinto(buffer)


def test_a_put_survives_a_daemon_restart(daemon_factory, tmp_path):
    daemon = daemon_factory(tmp_path / "data")  # the harness keeps its port across restarts
    data = os.urandom(30 * MiB)
    stream = _PausingStream(data, pause_at=5 * MiB)

    def crash_and_restart() -> None:
        assert stream.paused.wait(30), "the put never got going"
        daemon.kill()  # mid-upload: 5 MiB of 30 sent
        stream.resume.set()  # the SDK now finds the daemon gone, and retries
        daemon.start()

    bouncer = threading.Thread(target=crash_and_restart)
    with hoard.connect(daemon.target, retries=5) as client:
        repo = client.repository()
        bouncer.start()
        key = repo.put_object_from_filelike(stream)
        bouncer.join()
        assert stream.seeks >= 1  # the put was started over from the stream's start
        assert key == sha(data)
        assert repo.get_object_content(key) == data


# -- the command line ------------------------------------------------------------------------


def _hoard(target: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hoard.cli", "--target", target, *args],
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def test_cli_round_trip(hoard_daemon, tmp_path):
    target = hoard_daemon.target
    path = tmp_path / "in.bin"
    path.write_bytes(b"0123456789")
    key = sha(b"0123456789")

    run = _hoard(target, "put", str(path))
    assert run.returncode == 0 and run.stdout.decode() == f"{key}  {path}\n"
    run = _hoard(target, "put", stdin=b"from stdin")
    assert run.stdout.decode() == sha(b"from stdin") + "\n"

    assert _hoard(target, "cat", key).stdout == b"0123456789"
    assert _hoard(target, "get", key, "--offset", "2", "--length", "3").stdout == b"234"
    out = tmp_path / "out.bin"
    assert _hoard(target, "get", key, "-o", str(out)).returncode == 0
    assert out.read_bytes() == b"0123456789"

    ghost = sha(b"ghost")
    run = _hoard(target, "has", key, ghost)
    assert run.returncode == 1 and run.stdout.decode() == f"{key} yes\n{ghost} no\n"
    assert sorted(_hoard(target, "ls").stdout.decode().split()) == sorted([key, sha(b"from stdin")])
    assert len(_hoard(target, "ls", "--limit", "1").stdout.decode().split()) == 1
    assert b"encoding" in _hoard(target, "stat", key).stdout
    assert b'"objects": 2' in _hoard(target, "info", "--json").stdout

    run = _hoard(target, "rm", key, ghost)
    assert run.returncode == 1 and ghost in run.stderr.decode()
    run = _hoard(target, "get", key, "-o", str(tmp_path / "never"))
    assert run.returncode == 1
    assert run.stderr.decode() == f"hoard: object with key `{key}` does not exist.\n"
    assert not (tmp_path / "never").exists()

    assert _hoard(target, "repo", "create", "proj").returncode == 0
    assert b"proj" in _hoard(target, "repo", "ls").stdout
    assert _hoard(target, "-r", "proj", "put", stdin=b"x").returncode == 0
    assert _hoard(target, "repo", "rm", "proj").returncode == 0
    run = _hoard(target, "-r", "proj", "ls")
    assert run.returncode == 1 and run.stderr.startswith(b"hoard: repository 'proj'")
    assert b"Traceback" not in run.stderr
