"""hoard.aiida against aiida-core's real ABC (runs where the `aiida` extra is installed)."""

from __future__ import annotations

import hashlib
import io

import pytest

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
