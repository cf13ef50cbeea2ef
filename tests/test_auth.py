"""Authentication and roles through a real daemon with a tokens file: every RPC of every
hoard.v1 service, raw gRPC with the ``authorization`` metadata."""

from __future__ import annotations

import importlib
import pkgutil
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from harness.daemon import DaemonProcess, DaemonStartError

import hoard.v1
from hoard.v1 import access_pb2, objects_pb2, repositories_pb2
from hoard_server.auth.access import AccessPolicy, MissingRole, render_markdown
from hoard_server.auth.tokens import Role, add_token
from hoard_server.daemon.services import SERVICES

ROOT = Path(__file__).resolve().parent.parent
DENIALS = ("TOKEN_MISSING", "TOKEN_UNKNOWN", "ROLE_MISSING")


def _hoard_methods() -> list[MethodDescriptor]:
    """Every rpc of every service the hoard.v1 package declares."""
    methods = []
    for info in pkgutil.iter_modules(hoard.v1.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"hoard.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            methods.extend(service.methods)
    return methods


METHODS = _hoard_methods()
ROLES = {m.full_name: Role(m.GetOptions().Extensions[access_pb2.role] or 1) for m in METHODS}


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def _names_repository(method: MethodDescriptor) -> bool:
    return _minimal_request(method, "lab").ByteSize() > 0


def _minimal_request(method: MethodDescriptor, repository: str) -> Any:
    """The input message with its repository (at the top, or in the message field that has
    one) set and nothing else."""
    request = message_factory.GetMessageClass(method.input_type)()
    for field in method.input_type.fields:
        if field.name == "repository":
            request.repository = repository
        elif field.message_type is not None and "repository" in field.message_type.fields_by_name:
            getattr(request, field.name).repository = repository
    return request


def call(channel: grpc.Channel, method: MethodDescriptor, requests: list[Any], token: str | None):
    """Call ``method`` with ``requests`` (one for unary input); the RpcError, or None."""
    out = message_factory.GetMessageClass(method.output_type)
    kwargs: dict[str, Any] = {
        "timeout": 20,
        "metadata": [("authorization", f"Bearer {token}")] if token else None,
    }
    kind = (
        ("stream" if method.client_streaming else "unary")
        + "_"
        + ("stream" if method.server_streaming else "unary")
    )
    stub = getattr(channel, kind)(
        _path(method),
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=out.FromString,
    )
    arg = iter(requests) if method.client_streaming else requests[0]
    try:
        reply = stub(arg, **kwargs)
        if method.server_streaming:
            for _ in reply:
                pass
    except grpc.RpcError as exc:
        return exc
    return None


def reason_of(exc: grpc.RpcError) -> str:
    status = rpc_status.from_call(exc)
    if status is None:
        return ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def info_of(exc: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(exc)
    assert status is not None, exc
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return dict(info.metadata)


# -- the daemon: one for the module, tokens made before it starts --------------------------

TOKEN_ROLES = {
    "root": {"*": Role.ADMIN},
    "reader": {"lab": Role.READ},
    "writer": {"lab": Role.WRITE},
    "labadmin": {"lab": Role.ADMIN},
    "outsider": {"other": Role.ADMIN},
}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, dict]]:
    base = tmp_path_factory.mktemp("auth")
    tokens_file = str(base / "tokens.toml")
    tokens = {name: add_token(tokens_file, name, roles) for name, roles in TOKEN_ROLES.items()}
    daemon = DaemonProcess(str(base / "data"), "--tokens-file", tokens_file)
    daemon.start()
    try:
        yield daemon, tokens
    finally:
        daemon.stop()
        daemon.kill()


@pytest.fixture
def channel(secured: tuple[DaemonProcess, dict]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(secured[0].target) as ch:
        yield ch


@pytest.fixture
def tokens(secured: tuple[DaemonProcess, dict], channel: grpc.Channel) -> dict[str, str]:
    """The tokens by name; repositories lab and other exist (a test may have erased them)."""
    create = channel.unary_unary(
        "/hoard.v1.Repositories/CreateRepository",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=repositories_pb2.RepositoryInfo.FromString,
    )
    has = channel.unary_unary(
        "/hoard.v1.Objects/Has",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=objects_pb2.HasResponse.FromString,
    )
    auth = [("authorization", f"Bearer {secured[1]['root']}")]
    for name in ("lab", "other"):
        create(repositories_pb2.CreateRepositoryRequest(repository=name), metadata=auth)
        has(objects_pb2.HasRequest(repository=name), metadata=auth, timeout=10)
    return secured[1]


ids = [m.full_name for m in METHODS]


# -- every RPC ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS, ids=ids)
def test_without_a_token_every_rpc_is_unauthenticated(channel, tokens, method):
    exc = call(channel, method, [_minimal_request(method, "lab")], None)
    assert exc is not None and exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc
    assert reason_of(exc) == "TOKEN_MISSING"
    assert "authorization: Bearer" in exc.details()


@pytest.mark.parametrize(
    "value, reason",
    [
        ("Basic dXNlcjpwYXNz", "TOKEN_MISSING"),
        ("Bearer", "TOKEN_MISSING"),
        ("Bearer   ", "TOKEN_MISSING"),
        ("bearer hoard_unknown", "TOKEN_UNKNOWN"),
    ],
)
def test_an_authorization_that_is_no_bearer_token_is_missing_one(channel, tokens, value, reason):
    has = channel.unary_unary(
        "/hoard.v1.Objects/Has",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=objects_pb2.HasResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as refused:
        has(objects_pb2.HasRequest(repository="lab"), metadata=[("authorization", value)])
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(refused.value) == reason


def test_the_scheme_is_case_insensitive(channel, tokens):
    has = channel.unary_unary(
        "/hoard.v1.Objects/Has",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=objects_pb2.HasResponse.FromString,
    )
    has(
        objects_pb2.HasRequest(repository="lab"),
        metadata=[("authorization", f"bearer {tokens['reader']}")],
        timeout=10,
    )


@pytest.mark.parametrize("method", METHODS, ids=ids)
def test_an_unknown_token_is_unauthenticated(channel, tokens, method):
    exc = call(channel, method, [_minimal_request(method, "lab")], "hoard_not-a-known-token")
    assert exc is not None and exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc
    assert reason_of(exc) == "TOKEN_UNKNOWN"


@pytest.mark.parametrize(
    "method", [m for m in METHODS if ROLES[m.full_name] > Role.READ], ids=lambda m: m.full_name
)
def test_a_read_only_token_cannot_write_or_administer(channel, tokens, method):
    exc = call(channel, method, [_minimal_request(method, "lab")], tokens["reader"])
    assert exc is not None and exc.code() == grpc.StatusCode.PERMISSION_DENIED, exc
    assert reason_of(exc) == "ROLE_MISSING"
    need = ROLES[method.full_name].label
    assert info_of(exc) == {"repository": "lab", "role": need, "token": "reader"}
    assert f"token 'reader' has read on 'lab' but {_path(method)[1:]} needs {need}" in (
        exc.details()
    )
    assert f"hoard token add NAME --role lab={need}" in exc.details()


@pytest.mark.parametrize(
    "method", [m for m in METHODS if ROLES[m.full_name] == Role.ADMIN], ids=lambda m: m.full_name
)
def test_a_write_token_cannot_administer(channel, tokens, method):
    exc = call(channel, method, [_minimal_request(method, "lab")], tokens["writer"])
    assert exc is not None and exc.code() == grpc.StatusCode.PERMISSION_DENIED, exc
    assert reason_of(exc) == "ROLE_MISSING"


@pytest.mark.parametrize("method", METHODS, ids=ids)
def test_a_token_for_another_repository_is_denied(channel, tokens, method):
    exc = call(channel, method, [_minimal_request(method, "lab")], tokens["outsider"])
    if not _names_repository(method):  # ListRepositories: any known token
        assert exc is None or reason_of(exc) not in DENIALS, exc
        return
    assert exc is not None and exc.code() == grpc.StatusCode.PERMISSION_DENIED, exc
    assert reason_of(exc) == "ROLE_MISSING"
    assert "token 'outsider' has no role on 'lab'" in exc.details()


@pytest.mark.parametrize("method", METHODS, ids=ids)
def test_the_right_role_lets_every_rpc_through(channel, tokens, method):
    """The minimal request may well be invalid: any answer but the three refusals (and
    UNAUTHENTICATED) proves that the check let it through."""
    name = "labadmin" if ROLES[method.full_name] == Role.ADMIN else "writer"
    if ROLES[method.full_name] == Role.READ:
        name = "reader"
    exc = call(channel, method, [_minimal_request(method, "lab")], tokens[name])
    if exc is not None:
        assert exc.code() != grpc.StatusCode.UNAUTHENTICATED, exc
        assert reason_of(exc) not in DENIALS, exc


def test_a_request_naming_no_repository_needs_a_token_with_every_repository(channel, tokens):
    has = next(m for m in METHODS if m.full_name == "hoard.v1.Objects.Has")
    request = message_factory.GetMessageClass(has.input_type)()
    exc = call(channel, has, [request], tokens["reader"])
    assert exc is not None and reason_of(exc) == "ROLE_MISSING"
    assert "names no repository" in exc.details() and "roles only on lab" in exc.details()
    exc = call(channel, has, [request], tokens["root"])  # `*`: the servicer's own answer
    assert exc is not None and exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc


def test_a_token_on_every_repository_reaches_any(channel, tokens):
    put = next(m for m in METHODS if m.full_name == "hoard.v1.Objects.PutBatch")
    request = objects_pb2.PutBatchRequest(repository="other", objects=[b"x"])
    assert call(channel, put, [request], tokens["root"]) is None


# -- streams ------------------------------------------------------------------------------


def _method(full_name: str) -> MethodDescriptor:
    return next(m for m in METHODS if m.full_name == full_name)


def test_a_stream_that_turns_to_a_forbidden_repository_is_refused(channel, tokens):
    put = _method("hoard.v1.Objects.Put")
    messages = [
        objects_pb2.PutRequest(header=objects_pb2.PutHeader(repository="lab")),
        objects_pb2.PutRequest(chunk=b"abc"),
        objects_pb2.PutRequest(header=objects_pb2.PutHeader(repository="other")),
        objects_pb2.PutRequest(finish=objects_pb2.PutFinish(size=3)),
    ]
    exc = call(channel, put, messages, tokens["writer"])
    assert exc is not None and exc.code() == grpc.StatusCode.PERMISSION_DENIED, exc
    assert reason_of(exc) == "ROLE_MISSING"
    assert "token 'writer' has no role on 'other'" in exc.details()
    # the same stream without the turn is stored
    assert call(channel, put, [messages[0], messages[1], messages[3]], tokens["writer"]) is None


def test_an_import_stream_that_turns_to_a_forbidden_repository_is_refused(channel, tokens):
    from hoard.v1 import datasets_pb2

    imp = _method("hoard.v1.DatasetFiles.ImportFile")
    header = datasets_pb2.ImportHeader
    messages = [
        datasets_pb2.ImportRequest(header=header(repository="lab", path="a.h5")),
        datasets_pb2.ImportRequest(header=header(repository="other", path="a.h5")),
        datasets_pb2.ImportRequest(chunk=b"\x89HDF\r\n\x1a\n"),
    ]
    exc = call(channel, imp, messages, tokens["writer"])
    assert exc is not None and exc.code() == grpc.StatusCode.PERMISSION_DENIED, exc
    assert info_of(exc)["repository"] == "other"


def test_a_stream_whose_first_message_names_no_repository_is_checked_against_none(channel, tokens):
    put = _method("hoard.v1.Objects.Put")
    exc = call(channel, put, [objects_pb2.PutRequest(chunk=b"abc")], tokens["writer"])
    assert exc is not None and reason_of(exc) == "ROLE_MISSING"


# -- health, reflection, listing ------------------------------------------------------------


def test_health_needs_no_token(channel, tokens):
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_needs_a_known_token(channel, tokens):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    ask = [reflection_pb2.ServerReflectionRequest(list_services="")]
    with pytest.raises(grpc.RpcError) as refused:
        list(stub.ServerReflectionInfo(iter(ask), timeout=10))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    auth = [("authorization", f"Bearer {tokens['outsider']}")]
    (reply,) = stub.ServerReflectionInfo(iter(ask), timeout=10, metadata=auth)
    names = {s.name for s in reply.list_services_response.service}
    assert "hoard.v1.Objects" in names


def test_listing_shows_only_the_repositories_a_token_may_read(channel, tokens):
    listing = _method("hoard.v1.Repositories.ListRepositories")
    stub = channel.unary_unary(
        _path(listing),
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=repositories_pb2.ListRepositoriesResponse.FromString,
    )
    reply = stub(
        repositories_pb2.ListRepositoriesRequest(),
        metadata=[("authorization", f"Bearer {tokens['reader']}")],
        timeout=10,
    )
    assert [r.name for r in reply.repositories] == ["lab"]


# -- audit --------------------------------------------------------------------------------


def test_writes_and_refusals_are_audited_with_the_token_name(secured, channel, tokens):
    daemon = secured[0]
    since = len(daemon.log)
    put = _method("hoard.v1.Objects.PutBatch")
    batch = objects_pb2.PutBatchRequest(repository="lab")
    assert call(channel, put, [batch], tokens["writer"]) is None
    call(channel, put, [batch], tokens["reader"])
    has = _method("hoard.v1.Objects.Has")
    call(channel, has, [_minimal_request(has, "lab")], tokens["reader"])
    daemon.wait_for_log("audit: reader", since=since)
    lines = [line for line in daemon.log[since:] if "audit: " in line]
    assert any("audit: writer hoard.v1.Objects/PutBatch repository=lab -> OK" in x for x in lines)
    assert any(
        "audit: reader hoard.v1.Objects/PutBatch repository=lab -> PERMISSION_DENIED" in x
        for x in lines
    )
    assert not any("Objects/Has" in x for x in lines), "reads are not audited"


# -- SIGHUP -------------------------------------------------------------------------------


def _has(target: str, token: str) -> grpc.StatusCode:
    with grpc.insecure_channel(target) as ch:
        exc = call(
            ch, _method("hoard.v1.Objects.Has"), [objects_pb2.HasRequest(repository="x")], token
        )
    return grpc.StatusCode.OK if exc is None else exc.code()


def test_sighup_rereads_the_tokens_file(tmp_path, daemon_factory):
    tokens_file = str(tmp_path / "tokens.toml")
    first = add_token(tokens_file, "first", {"*": Role.READ})
    daemon = daemon_factory(None, "--tokens-file", tokens_file)
    assert _has(daemon.target, first) == grpc.StatusCode.NOT_FOUND  # through: no repository x

    second = add_token(tokens_file, "second", {"*": Role.READ})
    assert _has(daemon.target, second) == grpc.StatusCode.UNAUTHENTICATED
    since = len(daemon.log)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("re-read tokens file", since=since)
    assert any(": 2 tokens" in line for line in daemon.log[since:])
    assert _has(daemon.target, second) == grpc.StatusCode.NOT_FOUND

    from hoard_server.auth.tokens import remove_token

    remove_token(tokens_file, "first")
    since = len(daemon.log)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("re-read tokens file", since=since)
    assert _has(daemon.target, first) == grpc.StatusCode.UNAUTHENTICATED

    Path(tokens_file).write_text("[tokens.broken]\nsha256 = 'nope'\n")
    since = len(daemon.log)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("still using the tokens read before", since=since)
    assert any("sha256 must be 64 lowercase hex digits" in x for x in daemon.log[since:])
    assert _has(daemon.target, second) == grpc.StatusCode.NOT_FOUND
    assert daemon.running


# -- start-up -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, says",
    [
        (None, "does not exist; make it with `hoard token add"),
        ("[tokens.x]\nroles = 3\n", "sha256 must be 64 lowercase hex digits"),
        ("not toml = = 1", "is not valid TOML"),
    ],
)
def test_a_missing_or_broken_tokens_file_stops_the_start(tmp_path, content, says):
    tokens_file = tmp_path / "tokens.toml"
    if content is not None:
        tokens_file.write_text(content)
    daemon = DaemonProcess(str(tmp_path / "data"), "--tokens-file", str(tokens_file))
    with pytest.raises(DaemonStartError):
        daemon.start(timeout=20, attempts=1)
    assert daemon.proc is not None and daemon.proc.returncode == 2
    assert says in daemon.log_tail()
    assert "tokens_file (HOARD_TOKENS_FILE, --tokens-file)" in daemon.log_tail()


def test_every_rpc_declares_a_role():
    missing = [m.full_name for m in METHODS if not m.GetOptions().Extensions[access_pb2.role]]
    assert not missing, f"declare `option (hoard.v1.role) = ...;` on {missing}"
    assert len(METHODS) > 50


def test_a_served_service_without_roles_stops_the_start():
    proto = descriptor_pb2.FileDescriptorProto(
        name="hoardtest/bare.proto", package="hoardtest", syntax="proto3"
    )
    proto.message_type.add(name="Empty")
    service = proto.service.add(name="Bare")
    service.method.add(name="Poke", input_type=".hoardtest.Empty", output_type=".hoardtest.Empty")
    pool = descriptor_pool.Default()
    try:
        pool.FindServiceByName("hoardtest.Bare")
    except KeyError:
        pool.Add(proto)
    with pytest.raises(MissingRole, match=r"hoardtest\.Bare/Poke declares no role"):
        AccessPolicy(["hoardtest.Bare"])


# -- docs ---------------------------------------------------------------------------------


def test_the_docs_roles_table_is_the_protos_one():
    table = render_markdown(AccessPolicy([row.name for row in SERVICES]))
    docs = (ROOT / "docs" / "security.md").read_text()
    assert table in docs, f"update docs/security.md, section Authentication, to:\n\n{table}"
    for method in METHODS:
        assert re.search(rf"`{method.name}` \| {ROLES[method.full_name].label} ", table)
