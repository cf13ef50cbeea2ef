"""The daemon's TLS material: its certificate and key, and the CA of client certificates.

The files are checked with :mod:`ssl` before grpc sees them, so that a missing, unreadable,
encrypted or mismatched file stops the start with a message naming it, instead of failing
every handshake later. They are watched too: grpc asks :meth:`ServerTLS.fetch` before each
new connection's handshake, and a certificate renewed on disk (by certbot, cert-manager, an
admin) is served from the next connection on, without SIGHUP or restart. A renewal caught
half-written (a new certificate with the old key) is not taken: the old pair stays until the
files agree again.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading

import grpc

from hoard_server.daemon.schema import ConfigError

log = logging.getLogger("hoard.tls")

__all__ = ["ServerTLS"]


def _no_password() -> bytes:
    raise ConfigError("is encrypted: give the daemon a key without a passphrase")


class ServerTLS:
    """Certificate ``cert`` with key ``key``; with ``client_ca``, clients must present a
    certificate signed by it (mutual TLS). Raises ConfigError when the files are not usable."""

    def __init__(self, cert: str, key: str, client_ca: str = "") -> None:
        self.cert = cert
        self.key = key
        self.client_ca = client_ca
        self._lock = threading.Lock()
        self._stamp = self._stamps()
        self._current = self._load()

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca)

    def credentials(self) -> grpc.ServerCredentials:
        """grpc's credentials, asking :meth:`fetch` for renewed files at each handshake."""
        return grpc.dynamic_ssl_server_credentials(
            self._current, self.fetch, require_client_authentication=self.mutual
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed and agree; None: keep the current one."""
        stamp = self._stamps()
        with self._lock:
            if stamp == self._stamp:
                return None
            self._stamp = stamp  # judged once per change, not at every handshake
            try:
                self._current = self._load()
            except ConfigError as exc:
                log.warning("TLS files changed but are not usable, keeping the old ones: %s", exc)
                return None
        log.info("TLS files changed: new connections get the new certificate")
        return self._current

    def _files(self) -> list[str]:
        return [p for p in (self.cert, self.key, self.client_ca) if p]

    def _stamps(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in self._files():
            try:
                st = os.stat(path)
            except OSError:
                stamps.append((0, 0, 0))
            else:
                stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamps)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        check = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            check.load_cert_chain(self.cert, self.key, password=_no_password)
        except ConfigError as exc:
            raise ConfigError(f"TLS key {self.key} {exc}") from None
        except OSError as exc:  # ssl.SSLError is an OSError too
            hint = " (PEM files; the key must be the certificate's)" * isinstance(exc, ssl.SSLError)
            raise ConfigError(
                f"cannot use TLS certificate {self.cert} with key {self.key}: {_reason(exc)}{hint}"
            ) from None
        if self.client_ca:
            try:
                check.load_verify_locations(cafile=self.client_ca)
            except OSError as exc:
                raise ConfigError(
                    f"cannot use TLS client CA {self.client_ca}: {_reason(exc)} "
                    "(PEM CA certificates expected)"
                ) from None
        chain = _read(self.cert)
        key = _read(self.key)
        roots = _read(self.client_ca) if self.client_ca else None
        return grpc.ssl_server_certificate_configuration([(key, chain)], roots)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read TLS file {path}: {exc.strerror}") from None


def _reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)
