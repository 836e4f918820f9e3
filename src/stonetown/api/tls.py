"""The server's TLS certificate and key, checked before the server starts so that a bad file
is reported by name, with what is wrong with it (grpc only says it cannot bind)."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

_SWAPPED = " (it holds {}: are --tls-cert and --tls-key swapped?)"


class TlsFileError(ValueError):
    """A --tls-cert or --tls-key file that cannot serve; the message names the file."""


def _read(option: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsFileError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from None


def _refuse_passphrase() -> bytes:
    raise TlsFileError("encrypted")


def server_credentials(cert_path: str, key_path: str) -> grpc.ServerCredentials:
    """Credentials for serving TLS with the PEM certificate chain and private key at these
    paths; TlsFileError naming the file when one is missing, unreadable, not PEM of the right
    kind, encrypted, or when the key does not belong to the certificate."""
    cert, key = _read("--tls-cert", cert_path), _read("--tls-key", key_path)
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        hint = _SWAPPED.format("a private key") if b"PRIVATE KEY-----" in cert else ""
        raise TlsFileError(
            f"--tls-cert {cert_path}: not a PEM certificate (no BEGIN CERTIFICATE block){hint}"
        )
    if b"PRIVATE KEY-----" not in key:
        hint = _SWAPPED.format("a certificate") if b"CERTIFICATE-----" in key else ""
        raise TlsFileError(f"--tls-key {key_path}: not a PEM private key (no BEGIN PRIVATE KEY block){hint}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path, password=_refuse_passphrase)
    except TlsFileError:
        raise TlsFileError(
            f"--tls-key {key_path}: the key is encrypted with a passphrase; give an unencrypted key"
        ) from None
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            raise TlsFileError(
                f"--tls-key {key_path} is not the private key of the certificate in --tls-cert {cert_path}"
            ) from None
        raise TlsFileError(
            f"--tls-cert {cert_path} / --tls-key {key_path}: cannot be loaded ({reason})"
        ) from None
    return grpc.ssl_server_credentials([(key, cert)])
