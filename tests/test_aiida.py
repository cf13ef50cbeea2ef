"""hoard.aiida against aiida-core's real ABC (runs where the `aiida` extra is installed)."""

from __future__ import annotations

import hashlib
import io
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("aiida.repository.backend.abstract")

from aiida.repository.backend.abstract import AbstractRepositoryBackend

from hoard.aiida import HoardRepositoryBackend


@pytest.fixture
def backend(client):
    b = HoardRepositoryBackend(client.repository("aiida-profile"))
    assert b.uuid is None and not b.is_initialised  # AiiDA: no uuid until initialised
    b.initialise()
    return b


def test_is_a_real_repository_backend(backend):
    assert isinstance(backend, AbstractRepositoryBackend)
    assert backend.is_initialised and len(backend.uuid) == 32
    assert backend.key_format == "sha256"


def test_contract_round_trip(backend, tmp_path):
    key = backend.put_object_from_filelike(io.BytesIO(b"content"))
    assert key == hashlib.sha256(b"content").hexdigest() == backend.get_object_hash(key)
    with pytest.raises(TypeError):
        backend.put_object_from_filelike(io.StringIO("text"))
    path = tmp_path / "f.bin"
    path.write_bytes(b"from a file")
    k2 = backend.put_object_from_file(str(path))
    assert backend.has_objects([key, k2, "0" * 64]) == [True, True, False]
    with backend.open(key) as handle:
        assert isinstance(handle, io.BufferedReader)
        handle.seek(-3, 2)
        assert handle.read() == b"ent"
        handle.seek(0)
        assert handle.read(4) == b"cont"
    assert dict((k, h.read()) for k, h in backend.iter_object_streams([key, k2])) == {
        key: b"content",
        k2: b"from a file",
    }
    assert sorted(backend.list_objects()) == sorted([key, k2])
    with pytest.raises(FileNotFoundError, match="0" * 64):
        backend.delete_objects([key, "0" * 64])
    assert backend.has_object(key)  # nothing was deleted
    backend.delete_objects([key])
    assert not backend.has_object(key)
    with pytest.raises(FileNotFoundError):
        backend.open(key).__enter__()
    backend.maintain(dry_run=True, live=True)
    backend.maintain(live=True)
    assert backend.get_info()["objects"] == 1
    backend.erase()
    assert not backend.is_initialised


# AiiDA (and disk-objectstore) treat any string that names no stored object as absent: the
# raw gRPC API answers INVALID_ARGUMENT for such a key, the AiiDA face must not.
_NOT_KEYS = st.one_of(
    st.sampled_from(["non_existant", "", " " * 64, "g" * 64, "0" * 63, "0" * 65]),
    st.text(max_size=80).filter(lambda s: re.fullmatch(r"[0-9a-f]{64}", s) is None),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(not_key=_NOT_KEYS)
def test_any_string_that_is_not_a_stored_key_is_absent(backend, not_key):
    stored = backend.put_object_from_filelike(io.BytesIO(b"kept"))
    for key in (not_key, stored.upper()):
        if key == stored:
            continue
        assert backend.has_objects([key, stored]) == [False, True]
        assert backend.has_object(key) is False
        for call in (
            lambda k: backend.open(k).__enter__(),
            backend.get_object_content,
            backend.get_object_hash,
            lambda k: list(backend.iter_object_streams([stored, k])),
            backend.delete_object,
            lambda k: backend.delete_objects([stored, k]),
        ):
            with pytest.raises(FileNotFoundError):
                call(key)
        assert backend.has_object(stored)  # delete_objects with a missing key deleted nothing


def test_erase_after_the_client_was_closed(hoard_daemon):
    import hoard

    client = hoard.connect(hoard_daemon.target)
    backend = HoardRepositoryBackend(client.repository("finalised"))
    backend.initialise()
    backend.put_object_from_filelike(io.BytesIO(b"x"))
    client.close()  # AiiDA's storage finaliser may run after the profile closed its storage
    backend.erase()
    assert not backend.is_initialised
    client.close()


def test_a_client_built_on_a_channel_says_it_was_closed(hoard_daemon):
    import grpc

    import hoard

    client = hoard.Client(grpc.insecure_channel(hoard_daemon.target), target=hoard_daemon.target)
    assert client.repository("default").is_initialised
    client.close()
    with pytest.raises(hoard.HoardError, match="was closed"):
        client.repository("default").has_object("0" * 64)
