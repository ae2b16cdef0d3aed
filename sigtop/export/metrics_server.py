"""The exporter's HTTP server: /metrics on the event loop, bounded, timed out, TLS and basic auth.

prometheus_client's own server spends a thread per connection and waits
forever on each: 500 half-open connections from any local user pin 500
threads in a root process. This one is a coroutine per connection on the
loop that folds the batches (so a scrape sees whole collections, never half
of one), with:

- a cap on open connections, counted from the accept (the TLS handshake is
  done here, not by the listener, so it counts too); when full, the oldest
  connection that is unfinished (in its handshake, sending its request head,
  or waiting on a bcrypt check) is dropped for the new one, so a flood of
  slow, half-open or wrong-password connections cannot keep Prometheus out;
- a time limit on the TLS handshake and on each request's head (slowloris),
  and on a kept-alive connection's silence;
- 404 for any path but /metrics (and a landing page on /), 405 for any
  method but GET and HEAD;
- what the web config asks (sigtop.export.webconfig): TLS, and basic auth
  checked with bcrypt off the loop, a few checks at a time, credentials
  that matched once checked on the loop without bcrypt.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import gzip
import ipaddress
import socket
import sys
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from sigtop.export.webconfig import WebConfig

MAX_CONNECTIONS = 256
HEAD_TIMEOUT_S = 5.0  # a request's head (and a TLS handshake) must arrive within this
IDLE_TIMEOUT_S = 60.0  # a kept-alive connection may wait this long for its next request
MAX_HEAD_BYTES = 16 << 10
BCRYPT_AT_ONCE = 2  # each check takes a core for ~50 ms: more would only starve the loop's thread
LISTEN_BACKLOG = 1024  # the kernel caps it at net.core.somaxconn
LANDING = b"""<html><head><title>sigtop exporter</title></head>
<body><h1>sigtop exporter</h1><p><a href="/metrics">Metrics</a></p></body></html>
"""
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


def beyond_loopback(host: str) -> bool:
    """Whether listening on host is reachable from other machines (a name counts as reachable)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    keep_alive: bool


class HeadError(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, web: WebConfig | None = None) -> None:
        self.registry = registry
        self.web = web or WebConfig()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        # Unfinished connections (in the TLS handshake, sending a request head, waiting on
        # bcrypt), oldest first: the first to go when full.
        self._waiting: dict[asyncio.StreamWriter, None] = {}
        self._bcrypt = asyncio.Semaphore(BCRYPT_AT_ONCE)

    async def start(self, host: str, port: int) -> None:
        """Listen (OSError if it cannot)."""
        # No ssl= here: the listener would hold each handshake outside the cap (see _serve).
        self._server = await asyncio.start_server(
            self._serve,
            host,
            port,
            backlog=LISTEN_BACKLOG,
            limit=MAX_HEAD_BYTES,
            reuse_address=True,
        )

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    def _make_room(self) -> bool:
        """At the cap, drop the oldest unfinished connection; False if none is."""
        if len(self._open) < MAX_CONNECTIONS:
            return True
        for writer in self._waiting:
            # Out of the count now: abort closes its socket on the loop's next turn, whatever its coroutine awaits.
            self._waiting.pop(writer)
            self._open.discard(writer)
            writer.transport.abort()
            return True
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._make_room():
            writer.transport.abort()
            return
        self._open.add(writer)
        raw = writer.transport
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self.web.tls is not None and not await self._handshake(writer):
                return
            first = True
            while True:
                self._waiting[writer] = None
                try:
                    # A new connection must send its head at once; a kept-alive one may idle first.
                    request = await self._read_head(reader, first)
                except HeadError as exc:
                    with contextlib.suppress(ConnectionError):
                        await self._respond(writer, exc.status, b"", keep_alive=False)
                    return
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
                    return
                finally:
                    self._waiting.pop(writer, None)
                first = False
                try:
                    await self._answer(writer, request)
                except ConnectionError:
                    return
                if not request.keep_alive:
                    return
        finally:
            self._open.discard(writer)
            self._waiting.pop(writer, None)
            if writer.transport is None:  # a handshake the peer left
                raw.abort()
            else:
                writer.close()

    async def _handshake(self, writer: asyncio.StreamWriter) -> bool:
        """TLS on an accepted connection; False if it failed, was overdue, or was dropped.

        Done here, not by the listener, so a connection that never finishes its
        handshake counts against the cap and can be dropped from its accept. It
        must be _serve's first await: the ClientHello is then still unread.
        """
        self._waiting[writer] = None
        try:
            await writer.start_tls(self.web.tls, ssl_handshake_timeout=HEAD_TIMEOUT_S)
        except OSError:  # ssl.SSLError is one, and so are an overdue handshake and an abort
            return False
        except AttributeError:
            if writer.transport is not None:
                raise
            return False  # Python 3.11: a peer gone mid-handshake ends it with no error and no transport
        finally:
            self._waiting.pop(writer, None)
        return True

    async def _read_head(self, reader: asyncio.StreamReader, first: bool) -> Request:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S if first else IDLE_TIMEOUT_S):
                raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HeadError(431) from None
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HeadError(400)
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HeadError(400)
            headers[name.lower()] = value.strip()
        if "content-length" in headers or "transfer-encoding" in headers:
            # No method sigtop answers has a body; reading one would be a way to hold the connection.
            raise HeadError(405 if method not in ("GET", "HEAD") else 400)
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        return Request(method, target.split("?", 1)[0], headers, keep_alive)

    async def _answer(self, writer: asyncio.StreamWriter, request: Request) -> None:
        if request.method not in ("GET", "HEAD"):
            await self._respond(writer, 405, b"only GET and HEAD\n", request.keep_alive, {"Allow": "GET, HEAD"})
            return
        if self.web.users and not await self._authorised(writer, request.headers.get("authorization", "")):
            extra = {"WWW-Authenticate": 'Basic realm="sigtop"'}
            await self._respond(writer, 401, b"Unauthorized\n", request.keep_alive, extra)
            return
        if request.path == "/":
            await self._respond(writer, 200, LANDING, request.keep_alive, {"Content-Type": "text/html"}, request)
            return
        if request.path != "/metrics":
            await self._respond(writer, 404, b"Not Found: the metrics are on /metrics\n", request.keep_alive)
            return
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        try:
            body = encoder(self.registry)
        except Exception as exc:  # a collector failed: say so to the scraper, keep serving
            print(f"sigtop: exporter: a scrape failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            await self._respond(writer, 500, b"collection failed\n", False)
            return
        extra = {"Content-Type": content_type}
        if "gzip" in request.headers.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            extra["Content-Encoding"] = "gzip"
        await self._respond(writer, 200, body, request.keep_alive, extra, request)

    async def _authorised(self, writer: asyncio.StreamWriter, header: str) -> bool:
        """Whether the request's basic auth matches; ConnectionError if it was dropped while waiting."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        if self.web.verified(user, password):
            return True
        # bcrypt is slow by design: a few at a time, and the wait counts as unfinished, so
        # connections sending wrong passwords can be dropped to make room like slow heads.
        self._waiting[writer] = None
        try:
            async with self._bcrypt:
                if writer.transport.is_closing():
                    raise ConnectionError("dropped to make room")
                matched = await asyncio.to_thread(self.web.check, user, password)
        finally:
            self._waiting.pop(writer, None)
        if writer.transport.is_closing():
            raise ConnectionError("dropped to make room")
        return matched

    async def _respond(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        keep_alive: bool,
        headers: dict[str, str] | None = None,
        request: Request | None = None,
    ) -> None:
        head = [f"HTTP/1.1 {status} {REASONS[status]}"]
        fields = {"Content-Type": "text/plain; charset=utf-8"} | (headers or {}) | self.web.headers
        fields["Content-Length"] = str(len(body))
        fields["Connection"] = "keep-alive" if keep_alive else "close"
        head += [f"{k}: {v}" for k, v in fields.items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if request is None or request.method != "HEAD":
            data += body
        writer.write(data)
        try:
            # A reader that stops reading holds a connection only as long as a head may take.
            async with asyncio.timeout(HEAD_TIMEOUT_S + len(data) / 100_000):
                await writer.drain()
        except (TimeoutError, ConnectionError, OSError):
            writer.transport.abort()
            raise ConnectionError("the client stopped reading") from None
