"""sigtop serve: the view in a real browser (Debian's headless Chromium, driven over its DevTools
protocol), a bounded number of visitors, websockets only from the server's own page, and every
visitor's process ended with the server. Over the recording: no root, no BPF.

The browser check reads the screen from the page's own xterm.js terminal (its buffer, what it
draws), not from the websocket: the page loaded, ran textual.js, and rendered the app's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import RECORDING, read_line
from tests.test_cli import SIGTOP, assert_one_line_error, run_unprivileged

START_S = 30.0  # a server or a browser up and answering, on a busy 2-core box
SCREEN_S = 60.0  # a visitor's sigtop started and its screen drawn in the page
CDP_CALL_S = 20.0  # one DevTools command answered
CHROMIUM = "/usr/bin/chromium"
COMM = "nginx-worker"  # a sender or target comm in the recording's flows table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    """Running (a zombie is not: it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ended(pid: int, timeout_s: float) -> bool:
    """Wait (without reaping) until pid has exited: a zombie, or gone."""
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """End a process this test started, then what is left of its process group (a browser's renderers,
    a server's visitors; process_group=0 made the group the test's own). The group is signalled while
    its leader is not yet reaped, so its id cannot belong to anyone else's processes."""
    if proc.returncode is None:  # not reaped: the pid, and so the group's id, is still this process's
        proc.terminate()
        if not ended(proc.pid, timeout_s):
            proc.kill()
            ended(proc.pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout_s)


def children(pid: int) -> list[int]:
    """The processes whose parent is pid (a server's visitors)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


@contextlib.contextmanager
def serving(*args: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`sigtop serve` on a free loopback port: the process and its URL, stopped however the test ends."""
    port = free_port()
    proc = subprocess.Popen(
        [*SIGTOP, "serve", "--listen", f"127.0.0.1:{port}", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, process_group=0, cwd="/",
    )  # fmt: skip
    try:
        line = read_line(proc.stderr, START_S, "the server's start")
        assert f"http://127.0.0.1:{port}/" in line, line
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        proc.stderr.close()


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SIGTOP, "serve", *args], capture_output=True, text=True, timeout=60, cwd="/")


# ---- bad input: one line, exit 2 ----


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("/nonexistent/cap.jsonl",),
        ("--listen", "127.0.0.1:99999", str(RECORDING)),
        ("--listen", "nowhere", str(RECORDING)),
        ("--max-visitors", "0", str(RECORDING)),
        ("--live", str(RECORDING)),
        ("--session", "1", str(RECORDING)),  # the visitors' own flag, from no server
    ],
)
def test_bad_input_is_one_line(args):
    result = run_serve(*args)
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_the_live_view_needs_root_and_says_so_before_serving():
    """Said once, at the start: not in each visitor's browser."""
    assert_one_line_error(run_unprivileged("serve", "--live"), "needs root")


def test_a_taken_port_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve("--listen", f"127.0.0.1:{port}", str(RECORDING))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"sigtop: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_listens_on_loopback_by_default_and_warns_beyond_it():
    from sigtop.cli import build_parser

    assert build_parser().parse_args(["serve", "x"]).listen[0] == "127.0.0.1"
    port = free_port()
    proc = subprocess.Popen(
        [*SIGTOP, "serve", "--listen", f"0.0.0.0:{port}", str(RECORDING)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, process_group=0, cwd="/",
    )  # fmt: skip
    try:
        warning = read_line(proc.stderr, START_S, "the warning")
        assert warning.startswith(f"sigtop: warning: serve on 0.0.0.0:{port} is reachable from other machines")
        assert "no TLS and no login" in warning
    finally:
        stop(proc)
        proc.stderr.close()


# ---- visitors: counted, capped, same-origin, ended with the server (no browser: aiohttp's client) ----


async def visit(session: aiohttp.ClientSession, url: str, origin: str | None = None) -> aiohttp.ClientWebSocketResponse:
    headers = {"Origin": origin or url}
    return await session.ws_connect(
        f"{url}/ws?width=160&height=40", headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=10)
    )


async def screen_until(ws: aiohttp.ClientWebSocketResponse, text: str) -> None:
    """Read the visitor's screen updates until `text` is in them (or fail after SCREEN_S)."""
    seen = b""
    deadline = time.monotonic() + SCREEN_S
    while text.encode() not in seen:
        msg = await asyncio.wait_for(ws.receive(), max(0.1, deadline - time.monotonic()))
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        seen += msg.data


async def status(session: aiohttp.ClientSession, url: str, **kw) -> tuple[int, str]:
    async with session.get(url, **kw) as response:
        return response.status, await response.text()


async def refused(session: aiohttp.ClientSession, url: str, origin: str | None = None) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await visit(session, url, origin)
    return caught.value.status


def test_visitors_are_capped_and_told_why():
    async def check(url: str) -> None:
        timeout = aiohttp.ClientTimeout(total=SCREEN_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            first = await visit(session, url)
            await screen_until(first, COMM)
            assert await refused(session, url) == 503  # a second visitor while the first is there
            code, text = await status(session, f"{url}/")
            assert code == 503
            assert "--max-visitors 1" in text
            assert "Try again when one leaves" in text
            await first.close()
            # The slot is free once the first visitor's process is gone, not before.
            deadline = time.monotonic() + START_S
            while (await status(session, f"{url}/"))[0] == 503:
                assert time.monotonic() < deadline, "the first visitor's slot was never freed"
                await asyncio.sleep(0.2)
            again = await visit(session, url)
            await screen_until(again, COMM)
            await again.close()

    with serving("--max-visitors", "1", "--speed", "0", str(RECORDING)) as (_proc, url):
        asyncio.run(check(url))


def test_only_the_servers_own_page_may_start_a_session():
    """Websockets are not bound by CORS: another site's page in the visitor's browser could open one
    and read the screen; and on loopback a DNS-rebound name must not reach the page either."""

    async def check(url: str) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=START_S)) as session:
            assert await refused(session, url, "http://evil.example") == 403
            assert await refused(session, url, "null") == 403
            port = url.rsplit(":", 1)[1]
            code, _ = await status(session, f"{url}/", headers={"Host": f"rebound.example:{port}"})
            assert code == 403
            code, page = await status(session, f"{url}/")
            assert code == 200
            assert f'data-session-websocket-url="ws://127.0.0.1:{port}/ws"' in page

    with serving(str(RECORDING)) as (_proc, url):
        asyncio.run(check(url))


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_every_visitors_process_ends_with_the_server(how):
    """SIGTERM: the server tells each visitor's sigtop to quit and exits 0; SIGKILL: each visitor's
    sigtop is sent SIGTERM by the kernel (PR_SET_PDEATHSIG): a live one would be a root tracer."""

    async def connect(url: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCREEN_S))
        ws = await visit(session, url)
        await screen_until(ws, COMM)
        return session, ws  # both held: a collected websocket would end its visitor early

    with serving("--max-visitors", "2", "--speed", "0", str(RECORDING)) as (proc, url):
        loop = asyncio.new_event_loop()
        sessions = []
        try:
            sessions += [loop.run_until_complete(connect(url)) for _ in range(2)]
            visitors = children(proc.pid)
            assert len(visitors) == 2, visitors
            proc.send_signal(how)
            assert proc.wait(START_S) == (0 if how == signal.SIGTERM else -signal.SIGKILL)
            deadline = time.monotonic() + START_S
            while any(alive(pid) for pid in visitors):
                assert time.monotonic() < deadline, [pid for pid in visitors if alive(pid)]
                time.sleep(0.1)
        finally:
            for session, _ws in sessions:
                loop.run_until_complete(session.close())
            loop.close()


# ---- a real browser: Debian's headless Chromium over the DevTools protocol ----

# Run before textual.js: keep each xterm.js Terminal it makes (textual.js assigns this.terminal in
# its constructor: the assignment runs this inherited setter), to read what the page draws.
KEEP_TERMINALS = """
(() => {
  const terminals = [];
  Object.defineProperty(Object.prototype, "terminal", {
    configurable: true,
    set(value) {
      Object.defineProperty(this, "terminal", {value, writable: true, configurable: true, enumerable: true});
      if (value && typeof value.write === "function") terminals.push(value);
    },
  });
  window.__sigtopTerminals = terminals;
  window.__sigtopScreen = () => terminals.map(t => {
    const buffer = t.buffer.active, rows = [];
    for (let i = 0; i < buffer.length; i++) rows.push(buffer.getLine(i).translateToString(true));
    return rows.join("\\n");
  }).join("\\n");
})();
"""


class DevTools:
    """The smallest DevTools protocol client: a command, and its answer (events are skipped)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.last_id = 0

    async def call(self, method: str, **params):
        self.last_id += 1
        await self.ws.send_json({"id": self.last_id, "method": method, "params": params})
        deadline = time.monotonic() + CDP_CALL_S
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), max(0.1, deadline - time.monotonic()))
            assert msg.type == aiohttp.WSMsgType.TEXT, f"DevTools went away during {method}: {msg}"
            answer = json.loads(msg.data)
            if answer.get("id") == self.last_id:
                assert "error" not in answer, f"{method}: {answer['error']}"
                return answer["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def screen_until(self, text: str, what: str) -> str:
        deadline = time.monotonic() + SCREEN_S
        screen = ""
        while time.monotonic() < deadline:
            screen = await self.evaluate("window.__sigtopScreen ? window.__sigtopScreen() : ''") or ""
            if text in screen:
                return screen
            await asyncio.sleep(0.2)
        raise AssertionError(f"{what}: no {text!r} in the page's terminal within {SCREEN_S} s:\n{screen}")

    async def press(self, key: str, code: str) -> None:
        """A key as a keyboard types it: keyDown with its text, then keyUp (Input.dispatchKeyEvent)."""
        vk = ord(key.upper()) if key.isalnum() else 0
        common = {"key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk}
        await self.call("Input.dispatchKeyEvent", type="keyDown", text=key, unmodifiedText=key, **common)
        await self.call("Input.dispatchKeyEvent", type="keyUp", **common)


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[int]:
    """Headless Chromium with a fresh profile, DevTools on a loopback port of its choosing: that port."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("no Chromium: scripts/setup.sh test installs Debian's chromium (make setup)")
    proc = subprocess.Popen(
        [
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--window-size=1600,1000", "about:blank",
        ],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0,
    )  # fmt: skip
    try:
        active = profile / "DevToolsActivePort"  # Chromium writes its port here once DevTools listens
        deadline = time.monotonic() + START_S
        while not (active.exists() and active.read_text().count("\n") >= 1):
            assert proc.poll() is None, f"Chromium exited ({proc.returncode}) before DevTools listened"
            assert time.monotonic() < deadline, f"Chromium's DevTools did not listen within {START_S} s"
            time.sleep(0.1)
        yield int(active.read_text().split()[0])
    finally:
        stop(proc)


async def browse(devtools_port: int, url: str) -> None:
    timeout = aiohttp.ClientTimeout(total=START_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(f"http://127.0.0.1:{devtools_port}/json/list") as response:
            pages = [t for t in await response.json() if t["type"] == "page"]
        assert pages, "Chromium has no page"
        async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            cdp = DevTools(ws)
            await cdp.call("Page.enable")
            await cdp.call("Page.addScriptToEvaluateOnNewDocument", source=KEEP_TERMINALS)
            await cdp.call("Emulation.setFocusEmulationEnabled", enabled=True)  # headless: a focused page
            navigated = await cdp.call("Page.navigate", url=f"{url}/")
            assert "errorText" not in navigated, navigated
            # The page loads: textual.js made its terminal in #terminal.
            deadline = time.monotonic() + START_S
            while not await cdp.evaluate(
                "!!document.querySelector('#terminal .xterm') && window.__sigtopTerminals.length"
            ):
                assert time.monotonic() < deadline, "the page made no terminal"
                await asyncio.sleep(0.2)
            # The flows table of the recording shows.
            flows = await cdp.screen_until(COMM, "the flows table")
            assert "MASK" not in flows
            # A key typed in the page reaches the app: 2 opens the Signalfd table.
            await cdp.evaluate("window.__sigtopTerminals[0].focus()")
            await cdp.press("2", "Digit2")
            # Its columns come first, its rows with the next snapshot (a busy box: a moment later).
            signalfd = await cdp.screen_until("MASK", "the Signalfd table after pressing 2")
            deadline = time.monotonic() + SCREEN_S
            while "sfd-daemon" not in signalfd.split("MASK", 1)[-1]:  # a row under its header
                assert time.monotonic() < deadline, f"the Signalfd table showed no rows:\n{signalfd}"
                await asyncio.sleep(0.2)
                signalfd = await cdp.screen_until("MASK", "the Signalfd table after pressing 2")


@pytest.mark.browser
def test_a_browser_shows_the_recording_and_its_keys_reach_the_app():
    with (
        tempfile.TemporaryDirectory(prefix="sigtop-chromium-", ignore_cleanup_errors=True) as profile,
        serving("--speed", "0", str(RECORDING)) as (_server, url),
        chromium(Path(profile)) as devtools_port,
    ):
        asyncio.run(asyncio.wait_for(browse(devtools_port, url), SCREEN_S * 3))
