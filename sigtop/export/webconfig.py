"""`--web.config.file`: TLS and basic auth for /metrics, in the Prometheus exporter-toolkit's format.

The same YAML file node_exporter and Prometheus itself accept, so one file
and one habit serve every exporter on a box:

    tls_server_config:
      cert_file: server.crt          # relative paths: from the file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # or VerifyClientCertIfGiven; needs client_ca_file
      client_ca_file: ca.crt         # and is refused without a client_auth_type, as the toolkit does
      min_version: TLS12             # TLS10..TLS13 (default TLS12)
    basic_auth_users:
      prometheus: $2y$10$...         # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':')
    http_server_config:
      headers: {X-Frame-Options: deny}

Unknown keys are refused, as the toolkit does (a typo must not turn TLS off).
The file is read once, at start.
"""

from __future__ import annotations

import functools
import hmac
import ssl
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import bcrypt
import yaml


class WebConfigError(Exception):
    """The web config cannot be used (message for the user, one line)."""


TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# The toolkit's client_auth_type values Python's ssl can honour exactly ("" is the toolkit's NoClientCert).
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# The toolkit's other two ask for a certificate and accept it unverified: Python's ssl verifies every
# certificate it asks for, so these are refused rather than made stricter or looser than written.
CLIENT_AUTH_UNVERIFIED = ("RequestClientCert", "RequireAnyClientCert")
TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"}


@dataclass
class WebConfig:
    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # user: bcrypt hash
    headers: dict[str, str] = field(default_factory=dict)
    # The last password that matched, per user, as a digest: bcrypt costs ~50 ms by
    # design, and Prometheus sends the same credentials every scrape. One per user,
    # so the cache cannot grow (bcrypt reads 72 bytes: longer passwords all match).
    _verified: dict[str, bytes] = field(default_factory=dict)

    def verified(self, user: str, password: str) -> bool:
        """Whether these credentials matched before (cheap: fine on the event loop)."""
        hashed, seen = self.users.get(user), self._verified.get(user)
        return hashed is not None and seen is not None and hmac.compare_digest(_digest(user, password, hashed), seen)

    def check(self, user: str, password: str) -> bool:
        """Whether these credentials match (slow unless verified(): call it off the event loop)."""
        hashed = self.users.get(user)
        if hashed is None:
            bcrypt.checkpw(password.encode(), _dummy_hash())  # the same time for an unknown user
            return False
        if self.verified(user, password):
            return True
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        self._verified[user] = _digest(user, password, hashed)
        return True


def _digest(user: str, password: str, hashed: bytes) -> bytes:
    return sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()


@functools.cache
def _dummy_hash() -> bytes:
    return bcrypt.hashpw(b"sigtop", bcrypt.gensalt(rounds=10))


def load(path: str) -> WebConfig:
    """Read and check a web config file; every problem is a WebConfigError naming the file."""
    where = Path(path)
    try:
        doc = yaml.safe_load(where.read_text())
    except OSError as exc:
        raise WebConfigError(f"{path}: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"{path}: not YAML: {str(exc).splitlines()[0]}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise WebConfigError(f"{path}: expected a mapping at the top")
    _only(doc, {"tls_server_config", "basic_auth_users", "http_server_config"}, path, "")
    config = WebConfig()
    base = where.resolve().parent
    if doc.get("tls_server_config") is not None:
        config.tls = _tls(_mapping(doc["tls_server_config"], path, "tls_server_config"), base, path)
    users = _mapping(doc.get("basic_auth_users") or {}, path, "basic_auth_users")
    for user, hashed in users.items():
        if not isinstance(user, str) or not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise WebConfigError(f"{path}: basic_auth_users.{user}: not a bcrypt hash ($2y$...)")
        try:
            bcrypt.checkpw(b"", hashed.encode())
        except ValueError:
            raise WebConfigError(f"{path}: basic_auth_users.{user}: not a bcrypt hash") from None
        config.users[user] = hashed.encode()
    http = _mapping(doc.get("http_server_config") or {}, path, "http_server_config")
    _only(http, {"headers", "http2"}, path, "http_server_config.")
    for name, value in _mapping(http.get("headers") or {}, path, "http_server_config.headers").items():
        if not isinstance(name, str) or not isinstance(value, str) or any(c in name + value for c in "\r\n"):
            raise WebConfigError(f"{path}: http_server_config.headers: {name!r} is not a header")
        config.headers[name] = value
    return config


def _mapping(value: Any, path: str, key: str) -> dict:
    if not isinstance(value, dict):
        raise WebConfigError(f"{path}: {key}: expected a mapping")
    return value


def _only(doc: dict, allowed: set[str], path: str, prefix: str) -> None:
    unknown = sorted(str(k) for k in doc if k not in allowed)
    if unknown:
        raise WebConfigError(f"{path}: unknown field {prefix}{unknown[0]} (allowed: {', '.join(sorted(allowed))})")


def _tls(section: dict, base: Path, path: str) -> ssl.SSLContext:
    _only(section, TLS_KEYS, path, "tls_server_config.")

    def file(key: str) -> str | None:
        value = section.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise WebConfigError(f"{path}: tls_server_config.{key}: expected a file name")
        return str(base / value)

    cert, key, ca = file("cert_file"), file("key_file"), file("client_ca_file")
    if cert is None or key is None:
        raise WebConfigError(f"{path}: tls_server_config needs both cert_file and key_file")
    auth = section.get("client_auth_type") or "NoClientCert"  # the toolkit's default
    if auth in CLIENT_AUTH_UNVERIFIED:
        raise WebConfigError(
            f"{path}: tls_server_config.client_auth_type: {auth} (a certificate taken unverified) is not supported:"
            " use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        )
    if not isinstance(auth, str) or auth not in CLIENT_AUTH:
        choices = ", ".join(CLIENT_AUTH)
        raise WebConfigError(f"{path}: tls_server_config.client_auth_type: {auth!r} is not one of {choices}")
    if ca is not None and CLIENT_AUTH[auth] == ssl.CERT_NONE:
        # The toolkit's own words: a CA with no policy would look like client auth and check nothing.
        raise WebConfigError(
            f"{path}: tls_server_config: Client CA's have been configured without a Client Auth Policy"
            " (set client_auth_type, e.g. RequireAndVerifyClientCert)"
        )
    if ca is None and CLIENT_AUTH[auth] != ssl.CERT_NONE:
        raise WebConfigError(f"{path}: client_auth_type {auth} needs client_ca_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for bound, attr, default in (("min_version", "minimum_version", "TLS12"), ("max_version", "maximum_version", "")):
        name = section.get(bound) or default
        if name:
            if name not in TLS_VERSIONS:
                choices = ", ".join(TLS_VERSIONS)
                raise WebConfigError(f"{path}: tls_server_config.{bound}: {name!r} is not one of {choices}")
            setattr(context, attr, TLS_VERSIONS[name])
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"{path}: cannot load cert_file/key_file: {_why(exc)}") from None
    context.verify_mode = CLIENT_AUTH[auth]
    if ca is not None:
        try:
            context.load_verify_locations(ca)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(f"{path}: cannot load client_ca_file: {_why(exc)}") from None
    return context


def _why(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
