"""The SDK's pure pieces, without a daemon: error mapping, argument checks, channel set-up,
reader positioning and the CLI's plumbing. Nothing here fakes the daemon; where a client is
needed it points at a closed port, so that any call that did reach the network would fail."""

from __future__ import annotations

import errno
import io
import json
import socket
import sys
import time

import grpc
import pytest

import hoard
from hoard import cli
from hoard.admin import backup_destination
from hoard.aiida import is_readable_byte_stream
from hoard.cli import output, serve
from hoard.errors import (
    AuthenticationError,
    DataCorruptionError,
    DeadlineExceededError,
    FailedPreconditionError,
    HoardError,
    InvalidArgumentError,
    NotFoundError,
    ObjectNotFoundError,
    OutOfRangeError,
    OverloadedError,
    PermissionDeniedError,
    RepositoryNotFoundError,
    ResourceExhaustedError,
    StorageFullError,
    UnavailableError,
    error_for_status,
    error_info,
    from_rpc_error,
)
from hoard.io import ObjectStream
from hoard.transport import (
    METHODS,
    RetryPolicy,
    channel_options,
    is_local_target,
    resolve_target,
    service_config,
)

KEY = "a" * 64


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def offline_repo():
    """A repository handle on a port where nothing listens."""
    with hoard.connect(_closed_port(), timeout=2, retries=0) as client:
        yield client.repository("default")


# -- error mapping ---------------------------------------------------------------------------

MAPPING = [
    (grpc.StatusCode.NOT_FOUND, "object not found: " + KEY, NotFoundError, FileNotFoundError),
    (grpc.StatusCode.INVALID_ARGUMENT, "bad key", InvalidArgumentError, ValueError),
    (grpc.StatusCode.OUT_OF_RANGE, "offset past end", OutOfRangeError, ValueError),
    (grpc.StatusCode.FAILED_PRECONDITION, "busy", FailedPreconditionError, RuntimeError),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "message too large", ResourceExhaustedError, RuntimeError),
    (grpc.StatusCode.DATA_LOSS, "bad frame", DataCorruptionError, OSError),
    (grpc.StatusCode.PERMISSION_DENIED, "reader only", PermissionDeniedError, PermissionError),
    (grpc.StatusCode.UNAUTHENTICATED, "no token", AuthenticationError, PermissionError),
    (grpc.StatusCode.UNAVAILABLE, "gone", UnavailableError, ConnectionError),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "slow", DeadlineExceededError, TimeoutError),
]


@pytest.mark.parametrize(("code", "message", "cls", "builtin"), MAPPING)
def test_status_codes_map_to_exceptions_that_keep_message_and_code(code, message, cls, builtin):
    exc = error_for_status(code, message)
    assert type(exc) is cls
    assert isinstance(exc, HoardError) and isinstance(exc, builtin)
    assert str(exc) == message
    assert exc.code is code


def test_the_reason_not_the_message_picks_the_exception():
    exc = error_for_status(
        grpc.StatusCode.NOT_FOUND, "no such thing", "REPOSITORY_NOT_FOUND", {"repository": "x"}
    )
    assert type(exc) is RepositoryNotFoundError and isinstance(exc, FileNotFoundError)
    assert exc.reason == "REPOSITORY_NOT_FOUND" and exc.details == {"repository": "x"}
    # a message that reads like one is not parsed
    plain = error_for_status(grpc.StatusCode.NOT_FOUND, "repository 'x' does not exist")
    assert type(plain) is NotFoundError and plain.reason == "" and plain.details == {}


def test_object_not_found_takes_its_keys_from_the_details():
    other = "b" * 64
    exc = error_for_status(
        grpc.StatusCode.NOT_FOUND, "2 objects", "OBJECT_NOT_FOUND", {"keys": f"{KEY},{other}"}
    )
    assert type(exc) is ObjectNotFoundError and exc.keys == [KEY, other]
    assert error_for_status(grpc.StatusCode.NOT_FOUND, f"not found: {KEY}").reason == ""


def test_an_error_info_trailer_is_decoded():
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2

    info = error_details_pb2.ErrorInfo(domain="hoard", reason="INVALID_KEY", metadata={"key": "k"})
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=3, message="bad key", details=[detail]).SerializeToString()
    trailers = [("grpc-retry-pushback-ms", "5"), ("grpc-status-details-bin", status)]
    assert error_info(trailers) == ("INVALID_KEY", {"key": "k"})
    assert error_info([("grpc-status-details-bin", b"\xff garbage")]) == ("", {})
    foreign = error_details_pb2.ErrorInfo(domain="googleapis.com", reason="OTHER")
    detail.Pack(foreign)
    status = status_pb2.Status(code=3, details=[detail]).SerializeToString()
    assert error_info([("grpc-status-details-bin", status)]) == ("", {})


def test_storage_full_carries_enospc_and_stays_readable():
    exc = error_for_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "no space left", "STORAGE_FULL")
    assert type(exc) is StorageFullError and isinstance(exc, OSError)
    assert exc.reason == "STORAGE_FULL" and exc.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert exc.errno == errno.ENOSPC
    assert str(exc) == "no space left"


def test_resource_exhausted_is_a_full_disk_only_when_the_daemon_says_so():
    busy = error_for_status(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "too many read streams", "OVERLOADED"
    )
    assert type(busy) is OverloadedError and not isinstance(busy, OSError)
    assert isinstance(busy, ResourceExhaustedError)
    # gRPC's own "message larger than max" has no reason: not a full disk either
    other = error_for_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max")
    assert type(other) is ResourceExhaustedError and not isinstance(other, StorageFullError)


def test_unmapped_codes_are_plain_hoard_errors():
    exc = error_for_status(grpc.StatusCode.INTERNAL, "internal error (KeyError): 'x'")
    assert type(exc) is HoardError
    assert exc.code is grpc.StatusCode.INTERNAL
    assert "INTERNAL" in str(error_for_status(grpc.StatusCode.INTERNAL, ""))


def test_a_real_failed_call_maps_to_unavailable():
    with grpc.insecure_channel(_closed_port()) as channel:
        call = channel.unary_unary("/hoard.v1.Objects/Has")
        with pytest.raises(grpc.RpcError) as caught:
            call(b"", timeout=5)
    exc = from_rpc_error(caught.value)
    assert isinstance(exc, UnavailableError) and isinstance(exc, ConnectionError)
    assert exc.code is grpc.StatusCode.UNAVAILABLE
    assert str(exc)


# -- AiiDA's byte-stream check ---------------------------------------------------------------


class _BinaryModeReader:
    mode = "rb"

    def read(self, size: int = -1) -> bytes:
        return b""


def test_binary_streams_are_accepted():
    assert is_readable_byte_stream(io.BytesIO(b"x"))
    assert is_readable_byte_stream(io.BufferedReader(io.BytesIO(b"x")))
    assert is_readable_byte_stream(_BinaryModeReader())
    with io.FileIO(__file__) as raw, open(__file__, "rb") as buffered:
        assert is_readable_byte_stream(raw) and is_readable_byte_stream(buffered)


@pytest.mark.parametrize("handle", [io.StringIO("x"), b"bytes", "text", object()])
def test_put_rejects_what_is_not_a_byte_stream_before_any_call(offline_repo, handle):
    with pytest.raises(TypeError, match="handle does not seem to be a byte stream"):
        offline_repo.put_object_from_filelike(handle)


def test_put_rejects_a_text_mode_file(offline_repo, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("text")
    with open(path) as handle, pytest.raises(TypeError, match=r"<class '_io.TextIOWrapper'>\.$"):
        offline_repo.put_object_from_filelike(handle)


def test_put_objects_rejects_non_bytes_before_any_call(offline_repo):
    with pytest.raises(TypeError, match="objects must be bytes"):
        offline_repo.put_objects(["text"])


def test_deleting_nothing_makes_no_call(offline_repo):
    assert offline_repo.delete_objects([]) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.maintain(dead_fraction=0), "dead_fraction"),
        (lambda r: r.maintain(dead_fraction=1.5), "dead_fraction"),
        (lambda r: r.maintain(max_packs=-1), "max_packs"),
        (lambda r: r.verify(sample=0), "sample"),
        (lambda r: r.verify(sample=1.01), "sample"),
        (lambda r: r.verify(pack_id=0), "pack_id"),
        (lambda r: r.backup(""), "destination"),
    ],
)
def test_maintenance_arguments_are_checked_before_any_call(offline_repo, call, message):
    with pytest.raises(ValueError, match=message):
        call(offline_repo)


def test_maintain_accepts_aiida_switches_it_ignores(offline_repo):
    # The arguments pass; only the absent daemon stops the call.
    with pytest.raises(ConnectionError):
        offline_repo.maintain(
            dry_run=True, live=True, compress=True, do_repack=True, clean_storage=True
        )


@pytest.mark.parametrize(
    "target",
    [
        "127.0.0.1:50051",
        "127.0.0.2:1",
        "localhost:50051",
        "[::1]:50051",
        "ipv4:127.0.0.1:1",
        "ipv6:[::1]:1",
        "dns:///localhost:50051",
        "dns:localhost:1",
        "unix:/run/hoard.sock",
        "unix:///run/hoard.sock",
        "unix-abstract:hoard",
    ],
)
def test_loopback_and_unix_targets_are_local(target):
    assert is_local_target(target)


@pytest.mark.parametrize(
    "target", ["10.0.0.5:50051", "hoard.example.org:443", "[2001:db8::1]:1", "dns:///db:1"]
)
def test_other_targets_are_remote(target):
    assert not is_local_target(target)


def test_backup_destination_is_made_absolute_only_for_a_local_daemon(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert backup_destination("127.0.0.1:1", "b") == str(tmp_path / "b")
    assert backup_destination("unix:/s", tmp_path / "x" / ".." / "y") == str(tmp_path / "y")
    assert backup_destination("remote.example:1", "b") == "b"
    assert backup_destination("remote.example:1", "/srv/backups/b") == "/srv/backups/b"
    with pytest.raises(TypeError):
        backup_destination("127.0.0.1:1", b"bytes")


def test_an_absent_daemon_raises_connection_error(offline_repo):
    with pytest.raises(ConnectionError):
        offline_repo.has_object(KEY)


# -- the object reader's positioning (no call is made: the port is closed) ---------------------


def test_reader_seeks_with_every_whence_without_reading(offline_repo):
    raw = ObjectStream(offline_repo.objects, KEY, 1000)
    with io.BufferedReader(raw) as handle:
        assert handle.seekable() and handle.readable()
        assert handle.seek(0, io.SEEK_END) == 1000
        assert handle.seek(-10, io.SEEK_CUR) == 990
        assert handle.seek(5) == 5
        assert handle.seek(7, io.SEEK_CUR) == 12
        assert handle.tell() == 12
        assert handle.seek(-1000, io.SEEK_END) == 0
        assert handle.seek(50, io.SEEK_END) == 1050
        assert handle.read() == b""  # past the end: nothing to fetch
        assert handle.read(10) == b""
        with pytest.raises((ValueError, OSError)):
            handle.seek(-1)
        assert handle.mode == "rb" and handle.name == KEY


def test_reader_of_an_empty_object_reads_nothing_without_a_call(offline_repo):
    with io.BufferedReader(ObjectStream(offline_repo.objects, KEY, 0)) as handle:
        assert handle.read() == b""
        assert handle.read(1) == b""
        assert handle.readinto(bytearray(4)) == 0


def test_closed_reader_refuses_io(offline_repo):
    raw = ObjectStream(offline_repo.objects, KEY, 10)
    raw.close()
    with pytest.raises(ValueError):
        raw.seek(0)
    with pytest.raises(ValueError):
        raw.readinto(bytearray(1))


# -- channel set-up ------------------------------------------------------------------------


def test_retry_policy_comes_from_the_protos_idempotency_levels():
    config = service_config(RetryPolicy.from_retries(5))
    (method_config,) = config["methodConfig"]
    names = {(n["service"], n["method"]) for n in method_config["name"]}
    replayable = {(m.service, m.name) for m in METHODS.values() if m.replayable}
    assert ("hoard.v1.Objects", "Delete") not in replayable
    assert ("hoard.v1.Repositories", "EraseRepository") not in replayable
    assert {("hoard.v1.Objects", "PutBatch"), ("hoard.v1.Objects", "Read")} <= names
    assert ("hoard.v1.Repositories", "CreateRepository") in names
    # gRPC retries what it can buffer; a streamed Put is replayed by the transport alone
    assert names == {(s, n) for s, n in replayable if n != "Put"}
    policy = method_config["retryPolicy"]
    # RESOURCE_EXHAUSTED only as far as the daemon's pushback allows (none for a full disk)
    # and CANCELLED: what a daemon stopping answers to calls it had not started
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "CANCELLED"]
    assert 2 <= policy["maxAttempts"] <= 5
    assert service_config(RetryPolicy.from_retries(0)) == {"methodConfig": []}


def test_channel_options_allow_64_mib_messages_and_retries():
    options = dict(channel_options(3))
    assert options["grpc.max_send_message_length"] == 64 << 20
    assert options["grpc.max_receive_message_length"] == 64 << 20
    assert options["grpc.enable_retries"] == 1
    assert json.loads(options["grpc.service_config"]) == service_config(RetryPolicy.from_retries(3))


def test_target_defaults_to_env_then_loopback(monkeypatch):
    monkeypatch.delenv("HOARD_TARGET", raising=False)
    assert resolve_target(None) == "127.0.0.1:50051"
    monkeypatch.setenv("HOARD_TARGET", "unix:/run/hoard.sock")
    assert resolve_target(None) == "unix:/run/hoard.sock"
    assert resolve_target("example:1") == "example:1"
    assert resolve_target("/tmp/h.sock") == "unix:/tmp/h.sock"


def test_repository_handle_needs_no_call():
    with hoard.connect(_closed_port()) as client:
        repo = client.repository("lab")
        assert repo.name == "lab" and repo.key_format == "sha256"


# -- CLI plumbing ----------------------------------------------------------------------------


def test_cli_serve_without_the_server_package_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "hoard_server", None)  # makes the import fail
    assert cli.main(["serve", "--listen", "127.0.0.1:0"]) == 2
    assert "pip install 'hoard[server]'" in capsys.readouterr().err


def test_cli_restore_without_the_server_package_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "hoard_server", None)
    target = _closed_port()  # restore is offline: it must not need a daemon
    assert cli.main(["--target", target, "restore", "b", "--data-dir", "d"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'hoard[server]'" in err and "cannot reach" not in err


def test_cli_restore_has_its_own_repository_option():
    args = cli.build_parser().parse_args(["-r", "lab", "restore", "b", "--data-dir", "d"])
    assert args.restore_as is None and args.repository == "lab"
    args = cli.build_parser().parse_args(["restore", "b", "--data-dir", "d", "--repository", "x"])
    assert args.restore_as == "x" and args.backup_dir == "b" and args.data_dir == "d"


@pytest.mark.parametrize(
    "argv",
    [
        ["maintain", "--dead-fraction", "0"],
        ["maintain", "--dead-fraction", "2"],
        ["maintain", "--max-packs", "0"],
        ["verify", "--sample", "x"],
        ["verify", "--pack", "-1"],
        ["restore", "b"],  # --data-dir is required
    ],
)
def test_cli_rejects_bad_maintenance_options(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.build_parser().parse_args(argv)
    assert caught.value.code == 2


def test_cli_dates_are_readable():
    assert output.when(None) == "never"
    assert output.when(0.0) == "never"
    text = output.when(time.time() - 90)
    assert text.startswith(time.strftime("%Y-")) and text.endswith("(90 s ago)")
    assert output.when(time.time() - 3 * 86400).endswith("(3 days ago)")


def test_cli_progress_without_a_terminal_prints_lines(capsys):
    with output.Progress("obj", min_interval=3600) as bar:
        bar.update("verify", 1, 10, "", "first")
        bar.update("verify", 2, 10, "", "throttled")
        bar.write("KEY  pack 1: bad")
        bar.update("verify", 10, 10, "", "last", final=True)
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["first", "last"]
    assert captured.out == "KEY  pack 1: bad\n"


def test_cli_finds_serve_after_global_options():
    assert serve.find_serve(["--target", "x:1", "serve", "--listen", "y"]) == 2
    assert serve.find_serve(["-r", "serve", "ls"]) is None  # "serve" is -r's value here
    assert serve.find_serve(["put", "serve"]) is None


def test_cli_reports_an_absent_daemon_without_a_traceback(capsys):
    target = _closed_port()
    assert cli.main(["--target", target, "--timeout", "2", "has", KEY]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hoard: cannot reach the daemon at {target}")
    assert "Traceback" not in err


def test_cli_parser_knows_every_subcommand():
    parser = cli.build_parser()
    for argv in (
        ["put", "-"],
        ["get", KEY, "-o", "f", "--offset", "1", "--length", "2"],
        ["cat", KEY],
        ["has", KEY, KEY],
        ["stat", KEY],
        ["ls", "--limit", "3"],
        ["rm", KEY],
        ["info", "--detailed", "--json"],
        ["maintain", "--dry-run"],
        ["maintain", "--dead-fraction", "0.5", "--max-packs", "3"],
        ["verify"],
        ["verify", "--pack", "2", "--sample", "0.1"],
        ["backup", "/srv/backups/x"],
        ["restore", "/srv/backups/x", "--data-dir", "d", "--repository", "y"],
        ["repo", "create", "x"],
        ["repo", "ls"],
        ["repo", "rm", "x"],
    ):
        assert callable(parser.parse_args(argv).run)


def test_the_retry_table_in_the_docs_is_the_protos():
    """docs/architecture.md lists which calls are retried; the protos decide."""
    import pathlib
    import re

    from google.protobuf import descriptor_pb2

    from hoard.transport import METHODS

    doc = (pathlib.Path(__file__).parent.parent / "docs" / "architecture.md").read_text()
    table = doc.split("<!-- retry-table")[1].split("<!-- end retry-table -->")[0]
    rows = dict(re.findall(r"^\| (\w+\.\w+) \| (\w+) \|", table, re.M))
    levels = descriptor_pb2.MethodOptions.IdempotencyLevel
    assert rows == {name: levels.Name(m.idempotency_level) for name, m in METHODS.items()}
    for name, m in METHODS.items():
        retried = re.search(rf"^\| {re.escape(name)} \| \w+ \| (yes|no)", table, re.M)
        assert retried and (retried.group(1) == "yes") == m.replayable, name
