"""What a connection presents to the daemon: a bearer token, TLS trust and a client
certificate, each from :func:`hoard.connect`'s arguments or else a ``HOARD_*`` variable.

The token travels as ``authorization: Bearer <token>`` metadata on every call (added in the
transport's one call path, over plain and TLS channels alike). It is never sent in clear
text to another machine: a token over a plain TCP channel to a non-loopback host is refused
unless the caller says ``insecure=True`` (a trusted network, a daemon with allow_remote).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from hoard.errors import ConnectionSettingsError, Endpoint
from hoard.transport import is_local_target

__all__ = ["ENVIRONMENT", "Credentials"]

ENVIRONMENT = {
    "token": "HOARD_TOKEN",
    "token_file": "HOARD_TOKEN_FILE",
    "tls_ca": "HOARD_TLS_CA",
    "tls_cert": "HOARD_TLS_CERT",
    "tls_key": "HOARD_TLS_KEY",
    "tls_server_name": "HOARD_TLS_SERVER_NAME",
}
"""The environment variable each argument of :func:`hoard.connect` falls back to."""


@dataclass(frozen=True)
class Credentials:
    """A connection's token and TLS files, resolved. ``token_source`` says where the token
    came from, for messages (``"token="``, ``"HOARD_TOKEN"``, ``"token file /path"``)."""

    token: str = ""
    token_source: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_server_name: str = ""

    @classmethod
    def resolve(
        cls,
        *,
        token: str | None = None,
        token_file: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_server_name: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Credentials:
        """Each argument, else its variable of :data:`ENVIRONMENT`. A token given either way
        (argument or file) beats both variables; ``token`` beats ``token_file``."""
        env = os.environ if environ is None else environ
        if token:
            secret, source = token, "token= (--token)"
        elif token_file:
            secret, source = _read_token(token_file), f"token file {token_file}"
        elif env.get("HOARD_TOKEN"):
            secret, source = env["HOARD_TOKEN"], "HOARD_TOKEN"
        elif env.get("HOARD_TOKEN_FILE"):
            path = env["HOARD_TOKEN_FILE"]
            secret, source = _read_token(path), f"token file {path} (HOARD_TOKEN_FILE)"
        else:
            secret, source = "", ""
        found = cls(
            secret.strip(),
            source,
            tls_ca or env.get("HOARD_TLS_CA", ""),
            tls_cert or env.get("HOARD_TLS_CERT", ""),
            tls_key or env.get("HOARD_TLS_KEY", ""),
            tls_server_name or env.get("HOARD_TLS_SERVER_NAME", ""),
        )
        if bool(found.tls_cert) != bool(found.tls_key):
            raise ConnectionSettingsError(
                "a client certificate needs its key and the key its certificate: give both "
                "tls_cert and tls_key (--tls-cert/--tls-key, HOARD_TLS_CERT/HOARD_TLS_KEY)"
            )
        return found

    @property
    def tls(self) -> bool:
        """TLS when a CA or a client certificate is given (a CA alone: no client certificate;
        a certificate without a CA: the daemon's certificate checked against the system's)."""
        return bool(self.tls_ca or self.tls_cert)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata every call carries."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def endpoint(self, target: str) -> Endpoint:
        return Endpoint(target, self.tls, self.tls_cert, self.token_source)

    def check(self, target: str, *, insecure: bool = False) -> None:
        """Refuse to send the token in clear text to another machine (unless ``insecure``)."""
        if self.token and not self.tls and not insecure and not is_local_target(target):
            raise ConnectionSettingsError(
                f"refusing to send the token from {self.token_source} to {target} without "
                "TLS: anyone on the way could read it and use it. Pass the CA of the "
                "daemon's certificate as tls_ca= (--tls-ca, HOARD_TLS_CA), or insecure=True "
                "(--insecure) on a network you trust"
            )

    def channel(self, target: str, options: Sequence[tuple[str, Any]]) -> grpc.Channel:
        """A channel to ``target``: TLS when :attr:`tls`, else plain."""
        if not self.tls:
            return grpc.insecure_channel(target, options=list(options))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(self.tls_ca, "CA") if self.tls_ca else None,
            private_key=_read(self.tls_key, "client key") if self.tls_key else None,
            certificate_chain=_read(self.tls_cert, "client certificate") if self.tls_cert else None,
        )
        if self.tls_server_name:
            options = [*options, ("grpc.ssl_target_name_override", self.tls_server_name)]
        return grpc.secure_channel(target, credentials, options=list(options))


def _read(path: str, what: str) -> bytes:
    try:
        with open(os.path.expanduser(path), "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConnectionSettingsError(
            f"cannot read the TLS {what} {path}: {exc.strerror or exc}"
        ) from None


def _read_token(path: str) -> str:
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as fh:
            token = fh.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise ConnectionSettingsError(f"cannot read the token file {path}: {reason}") from None
    if not token:
        raise ConnectionSettingsError(f"the token file {path} is empty")
    return token
