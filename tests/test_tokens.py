"""The tokens file (``hoard_server.auth.tokens``): format, hashes, modes, roles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hoard_server.auth.tokens import (
    ALL,
    Grants,
    Role,
    Tokens,
    TokensFileError,
    add_token,
    hash_token,
    read_tokens_file,
    remove_token,
)

roles = st.sampled_from(list(Role))
repositories = st.sampled_from(["lab", "other", "x.y", ALL])


def test_round_trip(tmp_path):
    path = str(tmp_path / "tokens.toml")
    a = add_token(path, "alice", {"lab": Role.WRITE, ALL: Role.READ})
    b = add_token(path, "ci@build-1", {"lab": Role.ADMIN})
    entries = read_tokens_file(path)
    assert set(entries) == {"alice", "ci@build-1"}
    assert dict(entries["alice"].roles) == {"lab": Role.WRITE, ALL: Role.READ}
    assert entries["alice"].sha256 == hash_token(a)
    tokens = Tokens(path)
    assert tokens.authenticate(a) == Grants("alice", {"lab": Role.WRITE, ALL: Role.READ})
    assert tokens.authenticate(b).name == "ci@build-1"  # type: ignore[union-attr]
    assert tokens.authenticate(a + "x") is None
    remove_token(path, "alice")
    assert tokens.reload() == 1
    assert tokens.authenticate(a) is None


def test_only_hashes_reach_the_disk_and_the_file_is_private(tmp_path):
    path = tmp_path / "tokens.toml"
    token = add_token(str(path), "alice", {"lab": Role.READ})
    text = path.read_text()
    assert token not in text and token[len("hoard_") :] not in text
    assert hash_token(token) in text
    assert (os.stat(path).st_mode & 0o777) == 0o600
    assert not [p for p in os.listdir(tmp_path) if p != "tokens.toml"], "no temporary left"


def test_a_rewrite_keeps_the_files_owner_group_and_mode(tmp_path):
    path = tmp_path / "tokens.toml"
    add_token(str(path), "alice", {"lab": Role.READ})
    os.chmod(path, 0o640)
    if os.geteuid() == 0:  # as root, also hand the file to another user, as a daemon's would be
        os.chown(path, 65534, os.getgid())
    add_token(str(path), "bob", {"lab": Role.READ})
    st = os.stat(path)
    assert st.st_mode & 0o777 == 0o640
    assert st.st_uid == (65534 if os.geteuid() == 0 else os.getuid())
    os.chmod(path, 0o666)
    remove_token(str(path), "bob")
    assert os.stat(path).st_mode & 0o777 == 0o660, "never readable by all"


def test_tokens_are_long_random_and_distinct(tmp_path):
    path = str(tmp_path / "tokens.toml")
    made = {add_token(path, f"t{i}", {"lab": Role.READ}) for i in range(20)}
    assert len(made) == 20
    assert all(t.startswith("hoard_") and len(t) >= 6 + 43 for t in made)


@pytest.mark.parametrize(
    "text, says",
    [
        ("a = = 1", "is not valid TOML"),
        ("[other]\n", "unknown table(s) other"),
        ("[tokens]\nx = 1\n", "[tokens.x] is not a table"),
        ("[tokens.x]\nsha256 = 'abc'\n", "sha256 must be 64 lowercase hex digits"),
        (f"[tokens.x]\nsha256 = '{'A' * 64}'\n", "sha256 must be 64 lowercase hex digits"),
        (
            f"[tokens.x]\nsha256 = '{'a' * 64}'\n[tokens.y]\nsha256 = '{'a' * 64}'\n",
            "the same token hash appears twice",
        ),
        (f"[tokens.x]\nsha256 = '{'a' * 64}'\nroles = 'lab'\n", "roles must be a table"),
        (f"[tokens.x]\nsha256 = '{'a' * 64}'\nroles = {{ lab = 2 }}\n", "roles must be a table"),
        (f"[tokens.x]\nsha256 = '{'a' * 64}'\nroles = {{ lab = 'own' }}\n", "unknown role 'own'"),
        (f"[tokens.'-x']\nsha256 = '{'a' * 64}'\n", "token name '-x'"),
    ],
)
def test_bad_files_are_refused_saying_what_is_wrong(tmp_path, text, says):
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    with pytest.raises(TokensFileError) as refused:
        read_tokens_file(str(path))
    assert says in str(refused.value) and str(path) in str(refused.value)


def test_a_failed_reload_keeps_the_tokens_known(tmp_path):
    path = tmp_path / "tokens.toml"
    token = add_token(str(path), "alice", {"lab": Role.READ})
    tokens = Tokens(str(path))
    path.write_text("broken = = toml")
    with pytest.raises(TokensFileError):
        tokens.reload()
    assert tokens.authenticate(token) is not None
    path.unlink()
    with pytest.raises(TokensFileError, match="does not exist; make it with `hoard token add"):
        tokens.reload()
    assert tokens.authenticate(token) is not None


def test_a_missing_file_is_refused_by_the_daemon_but_made_by_add(tmp_path):
    path = str(tmp_path / "tokens.toml")
    with pytest.raises(TokensFileError, match="does not exist"):
        Tokens(path)
    assert read_tokens_file(path) == {}
    add_token(path, "first", {"lab": Role.READ})
    assert Tokens(path).reload() == 1


def test_names_and_roles_are_checked_when_adding(tmp_path):
    path = str(tmp_path / "tokens.toml")
    with pytest.raises(TokensFileError, match="token name 'a b'"):
        add_token(path, "a b", {"lab": Role.READ})
    with pytest.raises(TokensFileError, match="needs at least one role"):
        add_token(path, "a", {})
    add_token(path, "a", {"lab": Role.READ})
    with pytest.raises(TokensFileError, match="exists"):
        add_token(path, "a", {"lab": Role.READ})
    with pytest.raises(TokensFileError, match="no token named 'b'"):
        remove_token(path, "b")


def test_roles_rank_read_write_admin():
    assert Role.READ < Role.WRITE < Role.ADMIN
    assert [Role.parse(t) for t in ("read", " Write ", "ADMIN")] == list(Role)
    grants = Grants("g", {"lab": Role.WRITE})
    assert grants.allows(Role.READ, "lab") and grants.allows(Role.WRITE, "lab")
    assert not grants.allows(Role.ADMIN, "lab")
    assert not grants.allows(Role.READ, "other") and grants.role_on("other") is None


@given(st.dictionaries(repositories, roles, max_size=4), roles, repositories)
def test_a_role_on_star_holds_on_every_repository(granted, needed, repository):
    grants = Grants("g", granted)
    held = [r for r in (granted.get(repository), granted.get(ALL)) if r is not None]
    assert grants.allows(needed, repository) == bool(held and max(held) >= needed)
    if ALL in granted:
        assert grants.allows(granted[ALL], repository)


@given(st.dictionaries(st.sampled_from(["lab", "other", ALL, "a-b_c.d"]), roles, min_size=1))
def test_any_roles_survive_the_file(granted):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "tokens.toml")
        token = add_token(path, "t", granted)
        grants = Tokens(path).authenticate(token)
        assert grants is not None and dict(grants.roles) == granted
