"""The map drain: the kernel's cumulative counters, read once per interval, turned into deltas.

The maps are never deleted-on-read (an increment racing with the delete
would be lost); the drain keeps what it saw last and reports the difference.
Entries are evicted here only once their counts have been reported.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path
from typing import Any

from sigtop.abi import kernel_abi
from sigtop.events import comm_text, ktime_to_wall
from sigtop.live import procfs
from sigtop.live.bpfsys import lookup_and_delete
from sigtop.live.config import TraceConfig
from sigtop.names import STAT_NAMES, Syscall
from sigtop.wire import (
    LAT_BUCKETS,
    FlowDelta,
    FlowKey,
    KernelStats,
    LatencyHistogram,
    SignalfdState,
    ThreadDelta,
)

# The overflow array: signal * OVERFLOW_RESULTS + result (bpf/sigtop.h).
OVERFLOW_SIGNALS, OVERFLOW_RESULTS = (kernel_abi().constants[n] for n in ("OVERFLOW_SIGNALS", "OVERFLOW_RESULTS"))
# Eviction: above the high-water mark, flows that did not move since the last
# collection (their counts already reported) go, least recently moved first,
# down to the low-water mark. What a flood of new keys still fills in between
# is counted in the overflow rows.
FLOWS_HIGH_WATER, FLOWS_LOW_WATER = 0.5, 0.25


class MapDrain:
    """Reads the flows, threads, signalfds and stats maps of one loaded program."""

    def __init__(self, bpf: Any, config: TraceConfig, mono_to_wall: float) -> None:
        self.bpf = bpf
        self.config = config
        self.mono_to_wall = mono_to_wall
        # What each flow's counters were at the last read (_counters), its latency buckets (None
        # before its first timed take), and when they last moved.
        self._prev_flows: dict[bytes, tuple[tuple, tuple | None, float]] = {}
        self.keep: set[bytes] = set()  # flows with signals still pending: never evicted
        self._prev_overflow = [0] * (OVERFLOW_SIGNALS * OVERFLOW_RESULTS)
        self.evicted = 0
        self.fill: dict[str, float] = {}  # how full each map is, 0..1
        self.cgroups = CgroupPaths()
        self._prev_threads: dict[int, tuple[int, int, int, int]] = {}
        self._prev_signalfds: dict[tuple[int, int], tuple[int, int]] = {}
        self._prev_stats = [0] * len(STAT_NAMES)

    def wall(self, ktime_ns: int) -> float:
        """The kernel's monotonic ns as wall-clock seconds (0 stays 0: never set)."""
        return ktime_to_wall(self.mono_to_wall, ktime_ns) if ktime_ns else 0.0

    def flows(self, now: float, wall_now: float) -> list[FlowDelta]:
        table = self.bpf[b"flows"]
        deltas = []
        seen = set()
        idle: list[tuple[float, Any]] = []
        for k, v in table.items_lookup_batch():
            raw = bytes(k)
            seen.add(raw)
            prev, prev_hist, moved = self._prev_flows.get(raw, _NEVER)
            if _counters(v) == prev:
                if raw not in self.keep:
                    idle.append((moved or now, k))
                continue
            delta, hist = self._delta(k, v, prev, prev_hist, wall_now)
            self._prev_flows[raw] = (_counters(v), hist, now)
            deltas.append(delta)
        for raw in self._prev_flows.keys() - seen:
            del self._prev_flows[raw]
        evicted_before = self.evicted
        deltas += self._evict(table, len(seen), idle, wall_now)
        self.fill["flows"] = (len(seen) - (self.evicted - evicted_before)) / self.config.flow_entries
        deltas += self._overflow(wall_now)
        return deltas

    def _delta(self, k: Any, v: Any, prev: tuple, prev_hist: tuple | None, wall_now: float) -> tuple[FlowDelta, Any]:
        """What a flow gained since `prev` (its counters at the last read), and its latency buckets
        now: a counter below what we saw means the key was evicted and came back, all of it new.
        The 56 buckets are read only when the latency sum moved (a take or sigwait was timed)."""
        count, taken, read, untracked, summed, suppressed, discarded = (
            n - p if n >= p else n for n, p in zip(_counters(v), prev, strict=True)
        )
        latency, hist = None, prev_hist
        if summed:
            hist = tuple(v.lat_hist)
            before = prev_hist or (0,) * LAT_BUCKETS
            buckets = [n - p if n >= p else n for n, p in zip(hist, before, strict=True)]
            latency = LatencyHistogram(buckets, v.lat_max, summed)
        delta = FlowDelta(
            key=flow_key(k),
            count=count,
            taken=taken,
            read=read,
            untracked=untracked,
            suppressed=suppressed,
            discarded=discarded,
            suppressed_by=v.suppressed_by if suppressed else 0,
            latency=latency,
            first_ts=self.wall(v.first_ts),
            last_ts=wall_now,
            sender_comm=comm_text(bytes(v.sender_comm)),
            target_comm=comm_text(bytes(v.target_comm)),
            claimed=(v.claimed_pid, v.claimed_uid) if k.spoofed else None,
            sender_cgroup=self.cgroups.path(v.sender_cgroup) if v.sender_cgroup else "",
            sender_uid=v.sender_uid if k.sender_tgid else -1,
        )
        return delta, hist

    def _evict(self, table: Any, entries: int, idle: list[tuple[float, Any]], wall_now: float) -> list[FlowDelta]:
        """Free the map for new flows: idle ones first, least recently moved first. Exact:
        each goes with one atomic lookup-and-delete, and whatever it gained since it was
        read is reported."""
        limit = self.config.flow_entries
        if entries <= limit * FLOWS_HIGH_WATER:
            return []
        deltas = []
        idle.sort(key=lambda item: item[0])
        value_size = ctypes.sizeof(table.Leaf)
        for _moved, k in idle[: max(0, entries - int(limit * FLOWS_LOW_WATER))]:
            raw = bytes(k)
            last = lookup_and_delete(table.map_fd, raw, value_size)
            prev, prev_hist, _moved = self._prev_flows.pop(raw, _NEVER)
            self.evicted += 1
            if last is not None:
                value = table.Leaf.from_buffer_copy(last)
                if _counters(value) != prev:  # it moved between the read and the delete
                    deltas.append(self._delta(k, value, prev, prev_hist, wall_now)[0])
        return deltas

    def _overflow(self, wall_now: float) -> list[FlowDelta]:
        """Signals that found the map full, by signal and result: one row per signal, never lost."""
        table = self.bpf[b"overflow"]
        deltas = []
        for slot, count in enumerate(_sum_per_cpu(table)):
            if count == self._prev_overflow[slot]:
                continue
            sig, result = divmod(slot, OVERFLOW_RESULTS)
            key = FlowKey(0, 0, 0, sig, 0, 0, int(Syscall.overflow), result)
            deltas.append(FlowDelta(key, count - self._prev_overflow[slot], 0.0, wall_now))
            self._prev_overflow[slot] = count
        return deltas

    def threads(self, wall_now: float) -> list[ThreadDelta]:
        table = self.bpf[b"threads"]
        self.fill["threads"] = len(self._prev_threads) / self.config.thread_entries
        deltas = []
        seen = set()
        for k, v in table.items_lookup_batch():
            tid = k if isinstance(k, int) else k.value
            seen.add(tid)
            now = (v.sigreturns, v.handler_deliveries, v.deliveries, v.unmatched)
            prev = self._prev_threads.get(tid, (0, 0, 0, 0))
            if now == prev:
                if len(self._prev_threads) > self.config.thread_entries // 2 and not procfs.task_exists(tid):
                    table.pop(table.Key(tid), None)  # the thread is gone and its counts reported
                continue
            self._prev_threads[tid] = now
            # A counter below what we saw: the entry was removed and made again; all of it is new.
            sigreturns, handled, delivered, unmatched = (n - p if n >= p else n for n, p in zip(now, prev, strict=True))
            deltas.append(
                ThreadDelta(
                    tid=tid,
                    tgid=v.tgid,
                    comm=comm_text(bytes(v.comm)),
                    sigreturns=sigreturns,
                    handler_deliveries=handled,
                    deliveries=delivered,
                    last_ts=wall_now,
                    unmatched=unmatched,
                )
            )
        for tid in self._prev_threads.keys() - seen:
            del self._prev_threads[tid]
        return deltas

    def signalfds(self) -> list[SignalfdState]:
        table = self.bpf[b"signalfds"]
        self.fill["signalfds"] = len(self._prev_signalfds) / self.config.signalfd_entries
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
                    comm=comm_text(bytes(v.comm)),
                    mask=v.mask,
                    flags=v.flags,
                    calls=new_calls,
                    created_ts=self.wall(v.created_ts),
                    last_ts=self.wall(v.last_ts),
                )
            )
        return states

    def stats(self) -> KernelStats:
        table = self.bpf[b"stats"]
        now = [int(table.sum(table.Key(i)).value) for i in range(len(STAT_NAMES))]
        delta = [n - p for n, p in zip(now, self._prev_stats, strict=True)]
        self._prev_stats = now
        return KernelStats(**dict(zip(STAT_NAMES, delta, strict=True)))


_NEVER = ((0, 0, 0, 0, 0, 0, 0), None, 0.0)  # a flow before it was first read: counters, buckets, moved


def _counters(v: Any) -> tuple[int, int, int, int, int, int, int]:
    """What tells that a flow moved; its latency buckets move only with lat_sum (every timed take adds to both)."""
    return (v.count, v.taken, v.read, v.untracked, v.lat_sum, v.suppressed, v.discarded)


def flow_key(k: Any) -> FlowKey:
    """The kernel's struct flow_key as the records' FlowKey."""
    return FlowKey(
        sender_pid=k.sender_tgid,
        target_pid=k.target_pid,
        target_tgid=k.target_tgid,
        sig=k.sig,
        code=k.code,
        err=k.err,
        syscall=k.syscall,
        result=k.result,
        spoofed=k.spoofed,
        ns_local=k.ns_local,
    )


class CgroupPaths:
    """cgroup v2 ids (what bpf_get_current_cgroup_id says) to paths: a cgroup's id is its
    directory's inode on the v2 mount. Walked again when an id is not known yet, at most
    once per second; bounded."""

    MOUNTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
    MAX = 20_000

    def __init__(self) -> None:
        self._paths: dict[int, str] = {}
        self._walked = 0.0
        self.root = next((m for m in self.MOUNTS if (m / "cgroup.controllers").exists()), None)

    def path(self, cgroup_id: int) -> str:
        found = self._paths.get(cgroup_id)
        if found is None and self.root is not None and time.monotonic() - self._walked > 1.0:
            self._walk()
            found = self._paths.get(cgroup_id)
        return found or ""

    def _walk(self) -> None:
        self._walked = time.monotonic()
        if len(self._paths) > self.MAX:
            self._paths.clear()
        for directory, _subdirs, _files in os.walk(self.root):
            try:
                inode = os.stat(directory).st_ino
            except OSError:
                continue
            self._paths[inode] = "/" + os.path.relpath(directory, self.root).removeprefix(".")


def _sum_per_cpu(table: Any) -> list[int]:
    """Every slot of a per-CPU array, summed over the CPUs, in one batch read."""
    totals = [0] * len(table)
    for k, values in table.items_lookup_batch():
        index = k if isinstance(k, int) else k.value
        totals[index] = sum(values)
    return totals
