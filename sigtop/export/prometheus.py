"""`sigtop exporter`: sigtop's exact counts as Prometheus metrics, served on /metrics.

The counts are folded from each batch's deltas into counters of their own
(never from the model's rows, which are evicted: a Prometheus counter must
never go down). Labels are only bounded values, never a pid, a tid or a
comm: signal (65), origin (the syscall or the kernel's class), result,
syscall, errno, probe, map. So the series cannot grow with the processes a
machine runs, however many come and go. Scrapes see the counts as of the
last collection (every --interval, 1 s by default).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from importlib import metadata
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from sigtop.alerts import AlertDetector
from sigtop.containers import container_of
from sigtop.lru import BoundedLRU
from sigtop.names import (
    GENERATED_RESULTS,
    Result,
    errno_name,
    printable,
    signame,
)
from sigtop.wire import Batch, LatencyHistogram, ProcInfo, latency_bucket_bounds

OTHER = "other"
# Generate-to-take latency buckets (seconds): 1 us to 10 s, where detail events time them.
LATENCY_BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1, 1.0, 10.0)
# Where the kernel times every take itself (fates followed): edges of its own buckets (2^n ns,
# about 1 us to 8.6 s), so that each count falls in its bucket exactly.
KERNEL_LATENCY_EDGES_NS = (*(1 << n for n in range(10, 34, 2)), 1 << 33)
FATES = ("taken", "read", "discarded", "untracked")
MAX_CANDIDATES = 10_000


class BoundedLabels:
    """Which values of an unbounded label (comm, container) get a series of their own.

    A value is admitted once it has been seen `min_count` times, at most `limit`
    values ever; admitted values keep their series (a counter must never go
    down, so nothing is ever demoted), everything else counts under `other`
    (including an admitted value's counts before it was admitted: sums stay
    exact). Candidates are remembered in a bounded LRU.
    """

    def __init__(self, limit: int, min_count: int) -> None:
        self.limit, self.min_count = limit, min_count
        self.admitted: set[str] = set()
        self._candidates: BoundedLRU[str, int] = BoundedLRU(MAX_CANDIDATES)

    def label(self, value: str, count: int) -> str:
        if value in self.admitted:
            return value
        if not value or len(self.admitted) >= self.limit:
            return OTHER
        seen = self._candidates.pop(value, 0) + count
        if seen >= self.min_count:
            self.admitted.add(value)
            return OTHER  # this batch's count was seen before the series existed
        self._candidates.put(value, seen)
        return OTHER


class SignalMetrics(Collector):
    """Counters folded from batches; a prometheus_client collector that reads them at scrape time."""

    def __init__(self, label_by: str = "", top: int = 20, label_min: int = 10) -> None:
        self._lock = threading.Lock()  # batches fold on the event loop, scrapes read on the HTTP thread
        # Opt-in: signals by sender and target comm or container, bounded (BoundedLabels).
        self.label_by = label_by
        self._senders = BoundedLabels(top, label_min)
        self._targets = BoundedLabels(top, label_min)
        self.by_label: Counter[tuple[str, str, str]] = Counter()  # (signal, sender, target)
        # Opt-in (--latency, needs detail events): per signal, counts per bucket and the sum.
        self.latency: dict[str, list[float]] = {}  # signal -> [count per bucket..., +Inf count, sum]
        self.kernel_latency = False  # the kernel times every take: its histograms, not the events
        self.fates: Counter[tuple[str, str]] = Counter()  # (signal, fate)
        self.pending: Counter[str] = Counter()  # signal -> queued and not yet taken (state)
        self.alerts = AlertDetector()
        self.deaths: Counter[tuple[str, str]] = Counter()  # (signal, cause kind), with --details
        self._procs_seen: BoundedLRU[int, ProcInfo] = BoundedLRU(MAX_CANDIDATES)
        self._procs: BoundedLRU[int, str] = BoundedLRU(MAX_CANDIDATES)  # pid -> its container
        self.signals: Counter[tuple[str, str, str]] = Counter()  # (signal, origin, result)
        self.send_errors: Counter[tuple[str, str, str]] = Counter()  # (syscall, signal, errno)
        self.probes: Counter[str] = Counter()  # syscall
        self.spoofed: Counter[str] = Counter()  # signal
        self.sigreturns = 0
        self.unmatched = 0
        self.events_lost = 0
        self.program_misses: Counter[str] = Counter()  # probe
        self.signals_uncounted = 0
        self.map_full: Counter[str] = Counter()  # map
        self.map_fill: dict[str, float] = {}

    def observe_latency(self, sig: int, latency_ns: int) -> None:
        """One delivery matched to its generation (SignalModel.on_latency; on the loop, under the lock's holder)."""
        if self.kernel_latency:
            return  # counted exactly from the kernel's histograms
        seconds = latency_ns / 1e9
        row = self.latency.get(signame(sig))
        if row is None:
            row = self.latency[signame(sig)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                row[i] += 1
        row[-2] += 1
        row[-1] += seconds

    def _kernel_latency(self, sig: str, h: LatencyHistogram) -> None:
        """Fold a flow's new kernel-timed takes into the signal's histogram (cumulative, exact per edge)."""
        row = self.latency.get(sig)
        if row is None:
            row = self.latency[sig] = [0.0] * (len(KERNEL_LATENCY_EDGES_NS) + 2)
        for i, n in enumerate(h.buckets):
            if not n:
                continue
            high = latency_bucket_bounds(i)[1]
            for j, edge in enumerate(KERNEL_LATENCY_EDGES_NS):
                if high <= edge:
                    row[j] += n
        row[-2] += h.count
        row[-1] += h.sum_ns / 1e9

    def _value(self, pid: int, comm: str) -> str:
        if self.label_by == "comm":
            return printable(comm) if pid else "[kernel]"
        return self._procs.get(pid, "") or "host"

    def apply(self, batch: Batch) -> None:
        with self._lock:
            if batch.pending is not None and not self.kernel_latency:
                # The kernel follows and times every take: its histograms replace the events' matches.
                self.kernel_latency = True
                self.latency.clear()
            if self.label_by == "container":
                for proc in batch.procs:
                    self._procs.put(proc.pid, container_of(proc.cgroup).label)
            for delta in batch.flows:
                k = delta.key
                sig = signame(k.sig)
                if self.label_by and k.result in GENERATED_RESULTS and delta.count:
                    sender = self._senders.label(self._value(k.sender_pid, delta.sender_comm), delta.count)
                    target_pid = k.target_tgid or k.target_pid
                    target = self._targets.label(self._value(target_pid, delta.target_comm), delta.count)
                    self.by_label[(sig, sender, target)] += delta.count
                origin = k.origin()
                if k.result in GENERATED_RESULTS:
                    self.signals[(sig, origin, Result(k.result).name)] += delta.count
                    if k.spoofed:
                        self.spoofed[sig] += delta.count
                elif k.result == Result.failed:
                    self.send_errors[(origin, sig, errno_name(k.err))] += delta.count
                elif k.result == Result.no_signal:
                    self.probes[origin] += delta.count
                for fate in FATES:
                    n = getattr(delta, fate)
                    if n:
                        self.fates[(sig, fate)] += n
                if delta.latency is not None:
                    self._kernel_latency(sig, delta.latency)
            if batch.pending is not None:
                self.pending = Counter()
                for p in batch.pending:
                    self.pending[signame(p.key.sig)] += p.count
            for proc in batch.procs:
                self._procs_seen.put(proc.pid, proc)
            self.alerts.scan(batch, self._procs_seen)
            for thread in batch.threads:
                self.sigreturns += thread.sigreturns
                self.unmatched += thread.unmatched or 0
            stats = batch.stats
            self.events_lost += stats.events_lost + stats.events_dropped
            self.program_misses.update(batch.program_misses)
            self.signals_uncounted += stats.signals_missed
            self.map_full.update(
                {"flows": stats.flows_full, "threads": stats.threads_full, "signalfds": stats.signalfds_full}
            )
            self.map_fill = batch.map_fill or self.map_fill

    def fold(self, model: Any, batch: Batch) -> None:
        """With --details: the batch through a model that matches deliveries and names deaths, then counted."""
        with self._lock:
            before = model.deaths_seen
            model.apply(batch)
            new = model.deaths_seen - before
            for death in list(model.deaths)[len(model.deaths) - new :] if new else []:
                self.deaths[(signame(death.sig), death.cause_kind)] += 1
        self.apply(batch)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily | InfoMetricFamily]:
        with self._lock:
            signals = CounterMetricFamily(
                "sigtop_signals", "Signals generated, by signal, origin (syscall or kernel class) and result",
                labels=["signal", "origin", "result"],
            )  # fmt: skip
            for (sig, origin, result), n in sorted(self.signals.items()):
                signals.add_metric([sig, origin, result], n)
            yield signals
            errors = CounterMetricFamily(
                "sigtop_signal_send_errors", "Send syscalls that failed, by syscall, signal and errno",
                labels=["syscall", "signal", "errno"],
            )  # fmt: skip
            for labels, n in sorted(self.send_errors.items()):
                errors.add_metric(list(labels), n)
            yield errors
            probes = CounterMetricFamily("sigtop_signal_probes", "Signal-0 probes, by syscall", labels=["syscall"])
            for syscall, n in sorted(self.probes.items()):
                probes.add_metric([syscall], n)
            yield probes
            spoofed = CounterMetricFamily(
                "sigtop_signals_spoofed", "Signals whose siginfo claimed another sender", labels=["signal"]
            )
            for sig, n in sorted(self.spoofed.items()):
                spoofed.add_metric([sig], n)
            yield spoofed
            if self.label_by:
                by = CounterMetricFamily(
                    f"sigtop_signals_by_{self.label_by}",
                    f"Signals generated, by sender's and target's {self.label_by} (bounded: the rest are 'other')",
                    labels=["signal", "sender", "target"],
                )
                for labels, n in sorted(self.by_label.items()):
                    by.add_metric(list(labels), n)
                yield by
            if self.latency:
                histogram = HistogramMetricFamily(
                    "sigtop_signal_latency_seconds",
                    "Generate-to-take latency of every signal taken (timed in the kernel; without BTF, "
                    "of those whose delivery the detail events showed)",
                    labels=["signal"],
                )
                edges = [ns / 1e9 for ns in KERNEL_LATENCY_EDGES_NS] if self.kernel_latency else LATENCY_BUCKETS
                for sig, row in sorted(self.latency.items()):
                    buckets = [(f"{b:g}", row[i]) for i, b in enumerate(edges)] + [("+Inf", row[-2])]
                    histogram.add_metric([sig], buckets, row[-1])
                yield histogram
            fates = CounterMetricFamily(
                "sigtop_signal_fates",
                "What became of queued signals: taken (handler or default action), read (sigwait, signalfd), "
                "discarded (pending at exit), untracked",
                labels=["signal", "fate"],
            )
            for (sig, fate), n in sorted(self.fates.items()):
                fates.add_metric([sig, fate], n)
            yield fates
            pending = GaugeMetricFamily(
                "sigtop_signals_pending", "Signals queued and not yet taken, now (blocked, or not yet run)",
                labels=["signal"],
            )  # fmt: skip
            for sig, n in sorted(self.pending.items()):
                pending.add_metric([sig], n)
            yield pending
            alerts = CounterMetricFamily("sigtop_alerts", "Alerts raised, by kind", labels=["kind"])
            for kind in ("srop", "spoofed", "probing"):
                alerts.add_metric([kind], self.alerts.counts[kind])
            yield alerts
            deaths = CounterMetricFamily(
                "sigtop_process_deaths", "Processes killed by a signal, by signal and cause (with --details)",
                labels=["signal", "cause"],
            )  # fmt: skip
            for (sig, cause), n in sorted(self.deaths.items()):
                deaths.add_metric([sig, cause], n)
            yield deaths
            yield CounterMetricFamily("sigtop_rt_sigreturn", "rt_sigreturn calls", value=self.sigreturns)
            yield CounterMetricFamily(
                "sigtop_rt_sigreturn_unmatched",
                "rt_sigreturn with no handler frame outstanding (sigreturn-oriented programming starts so)",
                value=self.unmatched,
            )
            yield CounterMetricFamily(
                "sigtop_events_lost", "Detail events lost (kernel) or skipped (user space); counts stay exact",
                value=self.events_lost,
            )  # fmt: skip
            misses = CounterMetricFamily(
                "sigtop_program_misses", "Runs of sigtop's probes the kernel skipped", labels=["probe"]
            )
            for probe, n in sorted(self.program_misses.items()):
                misses.add_metric([probe], n)
            yield misses
            yield CounterMetricFamily(
                "sigtop_signals_uncounted", "Signals not counted because the kernel skipped signal_generate",
                value=self.signals_uncounted,
            )  # fmt: skip
            full = CounterMetricFamily(
                "sigtop_map_full", "Entries a full kernel map could not take (flows: counted in overflow)",
                labels=["map"],
            )  # fmt: skip
            for name in ("flows", "threads", "signalfds"):
                full.add_metric([name], self.map_full[name])
            yield full
            fill = GaugeMetricFamily("sigtop_map_fill_ratio", "How full each kernel map is", labels=["map"])
            for name, ratio in sorted(self.map_fill.items()):
                fill.add_metric([name], ratio)
            yield fill
        yield InfoMetricFamily("sigtop_build", "sigtop's version", value={"version": _version()})


def _version() -> str:
    try:
        return metadata.version("sigtop")
    except metadata.PackageNotFoundError:
        return "unknown"
