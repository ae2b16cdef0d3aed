"""sigtop stream: NDJSON lines, one per signal event, with both ends' identity."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time

import pytest

from sigtop.export.stream import EventStream
from sigtop.names import EventKind
from sigtop.recording import read_recording
from tests.conftest import RECORDING
from tests.test_cli import SIGTOP


def test_a_recording_streams_one_line_per_flow_event():
    _head, batches = read_recording(RECORDING)
    out = io.StringIO()
    stream = EventStream(out)
    for batch in batches:
        stream.write(batch)
    lines = out.getvalue().splitlines()
    flow_events = sum(1 for b in batches for e in b.events if e.kind in (EventKind.generate, EventKind.send_done))
    assert len(lines) == stream.lines == flow_events > 100
    docs = [json.loads(line) for line in lines]
    kills = [d for d in docs if d["syscall"] == "kill" and d["signame"] == "SIGUSR1"]
    assert kills[0]["sender"]["comm"] == "workload"
    assert kills[0]["target"]["comm"] == "nginx-worker"
    assert "cmdline" in kills[0]["sender"]
    assert any(d["result"].startswith("failed ESRCH") for d in docs)
    assert any(d["target"] and d["target"].get("comm") == "[red]x" for d in docs)  # literal, never markup
    assert all("\x1b" not in line for line in lines)


@pytest.mark.bpf
def test_live_stream_lines_then_a_clean_end_when_the_reader_goes(bpf_ready, spawn):
    child = spawn()
    child.ask("ignore SIGUSR2")
    streamer = subprocess.Popen(
        [*SIGTOP, "stream", "--pid", str(child.pid), "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert streamer.stderr.readline().startswith("Tracing")
        for _ in range(7):
            os.kill(child.pid, signal.SIGUSR2)
        os.kill(child.pid, 0)
        docs = [json.loads(streamer.stdout.readline()) for _ in range(8)]
        assert [d["result"] for d in docs] == ["ignored"] * 7 + ["probe"]
        assert {d["sender"]["pid"] for d in docs} == {os.getpid()}
        assert {d["target"]["pid"] for d in docs} == {child.pid}
        assert docs[0]["target"]["started"] > 0
        streamer.stdout.close()  # the reader goes away (as `| head` does)
        deadline = time.monotonic() + 20
        while streamer.poll() is None and time.monotonic() < deadline:
            os.kill(child.pid, signal.SIGUSR2)  # something to write, so the broken pipe is seen
            time.sleep(0.1)
        assert streamer.returncode == 0
        assert "Traceback" not in streamer.stderr.read()
    finally:
        if streamer.poll() is None:
            streamer.kill()
            streamer.wait()
