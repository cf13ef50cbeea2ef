"""``hoard token add|ls|rm`` as a person runs it: a subprocess, offline, on a tokens file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hoard_server.auth.tokens import Role, Tokens, read_tokens_file


def hoard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if k not in ("HOARD_TOKENS_FILE", "HOARD_CONFIG")
    }
    return subprocess.run(
        [sys.executable, "-m", "hoard.cli", "token", *args],
        capture_output=True,
        text=True,
        env={**environ, **(env or {})},
        timeout=60,
    )


def test_add_prints_the_token_alone_and_it_authenticates(tmp_path):
    path = str(tmp_path / "tokens.toml")
    done = hoard("add", "ci", "--role", "lab=write", "--role", "*=read", "--tokens-file", path)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert done.stdout == token + "\n" and token.startswith("hoard_")
    assert "shown only this once" in done.stderr and "systemctl reload hoard" in done.stderr
    grants = Tokens(path).authenticate(token)
    assert grants is not None and grants.name == "ci"
    assert dict(grants.roles) == {"lab": Role.WRITE, "*": Role.READ}
    assert token not in Path(path).read_text()
    assert (os.stat(path).st_mode & 0o777) == 0o600


def test_ls_shows_names_dates_and_roles_never_hashes(tmp_path):
    path = str(tmp_path / "tokens.toml")
    assert hoard("add", "alice", "--role", "lab=admin", "--tokens-file", path).returncode == 0
    assert hoard("add", "bob", "--role", "*=read", "--tokens-file", path).returncode == 0
    done = hoard("ls", "--tokens-file", path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["alice", "bob"]
    assert lines[0].endswith("\tlab=admin") and lines[1].endswith("\t*=read")
    for entry in read_tokens_file(path).values():
        assert entry.sha256 not in done.stdout
        assert entry.created in done.stdout


def test_rm_removes_and_the_token_stops_authenticating(tmp_path):
    path = str(tmp_path / "tokens.toml")
    token = hoard("add", "ci", "--role", "lab=read", "--tokens-file", path).stdout.strip()
    done = hoard("rm", "ci", "--tokens-file", path)
    assert done.returncode == 0, done.stderr
    assert "systemctl reload hoard" in done.stderr
    assert Tokens(path).authenticate(token) is None
    again = hoard("rm", "ci", "--tokens-file", path)
    assert again.returncode == 1 and "no token named 'ci'" in again.stderr


def test_add_refuses_an_existing_name_unless_replaced(tmp_path):
    path = str(tmp_path / "tokens.toml")
    old = hoard("add", "ci", "--role", "lab=read", "--tokens-file", path).stdout.strip()
    refused = hoard("add", "ci", "--role", "lab=write", "--tokens-file", path)
    assert refused.returncode == 1 and "exists" in refused.stderr and refused.stdout == ""
    new = hoard("add", "ci", "--role", "lab=write", "--replace", "--tokens-file", path)
    assert new.returncode == 0
    tokens = Tokens(path)
    assert tokens.authenticate(old) is None
    grants = tokens.authenticate(new.stdout.strip())
    assert grants is not None and grants.allows(Role.WRITE, "lab")


def test_bad_roles_are_refused_with_what_to_write(tmp_path):
    path = str(tmp_path / "tokens.toml")
    for spec, says in [
        ("lab", "write REPOSITORY=ROLE"),
        ("lab=owner", "unknown role 'owner': use read, write or admin"),
    ]:
        done = hoard("add", "ci", "--role", spec, "--tokens-file", path)
        assert done.returncode == 1 and says in done.stderr, done.stderr
    assert not os.path.exists(path)


def test_the_file_comes_from_the_environment_or_the_daemon_config(tmp_path):
    path = str(tmp_path / "tokens.toml")
    done = hoard("add", "env", "--role", "*=read", env={"HOARD_TOKENS_FILE": path})
    assert done.returncode == 0, done.stderr
    config = tmp_path / "hoard.toml"
    config.write_text(f'[security]\ntokens_file = "{path}"\n')
    done = hoard("ls", "--config", str(config))
    assert done.returncode == 0 and done.stdout.startswith("env\t"), done.stderr
    nowhere = hoard("ls")
    assert nowhere.returncode == 1
    assert "--tokens-file" in nowhere.stderr and "HOARD_TOKENS_FILE" in nowhere.stderr
    bare = tmp_path / "bare.toml"
    bare.write_text("[server]\nworkers = 4\n")
    unset = hoard("ls", "--config", str(bare))
    assert unset.returncode == 1 and "sets no [security] tokens_file" in unset.stderr


def test_ls_without_a_file_says_how_to_make_one(tmp_path):
    done = hoard("ls", "--tokens-file", str(tmp_path / "none.toml"))
    assert done.returncode == 1 and "hoard token add makes it" in done.stderr
