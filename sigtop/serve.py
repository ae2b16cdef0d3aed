"""sigtop serve: the view in a web browser, through textual-serve.

textual-serve starts one process per visitor (the command it is given, on
Textual's web driver) and relays its screen over a websocket. That process
is `sigtop serve --session ...`: the same app over the same source as in a
terminal. Over a recording it needs no root; live, each visitor's process
is a root BPF tracer, so `ViewServer` caps how many run at once and refuses
the rest with a message (textual-serve itself has no limit).

What this adds to textual-serve's Server (read with textual-serve 1.1.3):
- the cap, counted over each visitor's whole process life (a slot is free
  only once its process is gone);
- same-origin websockets: a page of another site open in the visitor's
  browser cannot start a session and read the screen (websockets are not
  bound by CORS); on loopback the Host header must name loopback too, so a
  DNS-rebound name cannot either;
- page and websocket URLs from the Host the visitor used, not the listen
  address (0.0.0.0 is no address a browser can reach);
- an end that ends every visitor's process (told to quit, then killed).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from sigtop.export.metrics_server import beyond_loopback

QUIT_S = 5.0  # a visitor's process told to quit has this long to end before it is killed
MAX_CELLS = 1000  # a browser asking for a larger terminal gets this many columns or rows


class ServeError(Exception):
    """One line for the user (the port is taken, say)."""


def session_command(argv: list[str]) -> str:
    """The shell command textual-serve runs per visitor: this sigtop, as this one runs (isolated if so)."""
    python = [sys.executable, *(["-I"] if sys.flags.isolated else []), "-m", "sigtop"]
    return "exec " + shlex.join([*python, *argv])  # exec: the process textual-serve waits on is sigtop


def end_with_server(server: int) -> None:
    """In a visitor's process: be sent SIGTERM when the server (pid `server`) goes, however it goes.

    A live visitor is a root tracer; without this it would outlive a killed server."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != server:  # the server went before the prctl took, or this is no visitor of it
        raise ServeError("--session is for the processes sigtop serve starts for its visitors")


class ViewServer(Server):
    """textual-serve's Server with a visitor cap, same-origin websockets and a clean end."""

    def __init__(self, command: str, host: str, port: int, max_visitors: int, what: str, refusal: str) -> None:
        super().__init__(command, host=host, port=port, title=f"sigtop: {what}")
        self.max_visitors = max_visitors
        self.what = what
        self.refusal = refusal  # why the cap is what it is, said to the visitor it refuses
        self.loopback_only = not beyond_loopback(host)
        self.sessions: dict[AppService, web.WebSocketResponse] = {}

    # ---- requests ----------------------------------------------------------

    def _foreign(self, request: web.Request, websocket: bool = False) -> web.Response | None:
        """A 403 for a request that did not come from this server's own page, else None."""
        if self.loopback_only and beyond_loopback(request.url.host or ""):
            return web.Response(status=403, text=f"sigtop serve: {request.host!r} is not this loopback server\n")
        if websocket and request.headers.get("Origin") != f"http://{request.host}":
            return web.Response(status=403, text="sigtop serve: websocket from another origin refused\n")
        return None

    def _full(self) -> web.Response | None:
        if len(self.sessions) < self.max_visitors:
            return None
        text = (
            f"sigtop serve: {self.what} already has {len(self.sessions)} visitor(s), its limit "
            f"(--max-visitors {self.max_visitors}): {self.refusal}. Try again when one leaves.\n"
        )
        return web.Response(status=503, text=text, headers={"Retry-After": "10"})

    async def handle_index(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        """The page, whose websocket and static URLs use the Host the visitor used."""
        refused = self._foreign(request) or self._full()
        if refused is not None:
            return refused
        base = f"http://{request.host}"
        context: dict[str, Any] = {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": f"ws://{request.host}{request.app.router['websocket'].url_for()}",
            "config": {
                "static": {"url": f"{base}{request.app.router['static'].url_for(filename='/')}".rstrip("/") + "/"}
            },
            "application": {"name": self.title},
        }
        return aiohttp_jinja2.render_template("app_index.html", request, context)

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        """One visitor: their own sigtop process, relayed until either side ends."""
        refused = self._foreign(request, websocket=True) or self._full()
        if refused is not None:
            return refused
        width = min(max(to_int(request.query.get("width", "80"), 80), 1), MAX_CELLS)
        height = min(max(to_int(request.query.get("height", "24"), 24), 1), MAX_CELLS)
        websocket = web.WebSocketResponse(heartbeat=15)
        service = AppService(
            self.command,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=websocket.close,
            download_manager=self.download_manager,
        )
        self.sessions[service] = websocket  # no await since the check: the count cannot be overtaken
        peer = request.remote or "?"
        self._say(f"visitor from {peer}: {len(self.sessions)} of {self.max_visitors}")
        try:
            await websocket.prepare(request)
            await service.start(width, height)
            await self._process_messages(websocket, service)
        except (asyncio.CancelledError, ConnectionError):
            pass  # the server is stopping, or the visitor went
        except Exception as exc:  # a websocket message textual-serve could not read: that visitor ends
            self._say(f"visitor from {peer}: {exc!r}")
        finally:
            await self._end_session(service)
            del self.sessions[service]
            self._say(f"visitor from {peer} left: {len(self.sessions)} of {self.max_visitors}")
            if not websocket.closed:
                await websocket.close()
        return websocket

    async def _end_session(self, service: AppService) -> None:
        """Tell the visitor's process to quit, and kill it if it has not within QUIT_S."""
        try:
            await asyncio.wait_for(service.stop(), QUIT_S)
        except (TimeoutError, RuntimeError, ConnectionError):
            pass
        process = service._process  # textual-serve keeps it private; the cap needs to know it is gone
        if process is None or process.returncode is not None:
            return
        try:
            await asyncio.wait_for(process.wait(), QUIT_S)
        except TimeoutError:
            process.kill()
            await process.wait()

    # ---- the server's life -------------------------------------------------

    def _say(self, line: str) -> None:
        print(f"sigtop: serve: {line}", file=sys.stderr, flush=True)

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM, then end every visitor's process; ServeError if it cannot listen."""
        asyncio.run(self._run())

    async def _run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        runner = web.AppRunner(await self._make_app(), handle_signals=False, access_log=None, shutdown_timeout=QUIT_S)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, self.host, self.port).start()
            except OSError as exc:
                why = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio's strerror names the address again
                raise ServeError(f"cannot listen on {self.host}:{self.port}: {why}") from None
            host = f"[{self.host}]" if ":" in self.host else self.host
            self._say(f"{self.what} on http://{host}:{self.port}/ (at most {self.max_visitors} visitor(s) at once)")
            await stop.wait()
            self._say("stopping: ending every visitor's sigtop")
            for websocket in list(self.sessions.values()):
                await websocket.close()  # each handler then ends its process (_end_session)
            for _ in range(int(QUIT_S * 2 / 0.1)):
                if not self.sessions:
                    break
                await asyncio.sleep(0.1)
            for service in list(self.sessions):  # handlers that did not end their process in time
                if service._process is not None and service._process.returncode is None:
                    service._process.kill()
        finally:
            await runner.cleanup()

    async def on_startup(self, app: web.Application) -> None:
        """textual-serve prints a logo on stdout here: sigtop says where it serves on stderr instead (run)."""
