"""Bearer tokens: the tokens file, its hashes, and what each token may do.

The file is TOML, written by ``hoard token`` and read by the daemon (again on SIGHUP)::

    # hoard tokens: only the SHA-256 of each token is kept here
    [tokens.alice]
    sha256 = "9f86d08..."
    created = "2026-11-29T10:00:00+00:00"
    roles = { "*" = "read", "lab" = "write" }

A token is ``hoard_`` followed by 256 random bits (url-safe base64), shown once when it is
made. Tokens are random, not chosen by people, so a plain SHA-256 is enough to keep them
secret on disk (a slow password hash guards against guessing, and 256 random bits cannot be
guessed); looking a token up by its hash also needs no constant-time comparison.

Roles rank read < write < admin; ``*`` stands for every repository. A token's role on a
repository is the higher of its role on that repository and its role on ``*``.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import hashlib
import os
import re
import secrets
import stat
import tempfile
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ALL",
    "Grants",
    "Role",
    "TokenEntry",
    "Tokens",
    "TokensFileError",
    "add_token",
    "hash_token",
    "new_token",
    "read_tokens_file",
    "remove_token",
]

ALL = "*"
PREFIX = "hoard_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


class TokensFileError(ValueError):
    """The tokens file cannot be read, or says something that makes no sense."""


class Role(enum.IntEnum):
    """The values of ``hoard.v1.Role`` (access.proto): a higher role includes the lower."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise TokensFileError(f"unknown role {text!r}: use read, write or admin") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Grants:
    """What one token may do: its name and its role per repository (``*``: all)."""

    name: str
    roles: Mapping[str, Role] = field(default_factory=dict)

    def role_on(self, repository: str) -> Role | None:
        """The token's role on ``repository``, or None when it has none there."""
        found = [r for r in (self.roles.get(repository), self.roles.get(ALL)) if r is not None]
        return max(found) if found else None

    def allows(self, role: Role, repository: str) -> bool:
        have = self.role_on(repository)
        return have is not None and have >= role


@dataclass(frozen=True)
class TokenEntry:
    """One ``[tokens.<name>]`` table of the file."""

    name: str
    sha256: str
    created: str
    roles: Mapping[str, Role]

    @property
    def grants(self) -> Grants:
        return Grants(self.name, dict(self.roles))


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise TokensFileError(
            f"token name {name!r}: use 1-128 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def read_tokens_file(path: str) -> dict[str, TokenEntry]:
    """Every token of the file by name; a missing file has none."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise TokensFileError(f"cannot read tokens file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TokensFileError(f"tokens file {path} is not valid TOML: {exc}") from None
    unknown = set(doc) - {"tokens"}
    if unknown:
        raise TokensFileError(f"tokens file {path}: unknown table(s) {', '.join(sorted(unknown))}")
    entries: dict[str, TokenEntry] = {}
    hashes: set[str] = set()
    for name, table in doc.get("tokens", {}).items():
        where = f"tokens file {path}, [tokens.{name}]"
        if not isinstance(table, dict):
            raise TokensFileError(f"{where} is not a table")
        try:
            check_name(name)
        except TokensFileError as exc:
            raise TokensFileError(f"tokens file {path}: {exc}") from None
        digest = table.get("sha256", "")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise TokensFileError(f"{where}: sha256 must be 64 lowercase hex digits")
        if digest in hashes:
            raise TokensFileError(f"{where}: the same token hash appears twice")
        hashes.add(digest)
        raw_roles = table.get("roles", {})
        if not isinstance(raw_roles, dict) or not all(
            isinstance(v, str) for v in raw_roles.values()
        ):
            raise TokensFileError(f'{where}: roles must be a table like {{ "lab" = "write" }}')
        try:
            roles = {repo: Role.parse(role) for repo, role in raw_roles.items()}
        except TokensFileError as exc:
            raise TokensFileError(f"{where}: {exc}") from None
        entries[name] = TokenEntry(name, digest, str(table.get("created", "")), roles)
    return entries


def _write(path: str, entries: Mapping[str, TokenEntry]) -> None:
    import tomli_w  # the daemon only reads; writing is `hoard token`'s

    doc: dict[str, Any] = {
        "tokens": {
            e.name: {
                "sha256": e.sha256,
                "created": e.created,
                "roles": {repo: role.label for repo, role in sorted(e.roles.items())},
            }
            for e in entries.values()
        }
    }
    text = "# hoard tokens: only the SHA-256 of each token is kept here (hoard token add|ls|rm)\n"
    text += tomli_w.dumps(doc)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        before: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        before = None
    fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=folder)  # mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            if before is not None:
                # An admin running `sudo hoard token` must not leave the daemon's user unable
                # to read the file: a rewrite keeps its owner, group and mode (never for all).
                with contextlib.suppress(PermissionError):
                    os.fchown(fh.fileno(), before.st_uid, before.st_gid)
                os.fchmod(fh.fileno(), stat.S_IMODE(before.st_mode) & 0o770)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def add_token(path: str, name: str, roles: Mapping[str, Role], *, replace: bool = False) -> str:
    """Add a token named ``name`` to the file (made if missing, mode 0600; an existing file
    keeps its owner, group and mode) and return it: the only time it is ever shown.
    ``replace`` gives an existing name a new token."""
    check_name(name)
    if not roles:
        raise TokensFileError("a token needs at least one role, e.g. lab=write or '*=read'")
    entries = read_tokens_file(path)
    if name in entries and not replace:
        raise TokensFileError(f"a token named {name!r} exists; remove it first or replace it")
    token = new_token()
    created = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    entries[name] = TokenEntry(name, hash_token(token), created, dict(roles))
    _write(path, entries)
    return token


def remove_token(path: str, name: str) -> None:
    entries = read_tokens_file(path)
    if name not in entries:
        raise TokensFileError(f"no token named {name!r} in {path}")
    del entries[name]
    _write(path, entries)


class Tokens:
    """The daemon's view of the tokens file: looked up on every call, swapped on reload."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._by_hash: dict[str, Grants] = {}
        self.reload()

    def reload(self) -> int:
        """Re-read the file; on an error keep the tokens known so far and raise it. A missing
        file is an error here (``hoard token`` makes it): a daemon told to check tokens that
        found none would refuse every call."""
        if not os.path.exists(self.path):
            raise TokensFileError(
                f"tokens file {self.path} does not exist; make it with "
                f"`hoard token add NAME --role REPOSITORY=ROLE --tokens-file {self.path}`"
            )
        entries = read_tokens_file(self.path)
        by_hash = {e.sha256: e.grants for e in entries.values()}
        with self._lock:
            self._by_hash = by_hash
        return len(by_hash)

    def authenticate(self, token: str) -> Grants | None:
        """The grants of a presented token, or None when the file does not know it."""
        return self._by_hash.get(hash_token(token))
