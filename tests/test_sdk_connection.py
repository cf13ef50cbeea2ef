"""How the SDK and the CLI make a connection, without a daemon: where the token and TLS files
come from, the refusal to send a token in clear text to another host, the token on the wire,
and the messages of failures to get in."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

import hoard
from hoard import errors
from hoard.cli import main as cli_main
from hoard.credentials import ENVIRONMENT, Credentials
from hoard.errors import Endpoint, from_rpc_error
from hoard.v1 import objects_pb2

# -- where settings come from -------------------------------------------------------------------


def test_arguments_beat_the_environment(tmp_path: Path) -> None:
    env = {name: f"/env/{name}" for name in ENVIRONMENT.values()}
    env["HOARD_TOKEN"] = "from-env"
    found = Credentials.resolve(
        token="from-arg", tls_ca="ca.pem", tls_cert="c.pem", tls_key="k.pem", environ=env
    )
    assert (found.token, found.tls_ca, found.tls_cert, found.tls_key) == (
        "from-arg",
        "ca.pem",
        "c.pem",
        "k.pem",
    )
    assert found.tls_server_name == "/env/HOARD_TLS_SERVER_NAME"  # not given: the variable


def test_every_setting_falls_back_to_its_variable(tmp_path: Path) -> None:
    env = {var: f"value of {var}" for var in ENVIRONMENT.values() if var != "HOARD_TOKEN_FILE"}
    found = Credentials.resolve(environ=env)
    assert found.token == "value of HOARD_TOKEN" and found.token_source == "HOARD_TOKEN"
    assert found.tls_ca == "value of HOARD_TLS_CA"
    assert found.tls_cert == "value of HOARD_TLS_CERT"
    assert found.tls_key == "value of HOARD_TLS_KEY"
    assert found.tls_server_name == "value of HOARD_TLS_SERVER_NAME"
    assert found.tls


def test_a_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("hoard_secret\n")
    by_arg = Credentials.resolve(token_file=str(path), environ={"HOARD_TOKEN": "env"})
    assert by_arg.token == "hoard_secret" and str(path) in by_arg.token_source
    by_env = Credentials.resolve(environ={"HOARD_TOKEN_FILE": str(path)})
    assert by_env.token == "hoard_secret" and "HOARD_TOKEN_FILE" in by_env.token_source
    # HOARD_TOKEN beats HOARD_TOKEN_FILE; token= beats token_file=
    both = {"HOARD_TOKEN": "env", "HOARD_TOKEN_FILE": str(path)}
    assert Credentials.resolve(environ=both).token == "env"
    assert Credentials.resolve(token="arg", token_file=str(path), environ={}).token == "arg"


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_an_unusable_token_file_is_named(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(errors.ConnectionSettingsError, match=str(path)) as caught:
        Credentials.resolve(token_file=str(path), environ={})
    assert isinstance(caught.value, ValueError)


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(errors.ConnectionSettingsError, match="tls_cert and tls_key"):
        Credentials.resolve(tls_cert="c.pem", environ={})
    with pytest.raises(errors.ConnectionSettingsError, match="tls_cert and tls_key"):
        Credentials.resolve(environ={"HOARD_TLS_KEY": "k.pem"})


def test_nothing_given_is_a_plain_channel_without_metadata() -> None:
    found = Credentials.resolve(environ={})
    assert not found.tls and found.metadata() == ()
    assert Credentials(token="t").metadata() == (("authorization", "Bearer t"),)


def test_an_unreadable_ca_is_named_at_connect(tmp_path: Path) -> None:
    missing = str(tmp_path / "ca.pem")
    with pytest.raises(errors.ConnectionSettingsError, match=f"TLS CA {missing}"):
        hoard.connect("127.0.0.1:1", tls_ca=missing)


# -- no token in clear text to another host -----------------------------------------------------


@pytest.mark.parametrize("target", ["10.1.2.3:50051", "store.lab.example:50051", "[2001:db8::1]:1"])
def test_a_token_over_plain_tcp_to_another_host_is_refused(target: str) -> None:
    with pytest.raises(errors.ConnectionSettingsError) as caught:
        hoard.connect(target, token="hoard_secret")
    message = str(caught.value)
    assert target in message and "tls_ca" in message and "insecure=True" in message
    assert "hoard_secret" not in message
    hoard.connect(target, token="hoard_secret", insecure=True).close()  # said so: allowed


@pytest.mark.parametrize("target", ["127.0.0.1:50051", "localhost:1", "[::1]:2", "unix:/x.sock"])
def test_a_token_to_this_host_or_over_tls_is_fine(target: str, tmp_path: Path) -> None:
    Credentials(token="t").check(target)
    Credentials(token="t", tls_ca="ca.pem").check("10.1.2.3:50051")
    Credentials().check("10.1.2.3:50051")  # no token, nothing to leak


# -- the token on the wire ----------------------------------------------------------------------


class _Recorder:
    """An in-process gRPC server answering Objects.Has and Objects.List, keeping the
    metadata of each call."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def has(self, request: objects_pb2.HasRequest, context: grpc.ServicerContext) -> Any:
        self.seen.append(dict(context.invocation_metadata()))
        return objects_pb2.HasResponse(exists=[False] * len(request.keys))

    def list(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self.seen.append(dict(context.invocation_metadata()))
        yield objects_pb2.ListResponse()


@pytest.fixture
def recorder() -> Iterator[tuple[_Recorder, str]]:
    record = _Recorder()
    handler = grpc.method_handlers_generic_handler(
        "hoard.v1.Objects",
        {
            "Has": grpc.unary_unary_rpc_method_handler(
                record.has,
                objects_pb2.HasRequest.FromString,
                objects_pb2.HasResponse.SerializeToString,
            ),
            "List": grpc.unary_stream_rpc_method_handler(
                record.list,
                objects_pb2.ListRequest.FromString,
                objects_pb2.ListResponse.SerializeToString,
            ),
        },
    )
    server = grpc.server(ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield record, f"127.0.0.1:{port}"
    server.stop(0).wait()


def test_the_token_goes_with_every_call(recorder: tuple[_Recorder, str], tmp_path: Path) -> None:
    record, target = recorder
    with hoard.connect(target, token="hoard_secret") as client:
        repo = client.repository("default")
        assert repo.has_objects(["0" * 64]) == [False]
        assert list(repo.list_objects()) == []
    assert [seen.get("authorization") for seen in record.seen] == ["Bearer hoard_secret"] * 2
    record.seen.clear()
    with hoard.connect(target) as client:
        client.repository("default").has_object("0" * 64)
    assert "authorization" not in record.seen[0]


# -- messages -----------------------------------------------------------------------------------


class _Failed(grpc.RpcError):
    """A failed call as grpc hands it over: code, details, metadata."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        reason: str = "",
        info: dict[str, str] | None = None,
        initial: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._code, self._details, self._initial = code, details, tuple(initial)
        self._trailing: tuple[tuple[str, str | bytes], ...] = ()
        if reason:
            detail = any_pb2.Any()
            detail.Pack(
                error_details_pb2.ErrorInfo(reason=reason, domain="hoard", metadata=info or {})
            )
            status = status_pb2.Status(code=code.value[0], message=details, details=[detail])
            self._trailing = (("grpc-status-details-bin", status.SerializeToString()),)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._initial

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._trailing


SERVER = Endpoint("store.lab.example:50051", tls=True)


def test_no_token_says_how_to_give_one() -> None:
    exc = from_rpc_error(
        _Failed(grpc.StatusCode.UNAUTHENTICATED, "no token", "TOKEN_MISSING"), SERVER
    )
    assert isinstance(exc, errors.AuthenticationError) and isinstance(exc, PermissionError)
    for words in (SERVER.target, "token=", "--token", "HOARD_TOKEN", "HOARD_TOKEN_FILE"):
        assert words in str(exc)


def test_an_unknown_token_says_where_it_came_from() -> None:
    given = Endpoint(SERVER.target, tls=True, token="HOARD_TOKEN")
    exc = from_rpc_error(
        _Failed(grpc.StatusCode.UNAUTHENTICATED, "unknown token", "TOKEN_UNKNOWN"), given
    )
    assert isinstance(exc, errors.AuthenticationError)
    assert "does not know the token from HOARD_TOKEN" in str(exc) and SERVER.target in str(exc)


def test_a_missing_role_names_server_repository_role_and_token() -> None:
    failed = _Failed(
        grpc.StatusCode.PERMISSION_DENIED,
        "token 'bob' lacks write on 'lab'",
        "ROLE_MISSING",
        {"repository": "lab", "role": "ROLE_WRITE", "token": "bob"},
    )
    exc = from_rpc_error(failed, SERVER)
    assert isinstance(exc, errors.AccessDeniedError) and isinstance(exc, PermissionError)
    assert exc.details == {"repository": "lab", "role": "ROLE_WRITE", "token": "bob"}
    for words in ("'bob'", "'lab'", "write role", SERVER.target):
        assert words in str(exc)


def test_the_request_id_is_kept_and_shown() -> None:
    failed = _Failed(
        grpc.StatusCode.NOT_FOUND,
        "repository 'x' does not exist",
        "REPOSITORY_NOT_FOUND",
        initial=(("x-request-id", "r-123"),),
    )
    exc = from_rpc_error(failed, SERVER)
    assert isinstance(exc, errors.RepositoryNotFoundError)
    assert exc.request_id == "r-123" and str(exc).endswith("(request id r-123)")
    assert exc.message == "repository 'x' does not exist"


_FAILED = "failed to connect to all addresses; last error: "
_HANDSHAKE = _FAILED + "UNKNOWN: ipv4:10.0.0.1:50051: Tls handshake failed (TSI_PROTOCOL_FAILURE): "


@pytest.mark.parametrize(
    ("details", "tls", "cert", "words"),
    [
        (_HANDSHAKE + "SSL_ERROR_SSL: ...:CERTIFICATE_VERIFY_FAILED: unable to get local issuer",
         True, "", "not signed by the CA given"),
        (_FAILED + "UNKNOWN: ipv4:10.0.0.1:50051: Custom verification check failed with error: "
         "UNAUTHENTICATED: Hostname Verification Check failed.", True, "", "tls_server_name"),
        (_HANDSHAKE + "SSL_ERROR_SSL: ...:WRONG_VERSION_NUMBER: Invalid certificate verification",
         True, "", "does not speak TLS"),
        (_FAILED + "UNAVAILABLE: ipv4:10.0.0.1:50051: Socket closed", False, "", "tls_ca="),
        (_FAILED + "UNAVAILABLE: ipv4:10.0.0.1:50051: Socket closed", True, "", "tls_cert="),
        (_FAILED + "UNAVAILABLE: ipv4:10.0.0.1:50051: Socket closed", True, "me.pem",
         "refused the client certificate me.pem"),
    ],
)  # fmt: skip
def test_tls_failures_say_the_likely_cause(details: str, tls: bool, cert: str, words: str) -> None:
    exc = from_rpc_error(
        _Failed(grpc.StatusCode.UNAVAILABLE, details), Endpoint(SERVER.target, tls, cert)
    )
    assert isinstance(exc, errors.TLSError) and isinstance(exc, errors.UnavailableError)
    assert words in str(exc) and SERVER.target in str(exc)


@pytest.mark.parametrize(
    "details",
    [
        _FAILED
        + "UNKNOWN: ipv4:10.0.0.1:50051: Failed to connect to remote host: Connection refused",
        "Socket closed",  # a connection that went away mid-call
    ],
)
def test_a_daemon_away_is_no_tls_error(details: str) -> None:
    exc = from_rpc_error(_Failed(grpc.StatusCode.UNAVAILABLE, details), SERVER)
    assert type(exc) is errors.UnavailableError


# -- the command line ---------------------------------------------------------------------------


def test_the_cli_passes_its_flags_and_says_what_is_wrong_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_text("hoard_secret\n")
    code = cli_main(["--target", "10.1.2.3:50051", "--token-file", str(token), "has", "0" * 64])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("hoard: refusing to send the token from token file") and "10.1.2.3" in err
    code = cli_main(["--target", "127.0.0.1:1", "--tls-cert", str(token), "has", "0" * 64])
    err = capsys.readouterr().err
    assert code == 1 and "tls_cert and tls_key" in err and err.count("\n") == 1


def test_the_cli_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOARD_TOKEN", "hoard_secret")
    code = cli_main(["--target", "10.1.2.3:50051", "has", "0" * 64])
    assert code == 1 and "token from HOARD_TOKEN" in capsys.readouterr().err


def test_a_token_file_under_home_may_be_written_with_a_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "token").write_text("hoard_home\n")
    assert Credentials.resolve(environ={"HOARD_TOKEN_FILE": "~/token"}).token == "hoard_home"
