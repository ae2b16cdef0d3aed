"""The live source: a poller thread that ties the loaded program, its ring buffer, the map drain and /proc.

A plain thread polls the ring buffer with a timeout (so it can always stop)
and, once per interval, reads the kernel's cumulative maps and hands the
differences to the event loop as one `Batch` through
`loop.call_soon_threadsafe`: the only thread-safe way into asyncio.
"""

from __future__ import annotations

import asyncio
import mmap
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sigtop.abi import kernel_abi
from sigtop.contract import Deliver
from sigtop.events import EventBlock, EventLayout
from sigtop.live import fates, loader, procfs, programs, ringbuf
from sigtop.live.clock import SourceClock
from sigtop.live.config import TraceConfig
from sigtop.live.maps import MapDrain
from sigtop.live.preflight import CollectorError
from sigtop.live.procfs import ProcResolver
from sigtop.lru import BoundedLRU
from sigtop.names import EventKind
from sigtop.wire import Batch, SignalEvent

POLL_TIMEOUT_MS = 100
# Detail events decoded per second of interval; beyond it a storm's older
# events are skipped (and counted) so that decoding cannot starve the view.
MAX_EVENTS_PER_S = 120_000
MAX_SIGNALFD_OWNERS = 200
DEATH_KIND = bytes([int(EventKind.death)])


class BpfSource:
    """Live signals from the kernel (a `sigtop.sources.Source`). attach() then start(); stop() detaches."""

    live = True
    name = ""

    def __init__(self, config: TraceConfig | None = None) -> None:
        self.config = config or TraceConfig()
        self.scope = self.config.describe()
        self.on_phase: Callable[[str], None] | None = None  # told each step of attach()
        self.bpf: Any = None
        self.attach_s = 0.0
        self.task_storage = False
        self.raw_generate = False
        self.compiled = False  # compiled for this attach (else loaded as an earlier start kept it)
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reader: ringbuf.RingBufferReader | None = None
        self._layout: EventLayout | None = None
        self._records = bytearray()  # ring records read this interval
        self._event_budget = 0
        self._events_skipped = 0
        self._drain: MapDrain | None = None
        self._misses: programs.ProgramMisses | None = None
        self._fates: fates.FateSettler | None = None  # where the program follows queued signals (BTF)
        self._clock = SourceClock()  # every time this source stamps: a clock step moves none of them
        self._procs = ProcResolver(self._clock)
        # Processes holding a signalfd: their masks are watched (the most recently seen, bounded).
        self._signalfd_owners: BoundedLRU[int, None] = BoundedLRU(MAX_SIGNALFD_OWNERS)
        self._last_collect = 0.0

    # ---- attach / detach -------------------------------------------------

    def attach(self) -> None:
        """Compile and attach every probe; raise CollectorError with one line on failure.

        Attaching an attached source does nothing (the CLI attaches early,
        beside its imports; the runner attaches whatever is not yet)."""
        if self.bpf is not None:
            return
        started = time.monotonic()
        loaded = loader.load(self.config, self.on_phase)
        self.bpf, self.task_storage, self.raw_generate = loaded.bpf, loaded.task_storage, loaded.raw_generate
        self.compiled = loaded.compiled
        try:
            if self.on_phase is not None:
                self.on_phase("opening the maps")
            if self.config.pids:
                self._fill_pid_filter()
            self._open_events()  # rare events (deaths, ...) come in every mode
        except Exception as exc:
            self.detach()
            raise CollectorError(f"could not set up the BPF maps: {exc}") from None
        self._drain = MapDrain(self.bpf, self.config, self._clock.mono_to_wall)
        self._misses = programs.ProgramMisses(self.bpf)
        if self.raw_generate and self.config.follow_fates:
            self._fates = fates.FateSettler(self.bpf, self._clock.mono_to_wall)
        self._last_collect = time.monotonic()
        self.attach_s = time.monotonic() - started

    def _fill_pid_filter(self) -> None:
        """Pids and their threads: the kernel reports a thread-directed target by tid."""
        table = self.bpf[b"pid_filter"]
        constants = kernel_abi().constants
        bits = constants["FILTER_ASKED"] | (constants["FILTER_FOLLOW"] if self.config.follow else 0)
        for pid in self.config.pids:
            for tid in procfs.thread_ids(pid):
                table[table.Key(tid)] = table.Leaf(bits)

    def _open_events(self) -> None:
        # The compiler's size of struct event; its layout was held to sigtop.h field by field
        # when it was compiled (sigtop.live.build), and each load holds the size again.
        sample = self.bpf[b"event_layout"].spec.value_size
        self._layout = EventLayout.for_records(ringbuf.HEADER_SIZE, ringbuf.record_size(sample))
        size = self.config.ring_pages() * mmap.PAGESIZE
        self._reader = ringbuf.RingBufferReader(self.bpf[b"events"].map_fd, size, sample)
        self._event_budget = int(MAX_EVENTS_PER_S * self.config.interval_s)

    def read_events(self) -> None:
        """Take what the ring buffer holds, within this interval's budget."""
        if self._reader is None:
            return
        while True:
            read, skipped = self._reader.read_into(self._records, max(0, self._event_budget))
            self._event_budget -= read
            self._events_skipped += skipped
            if not read and not skipped:
                return

    def detach(self) -> None:
        """Detach every probe and free the maps. Safe to call twice."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self.bpf is not None:
            bpf, self.bpf = self.bpf, None
            loader.detach(bpf)

    def abandon(self) -> None:
        """The process ends now without detaching: the kernel frees the probes in a child."""
        bpf = self.bpf
        if bpf is not None:
            loader.hand_off(bpf)

    # ---- the poller thread -----------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        """Start polling; each batch is passed to `deliver` on the event loop's thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(loop, deliver), name="sigtop-bpf-poller", daemon=True)
        self._thread.start()

    def _run(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        try:
            self._poll(loop, deliver)
        except Exception as exc:  # reported to the consumer, which exits with one line
            self.error = f"the collector failed: {type(exc).__name__}: {exc}"
            self._post(loop, deliver, Batch(ts=self._clock.now(), interval_s=0.0, final=True))

    def _poll(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        interval = self.config.interval_s
        next_collect = time.monotonic() + interval
        while not self._stop.is_set():
            wait_ms = max(0, min(POLL_TIMEOUT_MS, int((next_collect - time.monotonic()) * 1000)))
            if self._reader is not None:
                # Woken early only when a storm fills the buffer; otherwise drained here.
                self._reader.wait(wait_ms / 1000)
                self.read_events()
            else:
                self._stop.wait(wait_ms / 1000)
            if time.monotonic() >= next_collect:
                next_collect += interval
                if next_collect < time.monotonic():  # fell behind: do not burst
                    next_collect = time.monotonic() + interval
                self._post(loop, deliver, self.collect())
        self.read_events()
        self._post(loop, deliver, self.collect(final=True))

    def _post(self, loop: asyncio.AbstractEventLoop, deliver: Deliver, batch: Batch) -> None:
        try:
            loop.call_soon_threadsafe(deliver, batch)
        except RuntimeError:  # the loop has closed: nobody is listening any more
            pass

    def stop(self) -> None:
        """Stop polling after one last collection (posted to the loop), then detach."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.detach()

    # ---- one collection --------------------------------------------------

    def collect(self, final: bool = False) -> Batch:
        """Everything new since the last call, as one batch."""
        if self._drain is None:
            raise CollectorError("collect() before attach()")
        now = time.monotonic()
        batch = Batch(
            ts=self._clock.now(),
            interval_s=now - self._last_collect,
            final=final,
            deaths_followed=self.raw_generate,
            light=self.config.light or None,
        )
        self._last_collect = now
        # Counts first, then what is still pending: a signal taken between the two reads is then
        # in flight for one batch (in neither), never in both (taken and pending). The drain
        # spares the flows pending at the last settle; a flow pending since has moved, so it is
        # not idle and not evicted either.
        batch.flows = self._drain.flows(now, batch.ts)
        settled = self._fates.settle() if self._fates is not None else None
        if settled is not None:
            self._drain.keep = settled.keep
            batch.pending = settled.pending
            batch.flows += settled.fates
        batch.threads = self._drain.threads(batch.ts)
        batch.signalfds = self._drain.signalfds()
        batch.stats = self._drain.stats()
        batch.map_fill = dict(self._drain.fill)
        if self._misses is not None:
            batch.program_misses = self._misses.read()
            batch.stats.program_misses = sum(batch.program_misses.values())
            batch.stats.signals_missed = batch.program_misses.get("signal_generate", 0)
        batch.events = self._take_events(batch)
        batch.procs = self._procs.resolve(batch)
        for state in batch.signalfds:
            self._signalfd_owners.put(state.pid, None)
        batch.dispositions = procfs.dispositions(batch, list(self._signalfd_owners), self._clock)
        # Read first (`also` leads the list), so an owner with no disposition read is gone.
        read = {d.pid for d in batch.dispositions}
        for pid in [pid for pid in self._signalfd_owners if pid not in read]:
            self._signalfd_owners.discard(pid)
        return batch

    def _take_events(self, batch: Batch) -> Sequence[SignalEvent]:
        """The interval's events, still packed (the model decodes what it keeps); the budget starts again."""
        records, self._records = self._records, bytearray()
        batch.stats.events_dropped += self._events_skipped
        self._events_skipped = 0
        self._event_budget = int(MAX_EVENTS_PER_S * self.config.interval_s)
        if not records or self._layout is None:
            return []
        block = EventBlock(records, self._layout, self._clock.mono_to_wall)
        self._death_cgroups(block, batch)
        return block

    def _death_cgroups(self, block: EventBlock, batch: Batch) -> None:
        """The cgroup paths of the processes that died (their death events carry the v2 id; the
        process is gone from /proc by now). Found by the kind's low byte of each record: one C
        slice, not a decode of every event."""
        kinds = block.kinds()
        at = kinds.find(DEATH_KIND)
        while at >= 0 and self._drain is not None:
            cgroup_id = block[at].handler  # the death payload's cgroup_id
            if cgroup_id and cgroup_id not in batch.cgroups:
                batch.cgroups[cgroup_id] = self._drain.cgroups.path(cgroup_id)
            at = kinds.find(DEATH_KIND, at + 1)
