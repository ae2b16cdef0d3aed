"""sigtop exporter: exact counts as Prometheus metrics, checked through a real Prometheus."""

from __future__ import annotations

import base64
import copy
import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time
import tracemalloc
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sigtop.export.prometheus import SignalMetrics
from sigtop.model import SignalModel
from sigtop.recording import read_recording
from sigtop.wire import Batch, FlowDelta, FlowKey
from tests.conftest import RECORDING, REQUIRE_BPF, read_line
from tests.test_cli import SIGTOP

RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"


def scrape(metrics: SignalMetrics) -> dict[str, list]:
    registry = CollectorRegistry()
    registry.register(metrics)
    families = text_string_to_metric_families(generate_latest(registry).decode())
    return {f.name: f.samples for f in families}


def test_metrics_from_a_recording_match_the_model():
    _head, batches = read_recording(RECORDING)
    metrics, model = SignalMetrics(), SignalModel()
    for batch in batches:
        metrics.apply(batch)
        model.apply(batch)
    samples = scrape(metrics)
    signals = {
        (s.labels["signal"], s.labels["origin"], s.labels["result"]): s.value
        for s in samples["sigtop_signals"]
        if s.name.endswith("_total")
    }
    assert sum(signals.values()) == model.total_signals
    usr2 = sum(r.results[1] for r in model.flows.values() if r.key.sig == 12)
    assert signals[("SIGUSR2", "kill", "ignored")] == usr2
    errors = [s for s in samples["sigtop_signal_send_errors"] if s.name.endswith("_total")]
    esrch = sum(r.errors[3] for r in model.flows.values())
    assert esrch > 0
    assert {(s.labels["errno"], s.value) for s in errors} == {("ESRCH", float(esrch))}
    for family in samples.values():
        for sample in family:
            assert not {"pid", "tid", "comm"} & set(sample.labels)  # never a per-process label


def test_series_stay_bounded_while_processes_churn():
    """200,000 distinct senders: the label sets do not grow, nor does memory."""
    metrics = SignalMetrics()

    def churn(start: int) -> None:
        for first in range(start, start + 100_000, 1000):
            flows = [
                FlowDelta(FlowKey(pid, pid + 1, pid + 1, 10, 0, 0, 1, 0), 1, 0.0, 0.0)
                for pid in range(first, first + 1000)
            ]
            metrics.apply(Batch(ts=1.0, interval_s=1.0, flows=flows))

    churn(0)
    before = len(scrape(metrics)["sigtop_signals"])
    tracemalloc.start()
    churn(1_000_000)
    grown, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(scrape(metrics)["sigtop_signals"]) == before
    assert grown < 200_000


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if REQUIRE_BPF:  # CI installs Debian's prometheus (make setup): it must be there
            pytest.fail("promtool is missing (make setup installs Debian's prometheus)")
        pytest.skip("promtool is not installed (make setup installs it)")
    return found


def test_alerting_rules_are_valid_and_their_unit_tests_pass():
    tool = promtool()
    subprocess.run([tool, "check", "rules", str(RULES / "sigtop-rules.yml")], check=True, capture_output=True)
    result = subprocess.run([tool, "test", "rules", "sigtop-rules.test.yml"], cwd=RULES, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def end(proc: subprocess.Popen) -> None:
    """Stop a process this test started (SIGTERM, then SIGKILL after 30 s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # ours
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        if REQUIRE_BPF:  # CI installs Debian's prometheus (make setup): it must be there
            pytest.fail("prometheus is missing (make setup installs Debian's)")
        pytest.skip("prometheus is not installed (make setup installs it)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(port: int, promql: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
        return json.load(response)["data"]["result"]


@pytest.mark.bpf
def test_a_real_prometheus_sees_exactly_what_the_workload_sent(bpf_ready, spawn, tmp_path):
    prometheus = prometheus_binary()
    child = spawn()
    child.ask("ignore SIGUSR2")
    child.ask("handle SIGUSR1")
    exporter_port, prometheus_port = free_port(), free_port()
    exporter = subprocess.Popen(
        [
            *SIGTOP,
            "exporter",
            "--listen",
            f"127.0.0.1:{exporter_port}",
            "--interval",
            "0.2",
            "--pid",
            str(child.pid),
            "--details",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: sigtop, static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]}}]\n"
    )
    server = None
    try:
        assert "serving /metrics" in exporter.stderr.readline()
        server = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(37):
            os.kill(child.pid, signal.SIGUSR2)
        for _ in range(3):
            os.kill(child.pid, 0)
        for _ in range(5):
            os.kill(child.pid, signal.SIGUSR1)
            child.wait_ack()
        promql = 'sum(sigtop_signals_total{signal="SIGUSR2", origin="kill", result="ignored"})'
        deadline, seen = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            try:
                result = query(prometheus_port, promql)
            except OSError:  # Prometheus still starting
                result = []
            seen = float(result[0]["value"][1]) if result else None
            if seen == 37:
                break
            time.sleep(0.5)
        assert seen == 37
        probes = query(prometheus_port, 'sum(sigtop_signal_probes_total{syscall="kill"})')
        assert float(probes[0]["value"][1]) == 3
        taken = query(prometheus_port, 'sum(sigtop_signal_latency_seconds_count{signal="SIGUSR1"})')
        assert float(taken[0]["value"][1]) == 5  # every handled signal, timed from generate to take
        within = query(prometheus_port, 'sum(sigtop_signal_latency_seconds_bucket{signal="SIGUSR1", le="+Inf"})')
        assert float(within[0]["value"][1]) == 5
        fates = query(prometheus_port, 'sum(sigtop_signal_fates_total{signal="SIGUSR1", fate="taken"})')
        assert float(fates[0]["value"][1]) == 5  # queued and taken, each one
    finally:
        for proc in (server, exporter):
            if proc is not None:
                end(proc)


def test_comm_labels_are_opt_in_bounded_and_sum_exactly():
    """--label-by comm: at most K comms get a series, once they have 10 signals; the rest are 'other'."""
    metrics = SignalMetrics(label_by="comm", top=3, label_min=10)
    sent = 0
    for round_no in range(50):
        flows = []
        for sender in range(100):  # 100 comms, 3 of them busy; new random ones every round
            comm = f"busy{sender}" if sender < 3 else f"short-{round_no}-{sender}"
            flows.append(FlowDelta(FlowKey(1000 + sender, 2, 2, 15, 0, 0, 1, 0), 5, 0.0, 0.0, comm, "target"))
            sent += 5
        metrics.apply(Batch(ts=1.0, interval_s=1.0, flows=flows))
    # And the memory stays flat while short-lived names keep coming (candidates are a bounded LRU).
    tracemalloc.start()
    for round_no in range(200):
        flows = [
            FlowDelta(FlowKey(5000 + i, 2, 2, 15, 0, 0, 1, 0), 1, 0.0, 0.0, f"gone-{round_no}-{i}", "target")
            for i in range(500)
        ]
        metrics.apply(Batch(ts=1.0, interval_s=1.0, flows=flows))
        sent += 500
        if round_no == 49:
            settled, _ = tracemalloc.get_traced_memory()
    grown = tracemalloc.get_traced_memory()[0] - settled
    tracemalloc.stop()
    assert grown < 500_000  # 75,000 more names after the LRU filled: no growth
    samples = [s for s in scrape(metrics)["sigtop_signals_by_comm"] if s.name.endswith("_total")]
    senders = {s.labels["sender"] for s in samples}
    assert senders == {"busy0", "busy1", "busy2", "other"}
    assert sum(s.value for s in samples) == sent
    assert {s.labels["target"] for s in samples} <= {"target", "other"}


def test_the_latency_histogram_counts_every_take_the_kernel_timed():
    _head, batches = read_recording(RECORDING)
    metrics, model = SignalMetrics(), SignalModel()
    for batch in batches:
        metrics.fold(model, batch)
    histogram = scrape(metrics)["sigtop_signal_latency_seconds"]
    counts = {s.labels["signal"]: s.value for s in histogram if s.name.endswith("_count")}
    sums = {s.labels["signal"]: s.value for s in histogram if s.name.endswith("_sum")}
    timed = [r for r in model.flows.values() if r.latency is not None]
    assert sum(counts.values()) == sum(r.latency.count for r in timed) > 50
    assert abs(sum(sums.values()) - sum(r.latency.sum_ns for r in timed) / 1e9) < 1e-6
    usr1 = [s for s in histogram if s.name.endswith("_bucket") and s.labels["signal"] == "SIGUSR1"]
    assert [b.value for b in usr1] == sorted(b.value for b in usr1)  # cumulative
    assert usr1[-1].value == counts["SIGUSR1"]
    taken = {s.labels["signal"]: s.value for s in scrape(metrics)["sigtop_signal_fates"] if s.labels["fate"] == "taken"}
    assert taken["SIGUSR1"] == sum(r.taken for r in model.flows.values() if r.key.sig == 10)


def test_without_kernel_timing_the_histogram_counts_every_matched_delivery():
    """A recording made without fates (no BTF, --no-fates): the detail events' matches are counted."""
    _head, batches = read_recording(RECORDING)
    batches = copy.deepcopy(batches)
    for batch in batches:
        batch.pending = None
        for flow in batch.flows:
            flow.latency = None
    metrics, model = SignalMetrics(), SignalModel()
    seen: list[tuple[int, int]] = []

    def observe(sig: int, latency_ns: int) -> None:
        seen.append((sig, latency_ns))
        metrics.observe_latency(sig, latency_ns)

    model.on_latency = observe
    for batch in batches:
        metrics.fold(model, batch)
    assert len(seen) > 50
    histogram = scrape(metrics)["sigtop_signal_latency_seconds"]
    counts = {s.labels["signal"]: s.value for s in histogram if s.name.endswith("_count")}
    assert sum(counts.values()) == len(seen)
    sums = {s.labels["signal"]: s.value for s in histogram if s.name.endswith("_sum")}
    assert abs(sum(sums.values()) - sum(ns for _, ns in seen) / 1e9) < 1e-6
    buckets = [s for s in histogram if s.name.endswith("_bucket") and s.labels["signal"] == "SIGUSR1"]
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)  # cumulative


def test_alerts_and_deaths_are_counted_by_bounded_kinds():
    from sigtop.names import EventKind, Syscall
    from sigtop.wire import SignalEvent, ThreadDelta

    metrics, model = SignalMetrics(), SignalModel()
    death = SignalEvent(5.0, int(EventKind.death), 77, 77, 1, 1, 9, 2, 0, 0, int(Syscall.kernel), comm="victim")
    batch = Batch(ts=5.0, interval_s=1.0, threads=[ThreadDelta(70, 70, "x", 1, 0, 0, 5.0, 1)], events=[death])
    metrics.fold(model, batch)
    samples = scrape(metrics)
    alerts = {s.labels["kind"]: s.value for s in samples["sigtop_alerts"] if s.name.endswith("_total")}
    assert alerts == {"srop": 1, "spoofed": 0, "probing": 0}
    deaths = [s for s in samples["sigtop_process_deaths"] if s.name.endswith("_total")]
    assert [(s.labels["signal"], s.labels["cause"], s.value) for s in deaths] == [("SIGKILL", "unknown", 1.0)]


# ---- the server: paths, floods, TLS and basic auth (over the recording: no root needed) ----


def exporter_from_recording(port: int, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*SIGTOP, "exporter", "--from", str(RECORDING), "--listen", f"127.0.0.1:{port}", *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    line = read_line(proc.stderr, what="the exporter's start")
    assert "serving /metrics" in line, line
    return proc


def status_of(url: str, method: str = "GET", **kwargs) -> int:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10, **kwargs) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_only_metrics_is_served_and_only_to_get():
    port = free_port()
    proc = exporter_from_recording(port)
    try:
        base = f"http://127.0.0.1:{port}"
        assert status_of(f"{base}/metrics") == 200
        assert status_of(f"{base}/metrics?x=1") == 200
        assert status_of(f"{base}/metrics", "HEAD") == 200
        assert status_of(f"{base}/") == 200  # a landing page, as Prometheus' exporters have
        assert status_of(f"{base}/anything") == 404
        assert status_of(f"{base}/metrics/x") == 404
        assert status_of(f"{base}/metrics", "POST") == 405
        assert status_of(f"{base}/metrics", "DELETE") == 405
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            body = response.read().decode()
        assert "sigtop_signals_total" in body
    finally:
        end(proc)
    assert "Traceback" not in proc.stderr.read()


def test_a_flood_of_half_open_connections_keeps_no_scrape_out_and_pins_no_thread():
    """500 connections that never finish their request (slowloris), then 200 scrapes at once:
    every scrape is answered, the exporter runs no thread per connection, and the half-open
    connections are closed by the server once a request's head is overdue."""
    from sigtop.export.metrics_server import HEAD_TIMEOUT_S

    port = free_port()
    proc = exporter_from_recording(port)
    held: list[socket.socket] = []
    try:
        for _ in range(500):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            held.append(sock)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert response.status == 200
        with open(f"/proc/{proc.pid}/status") as status:
            threads = next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
        assert threads <= 4, f"{threads} threads for 500 connections"
        results: list[object] = []

        def scrape_once() -> None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=15) as response:
                    results.append(response.status)
            except OSError as exc:
                results.append(exc)

        with ThreadPoolExecutor(max_workers=200) as pool:
            for _ in range(200):
                pool.submit(scrape_once)
        assert results == [200] * 200
        deadline = time.monotonic() + HEAD_TIMEOUT_S + 10
        open_ones = list(held)
        while open_ones and time.monotonic() < deadline:
            ready, _, _ = select.select(open_ones, [], [], 0.5)
            for sock in ready:
                try:
                    closed = sock.recv(1 << 16) == b""  # closed by the server
                except ConnectionResetError:
                    closed = True  # aborted by the server (one dropped to make room)
                if closed:
                    open_ones.remove(sock)
        assert not open_ones, f"{len(open_ones)} half-open connections still held"
    finally:
        for sock in held:
            sock.close()
        end(proc)


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_tls_files(where: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1, made with openssl for this test."""
    files = {name: where / name for name in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt", "ext")}
    files["ext"].write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=sigtop test CA", "-keyout", str(files["ca.key"]), "-out", str(files["ca.crt"]))  # fmt: skip
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(files["server.key"]), "-out", str(files["server.csr"]))  # fmt: skip
    openssl("x509", "-req", "-in", str(files["server.csr"]), "-CA", str(files["ca.crt"]), "-CAkey",
            str(files["ca.key"]), "-CAcreateserial", "-days", "2", "-extfile", str(files["ext"]),
            "-out", str(files["server.crt"]))  # fmt: skip
    return files


def make_client_cert(files: dict[str, Path], name: str) -> tuple[Path, Path]:
    """A client certificate signed by the CA of make_tls_files: (cert, key)."""
    where = files["ca.crt"].parent
    key, csr, crt, ext = (where / f"{name}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
    ext.write_text("extendedKeyUsage=clientAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(files["ca.crt"]), "-CAkey", str(files["ca.key"]),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt))  # fmt: skip
    return crt, key


def test_a_real_prometheus_scrapes_over_tls_with_basic_auth(tmp_path):
    import bcrypt

    prometheus = prometheus_binary()
    files = make_tls_files(tmp_path)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=10)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prom: '{hashed}'\n"
    )
    exporter_port, prometheus_port = free_port(), free_port()
    exporter = exporter_from_recording(exporter_port, "--web.config.file", str(web))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "- job_name: sigtop\n"
        "  scheme: https\n"
        f"  tls_config: {{ca_file: {files['ca.crt']}}}\n"
        "  basic_auth: {username: prom, password: s3cret}\n"
        f"  static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    _head, batches = read_recording(RECORDING)
    model = SignalModel()
    for batch in batches:
        model.apply(batch)
    server = None
    try:
        context = ssl.create_default_context(cafile=str(files["ca.crt"]))
        url = f"https://127.0.0.1:{exporter_port}/metrics"
        assert status_of(url, context=context) == 401  # no credentials
        bad = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(b"prom:x").decode()})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=10, context=context)
        assert refused.value.code == 401
        with pytest.raises(OSError):  # plain HTTP gets no answer from a TLS port
            urllib.request.urlopen(f"http://127.0.0.1:{exporter_port}/metrics", timeout=10).read()
        server = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline, seen = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            try:
                result = query(prometheus_port, 'sum(sigtop_signals_total{job="sigtop"})')
            except OSError:  # Prometheus still starting
                result = []
            seen = float(result[0]["value"][1]) if result else None
            if seen is not None:
                break
            time.sleep(0.5)
        assert seen == model.total_signals > 0
        up = query(prometheus_port, 'up{job="sigtop"}')
        assert float(up[0]["value"][1]) == 1
    finally:
        for proc in (server, exporter):
            if proc is not None:
                end(proc)


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ("tls_server_config:\n  cert_file: nothere.crt\n  key_file: nothere.key\n", "cannot load cert_file"),
        ("tls_server_config:\n  cert_file: a.crt\n", "needs both cert_file and key_file"),
        ("tls_server_confg: {}\n", "unknown field tls_server_confg"),
        ("basic_auth_users:\n  prom: plaintext\n", "not a bcrypt hash"),
        ("tls_server_config: [1, 2\n", "not YAML"),
        ("- a\n", "expected a mapping"),
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_ca_file: ca.crt\n",
            "Client CA's have been configured without a Client Auth Policy",
        ),
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_ca_file: ca.crt\n"
            "  client_auth_type: NoClientCert\n",
            "Client CA's have been configured without a Client Auth Policy",
        ),
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: RequireAnyClientCert\n",
            "RequireAnyClientCert",
        ),
    ],
)
def test_a_web_config_that_cannot_be_used_is_one_line_and_exit_2(tmp_path, config, says):
    web = tmp_path / "web.yml"
    web.write_text(config)
    result = subprocess.run(
        [*SIGTOP, "exporter", "--from", str(RECORDING), "--listen", f"127.0.0.1:{free_port()}",
         "--web.config.file", str(web)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_listening_beyond_loopback_warns():
    port = free_port()
    proc = subprocess.Popen(
        [*SIGTOP, "exporter", "--from", str(RECORDING), "--listen", f"0.0.0.0:{port}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = read_line(proc.stderr, what="a warning")
        assert "warning" in first
        assert "reachable from other machines" in first
        assert "--web.config.file" in first
    finally:
        end(proc)


def refused(url: str, **kwargs) -> OSError:
    """The error a request got that was refused before any HTTP answer (fail if it was answered)."""
    try:
        with urllib.request.urlopen(url, timeout=10, **kwargs) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        pytest.fail(f"answered {exc.code}, expected no answer")
    except OSError as exc:
        return exc
    pytest.fail("answered, expected no answer")


def test_client_certificates_are_required_and_verified_against_the_client_ca(tmp_path):
    """client_auth_type RequireAndVerifyClientCert: a client with a certificate from client_ca_file is
    answered; one with none, or with one from another CA, gets no answer."""
    files = make_tls_files(tmp_path)
    cert, key = make_client_cert(files, "prometheus")
    (tmp_path / "other").mkdir()
    stranger = make_tls_files(tmp_path / "other")  # another CA, and a certificate it signed
    web = tmp_path / "web.yml"
    web.write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_ca_file: ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n"
    )
    port = free_port()
    proc = exporter_from_recording(port, "--web.config.file", str(web))
    try:
        url = f"https://127.0.0.1:{port}/metrics"
        anonymous = ssl.create_default_context(cafile=str(files["ca.crt"]))
        refused(url, context=anonymous)
        impostor = ssl.create_default_context(cafile=str(files["ca.crt"]))
        impostor.load_cert_chain(str(stranger["server.crt"]), str(stranger["server.key"]))
        refused(url, context=impostor)
        known = ssl.create_default_context(cafile=str(files["ca.crt"]))
        known.load_cert_chain(str(cert), str(key))
        assert status_of(url, context=known) == 200
    finally:
        end(proc)
    assert "Traceback" not in proc.stderr.read()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_flood_of_connections_that_never_start_tls_is_capped_and_keeps_no_scrape_out(tmp_path):
    """With TLS on, 400 TCP connections that never send a ClientHello: they count against the
    connection cap from their accept (the oldest dropped for newcomers), so the exporter's open
    files stay bounded and a real TLS scrape is answered at once."""
    from sigtop.export.metrics_server import HEAD_TIMEOUT_S, MAX_CONNECTIONS

    files = make_tls_files(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    port = free_port()
    proc = exporter_from_recording(port, "--web.config.file", str(web))
    held: list[socket.socket] = []
    try:
        baseline = open_fds(proc.pid)
        started = time.monotonic()
        for _ in range(400):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        context = ssl.create_default_context(cafile=str(files["ca.crt"]))
        asked = time.monotonic()
        assert status_of(f"https://127.0.0.1:{port}/metrics", context=context) == 200
        answered = time.monotonic()
        assert answered - asked < 2.0, f"the scrape took {answered - asked:.1f} s"
        grown = open_fds(proc.pid) - baseline
        assert answered - started < HEAD_TIMEOUT_S  # still within the handshake timeout: none timed out yet
        assert grown <= MAX_CONNECTIONS + 8, f"{grown} more open files for 400 connections"
    finally:
        for sock in held:
            sock.close()
        end(proc)
    assert "Traceback" not in proc.stderr.read()


def test_wrong_passwords_waiting_on_bcrypt_keep_no_scrape_out(tmp_path):
    """300 connections each sending requests with a wrong password, pipelined, so each one always
    has a bcrypt check pending: Prometheus, whose credentials were checked before, still gets its
    answer at once (the waiting checks are dropped to make room, its own is not redone)."""
    import bcrypt

    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=10)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prom: '{hashed}'\n")
    port = free_port()
    proc = exporter_from_recording(port, "--web.config.file", str(web))
    url = f"http://127.0.0.1:{port}/metrics"
    good = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(b"prom:s3cret").decode()})
    nope = base64.b64encode(b"prom:nope").decode()
    wrong = f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {nope}\r\n\r\n".encode()
    held: list[socket.socket] = []
    try:
        with urllib.request.urlopen(good, timeout=10) as response:
            assert response.status == 200  # the scrape before the flood
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(wrong * 3)
            held.append(sock)
        time.sleep(1.0)  # every connection's first check is pending
        for _ in range(3):
            asked = time.monotonic()
            with urllib.request.urlopen(good, timeout=10) as response:
                assert response.status == 200
                assert b"sigtop_signals_total" in response.read()
            took = time.monotonic() - asked
            assert took < 2.0, f"the scrape took {took:.1f} s"
    finally:
        for sock in held:
            sock.close()
        end(proc)
    assert "Traceback" not in proc.stderr.read()
