"""The live source: loads bpf/sigtop.bpf.c with BCC and turns what it counts into batches.

The only module that imports `bcc`, and only when a live source is built,
so help, replay and every test of the model and UI run without root or BCC.

A plain thread polls the ring buffer with a timeout (so it can always stop)
and, once per interval, reads the kernel's cumulative maps and hands the
differences to the event loop as one `Batch` through
`loop.call_soon_threadsafe`: the only thread-safe way into asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import mmap
import os
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from operator import itemgetter
from pathlib import Path
from typing import Any

from sigtop import procfs, ringbuf
from sigtop.names import Result, Syscall
from sigtop.records import (
    HOT_FIELDS,
    Batch,
    EventBlock,
    EventLayout,
    FlowDelta,
    FlowKey,
    KernelStats,
    ProcInfo,
    SignalEvent,
    SignalfdState,
    ThreadDelta,
)

TRACEFS_PATHS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
POLL_TIMEOUT_MS = 100
STALE_FLOW_S = 60.0
PROC_REFRESH_S = 30.0
QUEUE_BATCHES = 32
# Detail events decoded per second of interval; beyond it a storm's older
# events are skipped (and counted) so that decoding cannot starve the view.
MAX_EVENTS_PER_S = 120_000
# BPF map sizes, as in the C: evict stale entries before they fill up.
FLOW_ENTRIES = 16384
THREAD_ENTRIES = 16384
SIGNALFD_ENTRIES = 4096

STAT_NAMES = ("events_lost", "flows_full", "threads_full", "signalfds_full", "events_sent")


class CollectorError(Exception):
    """A failure to start tracing, with a one-line message for the user."""


@dataclass(frozen=True)
class TraceConfig:
    pids: tuple[int, ...] = ()  # only signals from or to these processes
    signals: tuple[int, ...] = ()  # only these signals
    details: bool = True  # detail events for drill-down (the counts never need them)
    exclude_self: bool = True
    interval_s: float = 1.0
    ringbuf_pages: int = 2048  # 8 MiB
    task_storage: bool | None = None  # in-flight syscalls in task storage; None: where BTF exists

    def cflags(self, self_tgid: int, task_storage: bool = False) -> list[str]:
        flags = [
            f"-DSELF_TGID={self_tgid if self.exclude_self else 0}",
            f"-DTASK_STORAGE={int(task_storage)}",
            f"-DDETAILS={int(self.details)}",
            f"-DRINGBUF_PAGES={self.ringbuf_pages}",
            "-w",  # the headers of a nearby kernel warn; our code is checked by the verifier
        ]
        if self.pids:
            flags.append("-DFILTER_PIDS=1")
        if self.signals:
            mask = 0
            for sig in self.signals:
                if sig > 0:
                    mask |= 1 << (sig - 1)
            flags.append(f"-DSIG_MASK={mask:#x}ULL")
        return flags


def bpf_source_text() -> str:
    return resources.files("sigtop.bpf").joinpath("sigtop.bpf.c").read_text()


def check_privileges() -> None:
    if os.geteuid() == 0:
        return
    cap_eff = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                cap_eff = int(line.split()[1], 16)
    except OSError:
        pass
    cap_perfmon, cap_bpf = 38, 39
    if not (cap_eff >> cap_bpf & 1 and cap_eff >> cap_perfmon & 1):
        raise CollectorError("sigtop needs root (or CAP_BPF and CAP_PERFMON) to trace: run it with sudo")


def tracefs_root() -> Path | None:
    for path in TRACEFS_PATHS:
        if (path / "events" / "signal").is_dir():
            return path
    return None


def ensure_tracefs() -> Path:
    """Find tracefs, mounting it where the machine has not (as root may)."""
    root = tracefs_root()
    if root is None and os.geteuid() == 0:
        subprocess.run(
            ["mount", "-t", "tracefs", "tracefs", str(TRACEFS_PATHS[0])],
            capture_output=True,
            check=False,
        )
        root = tracefs_root()
    if root is None:
        raise CollectorError(
            "tracefs is not mounted: mount -t tracefs tracefs /sys/kernel/tracing (sigtop doctor checks)"
        )
    return root


REQUIRED_TRACEPOINTS = (
    "signal/signal_generate",
    "signal/signal_deliver",
    *(f"syscalls/sys_{d}_{s.name}" for s in Syscall if s != Syscall.kernel for d in ("enter", "exit")),
    "syscalls/sys_enter_rt_sigreturn",
)


def missing_tracepoints(root: Path) -> list[str]:
    return [tp for tp in REQUIRED_TRACEPOINTS if not (root / "events" / tp).is_dir()]


def kernel_headers_dir() -> Path | None:
    build = Path("/lib/modules") / os.uname().release / "build"
    return build if (build / "include").is_dir() else None


def import_bcc() -> Any:
    try:
        import bcc
    except ImportError:
        raise CollectorError(
            "BCC's Python module is missing: install Debian's python3-bpfcc (make setup);"
            " the PyPI package 'bcc' is an unrelated project"
        ) from None
    return bcc


class _StderrCapture:
    """Capture fd 2 around BCC's compile, which prints clang's output straight to it."""

    def __enter__(self) -> _StderrCapture:
        self.file = tempfile.TemporaryFile(mode="w+b")
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.seek(0)
        self.text = self.file.read().decode(errors="replace")
        self.file.close()


def _record_struct(ctype: type, wanted: Sequence[str] | None = None) -> tuple[struct.Struct, list[str]]:
    """A struct.Struct over one ring-buffer record holding a BCC ctypes event.

    Derived from the ctypes class's own layout (which BCC built from the C),
    with the record's header and tail padding skipped; `wanted` keeps only
    those fields, the rest becoming padding, so the unpack builds less.
    """
    stride = ringbuf.record_size(ctypes.sizeof(ctype))
    fmt = ["<", f"{ringbuf.HEADER_SIZE}x"]
    names: list[str] = []
    pos = 0
    for name, ftype in ctype._fields_:
        if wanted is not None and name not in wanted:
            continue
        desc = getattr(ctype, name)
        if desc.offset > pos:
            fmt.append(f"{desc.offset - pos}x")
        if issubclass(ftype, ctypes.Array):
            fmt.append(f"{desc.size}s")
        else:
            # '<' means standard sizes, so pick the code by the field's real size.
            code = {1: "b", 2: "h", 4: "i", 8: "q"}[desc.size]
            fmt.append(code if ftype._type_.islower() else code.upper())
        names.append(name)
        pos = desc.offset + desc.size
    fmt.append(f"{stride - ringbuf.HEADER_SIZE - pos}x")
    return struct.Struct("".join(fmt)), names


def event_layout(ctype: type) -> EventLayout:
    full, names = _record_struct(ctype)
    c_hot = ["sender_tgid" if n == "sender_pid" else n for n in HOT_FIELDS]
    hot, hot_names = _record_struct(ctype, c_hot)
    if hot_names != c_hot:
        raise CollectorError(f"struct event's fields are not in the order the model reads them: {hot_names}")
    return EventLayout(full=full, hot=hot, decode=_event_decoder(names))


def _comm(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def _event_decoder(names: list[str]) -> Callable[[tuple, float], SignalEvent]:
    """Turn one unpacked `struct event` into a SignalEvent (each distinct comm decoded once)."""
    at = {name: i for i, name in enumerate(names)}
    fields = itemgetter(
        *(
            at[n]
            for n in (
                "kind", "sender_tgid", "sender_tid", "target_pid", "target_tgid", "sig", "code", "result",
                "ret", "syscall", "arg_pid", "arg_tid", "info_pid", "info_uid", "info_value",
            )
        )
    )  # fmt: skip
    i_ts, i_has_info, i_flags, i_group = at["ts"], at["has_info"], at["flags"], at["group"]
    i_handler, i_sa_flags, i_comm = at["handler"], at["sa_flags"], at["comm"]
    comms: dict[bytes, str] = {}

    def comm(raw: bytes) -> str:
        text = comms.get(raw)
        if text is None:
            if len(comms) > 4096:
                comms.clear()
            text = comms[raw] = _comm(raw)
        return text

    def decode(t: tuple, mono_to_wall: float) -> SignalEvent:
        return SignalEvent(
            mono_to_wall + t[i_ts] / 1e9,
            *fields(t),
            bool(t[i_has_info]),
            t[i_flags],
            t[i_group],
            t[i_handler],
            t[i_sa_flags],
            comm(t[i_comm]),
        )

    return decode


MADV_PAGEOUT = 21  # Linux 5.4+: reclaim these pages (clean file pages are simply dropped)
COMPILER_LIBRARIES = ("libLLVM", "libclang")


def _release_compiler_memory() -> None:
    """Give back what BCC's compiler used, once the programs are loaded.

    The compile is sigtop's peak: glibc keeps the heap it freed, and the
    pages of LLVM's and clang's code it ran (~80 MB) stay resident though
    nothing runs them again. malloc_trim returns the heap; MADV_PAGEOUT
    drops those read-only code pages (re-read from the page cache if ever
    touched again). Writable mappings are left alone.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.malloc_trim(0)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) < 6 or "w" in fields[1] or not any(lib in fields[5] for lib in COMPILER_LIBRARIES):
                    continue
                start, end = (int(x, 16) for x in fields[0].split("-"))
                libc.madvise(start, end - start, MADV_PAGEOUT)  # EINVAL on old kernels: nothing lost
    except (OSError, AttributeError):
        pass


class BpfSource:
    """Live signals from the kernel. attach() then start(); stop() detaches."""

    live = True
    name = "live"

    def __init__(self, config: TraceConfig | None = None) -> None:
        self.config = config or TraceConfig()
        self.bpf: Any = None
        self.attach_s = 0.0
        self.task_storage = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reader: ringbuf.RingBufferReader | None = None
        self._layout: EventLayout | None = None
        self._records = bytearray()  # ring records read this interval
        self._event_budget = 0
        self._events_skipped = 0
        self._prev_flows: dict[bytes, tuple[int, float]] = {}  # count, when it last moved
        self._prev_threads: dict[int, tuple[int, int, int, int]] = {}
        self._prev_signalfds: dict[tuple[int, int], tuple[int, int]] = {}
        self._prev_stats = [0] * len(STAT_NAMES)
        self._known_procs: dict[int, float] = {}
        self._known_pidfds: set[tuple[int, int]] = set()
        self._last_collect = 0.0
        # ktime (CLOCK_MONOTONIC) to wall clock
        self._mono_to_wall = time.time() - time.monotonic()
        self.error: str | None = None

    # ---- attach / detach -------------------------------------------------

    def attach(self) -> None:
        """Compile and attach every probe; raise CollectorError with one line on failure.

        Attaching an attached source does nothing (the CLI attaches early,
        beside its imports; the runner attaches whatever is not yet)."""
        if self.bpf is not None:
            return
        started = time.monotonic()
        check_privileges()
        root = ensure_tracefs()
        missing = missing_tracepoints(root)
        if missing:
            raise CollectorError(f"this kernel lacks tracepoint {missing[0]} (and {len(missing) - 1} more)")
        if kernel_headers_dir() is None and not Path("/sys/kernel/kheaders.tar.xz").exists():
            raise CollectorError(
                f"no kernel headers for {os.uname().release}: run `make setup` "
                "(it links Debian's nearest headers) or install linux-headers"
            )
        bcc = import_bcc()
        # Task-local storage needs BTF (and a kernel that offers it to
        # tracepoint programs, 5.19 and later); else an LRU hash does.
        wanted = self.config.task_storage
        if wanted is None:
            wanted = Path("/sys/kernel/btf/vmlinux").exists()
        failure = self._load(bcc, task_storage=wanted)
        if failure is not None and wanted and self.config.task_storage is None:
            failure = self._load(bcc, task_storage=False)
        if failure is not None:
            raise CollectorError(f"could not load the BPF program: {failure}")
        try:
            if self.config.pids:
                self._fill_pid_filter()
            if self.config.details:
                self._open_events()
        except Exception as exc:
            self.detach()
            raise CollectorError(f"could not set up the BPF maps: {exc}") from None
        self._last_collect = time.monotonic()
        self.attach_s = time.monotonic() - started
        _release_compiler_memory()

    def _load(self, bcc: Any, task_storage: bool) -> str | None:
        """Compile, load and attach; the first error line on failure."""
        self.task_storage = task_storage
        cflags = self.config.cflags(os.getpid(), task_storage=task_storage)
        # Built in two steps so that a load failing half-way through (some
        # probes already attached) can be detached before the next try.
        bpf = bcc.BPF.__new__(bcc.BPF)
        failure: Exception | None = None
        with _StderrCapture() as captured:
            try:
                bpf.__init__(text=bpf_source_text().encode(), cflags=cflags)
            except Exception as exc:  # BCC raises bare Exception on compile/load/attach
                failure = exc
                bpf.cleanup()
        if failure is not None:
            errors = [line for line in captured.text.splitlines() if "error" in line]
            return errors[0].strip() if errors else str(failure)
        self.bpf = bpf
        return None

    def _fill_pid_filter(self) -> None:
        """Pids and their threads: the kernel reports a thread-directed target by tid."""
        table = self.bpf[b"pid_filter"]
        for pid in self.config.pids:
            ids = {pid}
            with contextlib.suppress(OSError):
                ids.update(int(t) for t in os.listdir(f"/proc/{pid}/task"))
            for tid in ids:
                table[table.Key(tid)] = table.Leaf(1)

    def _open_events(self) -> None:
        table = self.bpf[b"events"]
        ctype = import_bcc().table._get_event_class(table)  # BCC's ctypes view of struct event
        self._layout = event_layout(ctype)
        size = self.config.ringbuf_pages * mmap.PAGESIZE
        self._reader = ringbuf.RingBufferReader(table.map_fd, size, ctypes.sizeof(ctype))
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
            # Each tracepoint detach waits out an RCU grace period (~70 ms
            # here); BCC does them one by one. Closing them side by side
            # (ctypes drops the GIL) makes quitting 19 probes one wait long.
            attached = list(bpf.tracepoint_fds)
            with ThreadPoolExecutor(max_workers=max(1, len(attached))) as pool:
                list(pool.map(bpf.detach_tracepoint, attached))
            bpf.cleanup()

    # ---- the poller thread -----------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Batch], None]) -> None:
        """Start polling; each batch is passed to `deliver` on the event loop's thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(loop, deliver), name="sigtop-bpf-poller", daemon=True)
        self._thread.start()

    def _run(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Batch], None]) -> None:
        try:
            self._poll(loop, deliver)
        except Exception as exc:  # reported to the consumer, which exits with one line
            self.error = f"the collector failed: {type(exc).__name__}: {exc}"
            self._post(loop, deliver, Batch(ts=time.time(), interval_s=0.0, final=True))

    def _poll(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Batch], None]) -> None:
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

    def _post(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Batch], None], batch: Batch) -> None:
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

    # ---- reading the maps ------------------------------------------------

    def _wall(self, ktime_ns: int) -> float:
        return self._mono_to_wall + ktime_ns / 1e9 if ktime_ns else 0.0

    def collect(self, final: bool = False) -> Batch:
        """Everything new since the last call, as one batch."""
        now = time.monotonic()
        batch = Batch(ts=time.time(), interval_s=now - self._last_collect, final=final)
        self._last_collect = now
        # The kernel keeps no last-seen clock per signal: what moved was seen by now.
        batch.flows = self._collect_flows(now, batch.ts)
        batch.threads = self._collect_threads(batch.ts)
        batch.signalfds = self._collect_signalfds()
        batch.stats = self._collect_stats()
        batch.events = self._take_events(batch.stats)
        batch.procs = self._resolve_procs(batch)
        return batch

    def _collect_flows(self, now: float, wall_now: float) -> list[FlowDelta]:
        table = self.bpf[b"flows"]
        deltas = []
        seen = set()
        stale: list[Any] = []
        for k, v in table.items_lookup_batch():
            raw = bytes(k)
            seen.add(raw)
            prev, moved = self._prev_flows.get(raw, (0, now))
            if v.count == prev:
                if now - moved > STALE_FLOW_S:
                    stale.append(k)
                continue
            # A count below what we saw means the key was evicted and came back.
            delta = v.count - prev if v.count > prev else v.count
            self._prev_flows[raw] = (v.count, now)
            key = FlowKey(
                sender_pid=k.sender_tgid,
                target_pid=k.target_pid,
                target_tgid=k.target_tgid,
                sig=k.sig,
                code=k.code,
                err=k.err,
                syscall=k.syscall,
                result=k.result,
            )
            deltas.append(
                FlowDelta(
                    key=key,
                    count=delta,
                    first_ts=self._wall(v.first_ts),
                    last_ts=wall_now,
                    sender_comm=_comm(bytes(v.sender_comm)),
                    target_comm=_comm(bytes(v.target_comm)),
                )
            )
        for raw in self._prev_flows.keys() - seen:
            del self._prev_flows[raw]
        # Evict idle flows only when the map is filling: their counts were already reported.
        if len(seen) > FLOW_ENTRIES * 3 // 4:
            for k in stale:
                table.pop(k, None)
                self._prev_flows.pop(bytes(k), None)
        return deltas

    def _collect_threads(self, wall_now: float) -> list[ThreadDelta]:
        table = self.bpf[b"threads"]
        deltas = []
        seen = set()
        for k, v in table.items_lookup_batch():
            tid = k if isinstance(k, int) else k.value
            seen.add(tid)
            now = (v.sigreturns, v.handler_deliveries, v.deliveries, v.unmatched)
            prev = self._prev_threads.get(tid, (0, 0, 0, 0))
            if now == prev:
                if len(self._prev_threads) > THREAD_ENTRIES // 2 and not os.path.exists(f"/proc/{tid}"):
                    table.pop(table.Key(tid), None)  # the thread is gone and its counts reported
                continue
            self._prev_threads[tid] = now
            deltas.append(
                ThreadDelta(
                    tid=tid,
                    tgid=v.tgid,
                    comm=_comm(bytes(v.comm)),
                    sigreturns=max(0, now[0] - prev[0]),
                    handler_deliveries=max(0, now[1] - prev[1]),
                    deliveries=max(0, now[2] - prev[2]),
                    last_ts=wall_now,
                    unmatched=max(0, now[3] - prev[3]),
                )
            )
        for tid in self._prev_threads.keys() - seen:
            del self._prev_threads[tid]
        return deltas

    def _collect_signalfds(self) -> list[SignalfdState]:
        table = self.bpf[b"signalfds"]
        states = []
        for k, v in table.items_lookup_batch():
            ident = (k.tgid, k.fd)
            prev_calls, prev_created = self._prev_signalfds.get(ident, (0, -1))
            if v.calls == prev_calls and v.created_ts == prev_created:
                continue
            fresh = prev_created not in (v.created_ts, -1)
            new_calls = v.calls if fresh or v.calls < prev_calls else v.calls - prev_calls
            self._prev_signalfds[ident] = (v.calls, v.created_ts)
            states.append(
                SignalfdState(
                    pid=k.tgid,
                    fd=k.fd,
                    comm=_comm(bytes(v.comm)),
                    mask=v.mask,
                    flags=v.flags,
                    calls=new_calls,
                    created_ts=self._wall(v.created_ts),
                    last_ts=self._wall(v.last_ts),
                )
            )
        return states

    def _collect_stats(self) -> KernelStats:
        table = self.bpf[b"stats"]
        now = [int(table.sum(table.Key(i)).value) for i in range(len(STAT_NAMES))]
        delta = [n - p for n, p in zip(now, self._prev_stats, strict=False)]
        self._prev_stats = now
        return KernelStats(**dict(zip(STAT_NAMES, delta, strict=False)))

    def _take_events(self, stats: KernelStats) -> Sequence[SignalEvent]:
        """The interval's events, still packed (the model decodes what it keeps); the budget starts again."""
        records, self._records = self._records, bytearray()
        stats.events_dropped += self._events_skipped
        self._events_skipped = 0
        self._event_budget = int(MAX_EVENTS_PER_S * self.config.interval_s)
        if not records or self._layout is None:
            return []
        return EventBlock(records, self._layout, self._mono_to_wall)

    def _resolve_procs(self, batch: Batch) -> list[ProcInfo]:
        """Read /proc for every pid seen for the first time (or not lately)."""
        wanted: set[int] = set()
        pidfds: list[tuple[int, int]] = []
        for d in batch.flows:
            k = d.key
            if k.sender_pid:
                wanted.add(k.sender_pid)
            if k.result in (Result.failed, Result.no_signal) and k.syscall == Syscall.pidfd_send_signal:
                if (k.sender_pid, k.target_pid) not in self._known_pidfds:
                    pidfds.append((k.sender_pid, k.target_pid))
            elif k.target_pid > 0:
                wanted.add(k.target_pid)
            if k.target_tgid:
                wanted.add(k.target_tgid)
        wanted.update(t.tgid for t in batch.threads)
        wanted.update(s.pid for s in batch.signalfds)
        now = time.monotonic()
        procs = {}
        for pid in wanted:
            seen = self._known_procs.get(pid)
            if seen is not None and now - seen < PROC_REFRESH_S:
                continue
            self._known_procs[pid] = now
            info = procfs.read_proc(pid)
            if info is not None:
                procs[pid] = info
        for sender, fd in pidfds:
            self._known_pidfds.add((sender, fd))
            target = procfs.pidfd_target(sender, fd)
            if target is None:
                continue
            info = procs.get(sender) or procfs.read_proc(sender)
            if info is not None:
                info.pidfds[fd] = target
                procs[sender] = info
        if len(self._known_procs) > 100_000:
            self._known_procs.clear()
        return list(procs.values())


@dataclass
class BatchQueue:
    """The hand-off from a source to the event loop: bounded, merging instead of dropping.

    Counts are deltas, so a batch may never be dropped: when the consumer
    falls behind, a new batch is merged into the newest queued one.
    """

    maxsize: int = QUEUE_BATCHES
    queue: asyncio.Queue[Batch] = field(init=False)
    _spill: Batch | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue()

    def put(self, batch: Batch) -> None:
        """Called on the loop's thread (via call_soon_threadsafe)."""
        if self._spill is not None:
            self._spill.merge(batch)
            batch = self._spill
        if self.queue.qsize() >= self.maxsize and not batch.final:
            self._spill = batch
            return
        self._spill = None
        self.queue.put_nowait(batch)

    async def get(self) -> Batch:
        return await self.queue.get()

    def get_all(self) -> list[Batch]:
        batches = []
        while not self.queue.empty():
            batches.append(self.queue.get_nowait())
        return batches
