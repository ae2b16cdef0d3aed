"""README promises that had no test of their own (tests/README.md maps each promise to its test)."""

from __future__ import annotations

import copy
import os
import signal
import subprocess

import pytest

from sigtop.model import SignalModel
from sigtop.recording import read_recording
from sigtop.registry import MAX_PROCS
from sigtop.sources.replay import ReplaySource
from sigtop.tables.alerts import MAX_ALERTS
from sigtop.tables.flows import evicted_json, evicted_summary
from sigtop.ui.app import SigtopApp
from sigtop.wire import Batch, ProcInfo, ThreadDelta
from tests.conftest import RECORDING, read_line
from tests.test_cli import SIGTOP, run_unprivileged
from tests.uihelp import settled


@pytest.fixture(scope="module")
def batches():
    return read_recording(RECORDING)[1]


def header(app: SigtopApp) -> str:
    return str(app.query_one("#header").render())


async def test_the_header_says_when_the_flow_map_fills_and_when_it_is_full(batches):
    filling = copy.deepcopy(batches)
    filling[-1].map_fill = {"flows": 0.8, "threads": 0.1}
    app = SigtopApp(ReplaySource(filling, speed=0))
    async with app.run_test(size=(160, 40)) as pilot:
        await settled(pilot)
        assert "flow map 80%" in header(app)
        assert "FLOW MAP FULL" not in header(app)
    full = copy.deepcopy(batches)
    full[-1].stats.flows_full = 12
    app = SigtopApp(ReplaySource(full, speed=0))
    async with app.run_test(size=(160, 40)) as pilot:
        await settled(pilot)
        assert "FLOW MAP FULL: 12 in overflow rows" in header(app)


async def test_the_header_says_how_many_rows_were_evicted_and_whose(batches):
    """Rows given up to the row cap are said on screen, with whose they were (README: the
    evicted totals "stay visible in the TUI, the JSON and the exporter")."""
    app = SigtopApp(ReplaySource(copy.deepcopy(batches), speed=0))
    app.model.max_rows = 3  # the recording's flows do not fit: some go
    async with app.run_test(size=(160, 40)) as pilot:
        await settled(pilot)
        evicted = app.model.evicted_rows
        assert evicted > 0
        top = evicted_summary(evicted_json(app.model.flows_table), most=2)
        assert f"evicted {evicted:,} rows: {top}" in header(app), header(app)
        assert top.split()[0] in {e["user"] for e in evicted_json(app.model.flows_table)}
    app = SigtopApp(ReplaySource(copy.deepcopy(batches), speed=0))
    async with app.run_test(size=(160, 40)) as pilot:
        await settled(pilot)
        assert "evicted" not in header(app)  # nothing went: nothing said


def test_the_process_registry_holds_at_most_its_cap():
    model = SignalModel()
    procs = [ProcInfo(pid, pid, f"p{pid}", started=1000.0) for pid in range(1, MAX_PROCS + 5_001)]
    model.apply(Batch(ts=1, interval_s=1, procs=procs))
    assert len(model.procs) == MAX_PROCS
    assert min(model.procs) == 5_001  # the least recently seen went


def test_alerts_are_kept_up_to_their_cap():
    model = SignalModel()
    for i in range(MAX_ALERTS + 500):  # one SROP alert per process: no once-a-minute folding
        thread = ThreadDelta(10_000 + i, 10_000 + i, "x", 1, 0, 0, 1.0, unmatched=1)
        model.apply(Batch(ts=1_000.0 + i, interval_s=1, threads=[thread]))
    assert len(model.alerts) == MAX_ALERTS
    assert model.alerts[-1].pid == 10_000 + MAX_ALERTS + 499  # the newest kept


def test_counters_never_go_down_while_rows_are_evicted(batches):
    """The exporter counts deltas, never the model's rows: a model that evicts (here 2 rows) loses
    rows, the counters stay monotonic and total."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from sigtop.export.prometheus import SignalMetrics

    metrics, model = SignalMetrics(), SignalModel(max_rows=2)
    registry = CollectorRegistry()
    registry.register(metrics)
    last: dict[tuple, float] = {}
    for batch in copy.deepcopy(batches):
        metrics.fold(model, batch)
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            if family.type != "counter":
                continue
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                assert sample.value >= last.get(key, 0.0), key
                last[key] = sample.value
    assert model.evicted_rows > 0
    assert last[("sigtop_model_rows_evicted_total", ())] == model.evicted_rows  # said, and no count lost
    whose = {labels: v for (name, labels), v in last.items() if name == "sigtop_flow_rows_evicted_total"}
    expected = {(("comm", e["comm"]), ("user", e["user"])): e["rows"] for e in evicted_json(model.flows_table)}
    assert whose == expected
    assert sum(whose.values()) > 0
    total = sum(v for (name, _labels), v in last.items() if name == "sigtop_signals_total")
    assert total == model.total_signals == 743  # every signal of the recording, though rows went


def test_the_exporter_listens_on_loopback_by_default():
    from sigtop.cli import build_parser

    args = build_parser().parse_args(["exporter"])
    assert args.listen == ("127.0.0.1", 9464)


def test_a_recording_needs_no_root():
    """batch over a recording, as an unprivileged user: the report, no BPF, exit 0."""
    result = run_unprivileged("batch", "--from", str(RECORDING), "--json")
    assert result.returncode == 0, result.stderr
    assert '"total_signals": 743' in result.stdout


@pytest.mark.bpf
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_batch_prints_its_results_when_told_to_stop(bpf_ready, spawn, signum):
    child = spawn()
    child.ask("ignore SIGUSR2")
    batch = subprocess.Popen(
        [*SIGTOP, "batch", "--json", "--pid", str(child.pid), "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
    )  # fmt: skip
    try:
        assert read_line(batch.stderr).startswith("Tracing")
        for _ in range(9):
            os.kill(child.pid, signal.SIGUSR2)
        batch.send_signal(signum)  # ours
        out, err = batch.communicate(timeout=30)
    finally:
        if batch.poll() is None:
            batch.kill()
            batch.wait()
    assert batch.returncode == 0, err
    import json

    (flow,) = [f for f in json.loads(out)["flows"] if f["target_pid"] == child.pid]
    assert flow["count"] == 9  # counted to the end: the last interval included


@pytest.mark.bpf
def test_detail_events_are_decoded_up_to_the_cap_and_the_rest_counted(bpf_ready, spawn):
    """More events in one interval than the decode budget (120,000/s): the counts stay exact, at
    most the budget is decoded, and every other event is counted skipped."""
    from sigtop.live.collector import MAX_EVENTS_PER_S, BpfSource
    from tests.conftest import collect_until, own_config

    child = spawn()
    child.ask("ignore SIGUSR2")
    source = BpfSource(own_config(child.pid, interval_s=0.5))
    source.attach()
    try:
        source.read_events()
        source.collect()
        sent = 200_000
        for _ in range(sent):
            os.kill(child.pid, signal.SIGUSR2)
        model = collect_until(source, None)
    finally:
        source.detach()
    (row,) = [r for r in model.flows.values() if r.key.target_pid == child.pid]
    assert row.count == sent
    assert model.events_received <= MAX_EVENTS_PER_S * 0.5 * 1.01
    assert model.events_received + model.stats.events_dropped == model.stats.events_sent
    assert model.stats.events_sent + model.stats.events_lost >= sent


def test_every_sink_over_a_recording_keeps_what_batch_keeps(tmp_path):
    """-s over a recording means the same to record and the exporter as to batch: only that
    signal's flows (record once kept every flow and wrote the filter into its header)."""
    import json
    import time
    import urllib.request
    from collections import Counter

    from tests.test_exporter import exporter_from_recording, free_port

    def flows(path, *args: str) -> dict[tuple, int]:
        result = subprocess.run([*SIGTOP, "batch", "--from", str(path), "--json", *args],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)["flows"]
        return {(f["sender_pid"], f["target_pid"], f["signame"]): f["count"] for f in rows}

    wanted = flows(RECORDING, "-s", "USR2")
    assert {k[2] for k in wanted} == {"SIGUSR2"}
    assert sum(wanted.values()) == 200
    out = tmp_path / "usr2.jsonl"
    result = subprocess.run([*SIGTOP, "record", "--from", str(RECORDING), "-s", "USR2", "-o", str(out)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert flows(out) == wanted

    result = subprocess.run([*SIGTOP, "stream", "--from", str(RECORDING), "-s", "USR2"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    signals = [(d["sender"]["pid"], d["target"]["pid"], d["signame"]) for d in lines if d["type"] == "signal"]
    assert Counter(signals) == wanted

    port = free_port()
    proc = exporter_from_recording(port, "-s", "USR2")
    try:
        deadline = time.monotonic() + 20
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # loopback
                text = response.read().decode()
            lines = [line for line in text.splitlines() if line.startswith("sigtop_signals_total{")]
            total = sum(float(line.rsplit(" ", 1)[1]) for line in lines)
            if total >= 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert lines
        assert all('signal="SIGUSR2"' in line for line in lines), lines
        assert total == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
