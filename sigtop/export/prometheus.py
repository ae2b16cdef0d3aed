"""`sigtop exporter`: sigtop's exact counts as Prometheus metrics, served on /metrics.

Built from the table registry: each table brings its own metrics part
(sigtop.tables.*: TableMetrics), folded from each batch's deltas, never from
the model's rows (which are evicted: a Prometheus counter must never go
down); this module adds what belongs to no table (losses, misses, map fill,
the build) and composes them. Labels are only bounded values, never a pid, a
tid or a comm: signal (65), origin, result, syscall, errno, probe, map. So
the series cannot grow with the processes a machine runs. Scrapes see the
counts as of the last collection (every --interval, 1 s by default).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from sigtop import version
from sigtop.tables import TABLES
from sigtop.tables.base import ExportOptions, TableMetrics
from sigtop.tables.flows import FlowMetrics
from sigtop.wire import Batch


class SignalMetrics(Collector):
    """Every table's metrics and sigtop's own; a prometheus_client collector that reads them at scrape time."""

    def __init__(self, label_by: str = "", top: int = 20, label_min: int = 10) -> None:
        self._lock = threading.Lock()  # batches fold on the event loop, scrapes read on the HTTP thread
        options = ExportOptions(label_by=label_by, top=top, label_min=label_min)
        self.parts: dict[str, TableMetrics] = {
            name: spec.metrics(options) for name, spec in TABLES.items() if spec.metrics is not None
        }
        self.events_lost = 0
        self.program_misses: Counter[str] = Counter()  # probe
        self.signals_uncounted = 0
        self.map_full: Counter[str] = Counter()  # map
        self.map_fill: dict[str, float] = {}
        self.rows_evicted = 0  # the --details model's rows given up to its cap (their counts are in the counters)
        self.light = False  # the source traced with --light: some series cannot count what it does not see

    @property
    def flows(self) -> FlowMetrics:
        return self.parts["flows"]  # type: ignore[return-value]

    def observe_latency(self, sig: int, latency_ns: int) -> None:
        """One delivery matched to its generation (SignalModel.on_latency; under fold's lock)."""
        self.flows.observe_latency(sig, latency_ns)

    def apply(self, batch: Batch) -> None:
        with self._lock:
            for part in self.parts.values():
                part.apply(batch)
            stats = batch.stats
            self.events_lost += stats.events_lost + stats.events_dropped
            self.program_misses.update(batch.program_misses)
            self.signals_uncounted += stats.signals_uncounted
            self.map_full.update(
                {"flows": stats.flows_full, "threads": stats.threads_full, "signalfds": stats.signalfds_full}
            )
            self.map_fill = batch.map_fill or self.map_fill
            self.light = self.light or bool(batch.light)

    def fold(self, model: Any, batch: Batch) -> None:
        """With --details: the batch through a model that matches deliveries and names deaths, then counted."""
        with self._lock:
            model.apply(batch)
            for part in self.parts.values():
                part.after_model(model)
            self.rows_evicted = model.evicted_rows
        self.apply(batch)

    def collect(self) -> Iterator[Any]:
        with self._lock:
            for part in self.parts.values():
                yield from part.collect()
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
                "sigtop_signals_uncounted",
                "Signals in no count: the kernel skipped signal_generate, or they were taken never seen sent",
                value=self.signals_uncounted,
            )  # fmt: skip
            full = CounterMetricFamily(
                "sigtop_map_full", "Entries a full kernel map could not take (flows: counted in overflow)",
                labels=["map"],
            )  # fmt: skip
            for name in ("flows", "threads", "signalfds"):
                full.add_metric([name], self.map_full[name])
            yield full
            yield CounterMetricFamily(
                "sigtop_model_rows_evicted",
                "Rows the --details model gave up to its row cap; every signal of theirs is still in the counters "
                "(whose they were: batch --json's evicted_flows)",
                value=self.rows_evicted,
            )
            fill = GaugeMetricFamily("sigtop_map_fill_ratio", "How full each kernel map is", labels=["map"])
            for name, ratio in sorted(self.map_fill.items()):
                fill.add_metric([name], ratio)
            yield fill
        yield InfoMetricFamily("sigtop_build", "sigtop's version", value={"version": version()})
        yield InfoMetricFamily(
            "sigtop_trace",
            "How the kernel is traced: mode light (--light) counts no failed sends, sig-0 probes, signalfd, "
            "rt_sigaction or rt_sigreturn",
            value={"mode": "light" if self.light else "full"},
        )
