"""Building channels: the node URL, the token sent with every call, and TLS with a pinned certificate.

A Cairn node with `--tls` serves a self-signed certificate and prints `cairn node TLS certificate sha256
<hex>` (SHA-256 of the certificate's DER bytes). To pin it, the client first fetches the certificate the node
presents (a TLS handshake without verification), checks its SHA-256 against the pin in constant time, and
then builds the gRPC channel with exactly that certificate as the only trusted root and the TLS target name
set to a name the certificate carries, so the real handshake verifies against that one certificate: a node
that presents any other certificate later fails the handshake.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import grpc

from .errors import ConfigError, TlsPinMismatch, Unavailable

DEFAULT_NODE = "http://127.0.0.1:7420"

# Answers can be large (a List page or Get answer up to the node's --max-page-mb, proofs of big namespaces).
MAX_MESSAGE_BYTES = 256 << 20

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 20_000),
]


@dataclass(frozen=True)
class Target:
    """A parsed node URL."""

    url: str  # as given (the key for pins)
    host: str
    port: int
    tls: bool

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_url(url: str) -> Target:
    """`http://host:port` (plaintext), `https://host:port` (TLS), or a bare `host:port` (plaintext)."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("node URL is empty")
    raw = url.strip()
    if "://" not in raw:
        raw = "http://" + raw
    try:
        u = urlsplit(raw)
        port = u.port
    except ValueError as e:
        raise ConfigError(f"invalid node address {url!r}: {e}") from None
    if u.scheme not in ("http", "https"):
        raise ConfigError(f"invalid node address {url!r}: the scheme must be http or https")
    if not u.hostname:
        raise ConfigError(f"invalid node address {url!r}: no host")
    if u.path not in ("", "/") or u.query or u.fragment:
        raise ConfigError(f"invalid node address {url!r}: expected scheme://host:port and nothing else")
    tls = u.scheme == "https"
    if port is None:
        port = 443 if tls else 80
    return Target(url=url.strip(), host=u.hostname, port=port, tls=tls)


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The `authorization: Bearer <token>` metadata entry (none without a token)."""
    if token is None:
        return ()
    t = token.strip()
    if not t:
        return ()
    if not all(0x20 < ord(c) < 0x7F for c in t):
        raise ConfigError("invalid token: not printable ASCII")
    return (("authorization", f"Bearer {t}"),)


def parse_fingerprint(fp: str) -> bytes:
    """A SHA-256 fingerprint in hex (colons allowed), as 32 bytes."""
    try:
        b = bytes.fromhex(fp.strip().replace(":", ""))
    except (ValueError, AttributeError):
        b = b""
    if len(b) != 32:
        raise ConfigError("TLS pin: expected a SHA-256 fingerprint of 64 hex digits")
    return b


def fetch_certificate(target: Target, timeout: float = 10.0) -> bytes:
    """The DER certificate the node presents, from a TLS handshake that verifies nothing (the pin check that
    follows is what makes it trusted)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.set_alpn_protocols(["h2"])
    except NotImplementedError:  # pragma: no cover
        pass
    server_name = None if _is_ip(target.host) else target.host
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as e:
        raise Unavailable(f"cannot fetch the TLS certificate of {target.url}: {e}") from e
    if not der:
        raise Unavailable(f"{target.url} presented no TLS certificate")
    return der


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def certificate_names(der: bytes) -> list[str]:
    """The DNS names and IP addresses of a certificate's subjectAltName, then its common name."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += san.get_values_for_type(x509.DNSName)
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        if isinstance(attr.value, str) and attr.value not in names:
            names.append(attr.value)
    return names


def target_name(host: str, names: list[str]) -> str | None:
    """The name to verify the certificate against: the URL's host if the certificate carries it, else the
    first DNS name, else the first name of any kind."""
    if host in names:
        return host
    if _is_ip(host):
        norm = str(ipaddress.ip_address(host))
        if norm in names:
            return norm
    for n in names:
        if not _is_ip(n) and "*" not in n:
            return n
    return names[0] if names else None


@dataclass
class TlsSetup:
    credentials: grpc.ChannelCredentials
    options: list
    fingerprint: str  # hex SHA-256 of the certificate


def pinned_tls(target: Target, pin: str | None, timeout: float = 10.0) -> TlsSetup:
    """Fetches the node's certificate, checks it against `pin` (hex SHA-256; None accepts it and reports its
    fingerprint for trust on first use) and returns channel credentials trusting exactly that certificate."""
    want = parse_fingerprint(pin) if pin is not None else None
    der = fetch_certificate(target, timeout)
    got = hashlib.sha256(der).digest()
    if want is not None and not hmac.compare_digest(got, want):
        raise TlsPinMismatch(target.url, want.hex(), got.hex())
    pem = ssl.DER_cert_to_PEM_cert(der).encode()
    name = target_name(target.host, certificate_names(der))
    options = list(CHANNEL_OPTIONS)
    if name is not None:
        options.append(("grpc.ssl_target_name_override", name))
    return TlsSetup(grpc.ssl_channel_credentials(root_certificates=pem), options, got.hex())
